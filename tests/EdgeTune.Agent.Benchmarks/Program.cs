using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using EdgeTune.Agent;
using EdgeTune.Agent.Config;
using EdgeTune.Agent.FieldLog;
using EdgeTune.Agent.Serving;
using EdgeTune.Formats.FieldData;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Testing;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

// Agent overhead: the same model, prompts and greedy settings through
//   direct  - LlamaSharpRuntime.Generate in process (the agent's own LLamaSharp loop, no HTTP, no log)
//   agent   - POST /v1/chat/completions on loopback, field log off, then on (WAL, synchronous=FULL)
// and the field log's cost per record alone.
//
//   dotnet run -c Release --project tests/EdgeTune.Agent.Benchmarks -- [--requests N] [--tokens T] [--threads N]

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
string Opt(string name, string fallback) { int i = Array.IndexOf(args, name); return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback; }
int requests = int.Parse(Opt("--requests", "20"));
int tokens = int.Parse(Opt("--tokens", "48"));
int threads = int.Parse(Opt("--threads", Math.Min(4, Environment.ProcessorCount).ToString()));

using var dir = new TempDir();
var modelConfig = new TinyLlamaConfig { Embedding = 512, Heads = 8, KvHeads = 4, FeedForward = 1408, Layers = 4, ContextLength = 512, ExtraTokens = 4000, Seed = 5 };
string model = dir.File("bench.gguf");
TinyLlama.WriteGguf(model, modelConfig);
string[] prompts = Enumerable.Range(0, requests).Select(i => $"the device model {i} is in the world of hello").ToArray();
Console.WriteLine($"machine: {Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}; model: {new FileInfo(model).Length / 1e6:0} MB F32 llama (512 wide, 4 layers); {requests} requests x {tokens} tokens, greedy, {threads} threads");

AgentConfig Config(bool log) => AgentConfig.Load(WriteConfig(log));
string WriteConfig(bool log)
{
    string path = dir.File($"agent-{log}.toml");
    File.WriteAllText(path, $"""
        [server]
        listen = "http://127.0.0.1:0"
        api_token = "bench"
        log_level = "Warning"
        [model]
        path = "{model}"
        context = 512
        threads = {threads}
        [field_log]
        enabled = {(log ? "true" : "false")}
        path = "field-{Guid.NewGuid():N}.db"
        [telemetry]
        enabled = false
        """);
    return path;
}

// Direct (measured before and after the agent, since a shared machine drifts).
var direct = Direct();
Report("direct (in process)", direct, null);
List<(double Ms, int Tokens)> Direct()
{
var direct = new List<(double Ms, int Tokens)>();
using (var runtime = new LlamaSharpRuntime(Config(false).Model))
{
    var sampling = new SamplingSettings(tokens, 0, 1, null, []);
    foreach (var warm in prompts.Take(2)) runtime.Generate(runtime.Tokenize(runtime.ApplyChatTemplate([new("user", warm)])), sampling, _ => { }, default);
    foreach (var p in prompts)
    {
        var sw = Stopwatch.StartNew();
        var r = runtime.Generate(runtime.Tokenize(runtime.ApplyChatTemplate([new("user", p)])), sampling, _ => { }, default);
        direct.Add((sw.Elapsed.TotalMilliseconds, r.CompletionTokens));
    }
}
return direct;
}

foreach (bool log in new[] { false, true })
{
    var app = AgentApp.Build(Config(log));
    await app.StartAsync();
    var address = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
    using var client = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromMinutes(5) };
    client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "bench");
    while (!(await client.GetAsync("/health")).IsSuccessStatusCode) await Task.Delay(50);
    var results = new List<(double Ms, int Tokens)>();
    async Task<(double, int)> One(string p)
    {
        var sw = Stopwatch.StartNew();
        using var response = await client.PostAsJsonAsync("/v1/chat/completions", new { model = "bench", max_tokens = tokens, temperature = 0, messages = new[] { new { role = "user", content = p } } });
        response.EnsureSuccessStatusCode();
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        return (sw.Elapsed.TotalMilliseconds, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }
    foreach (var warm in prompts.Take(2)) await One(warm);
    foreach (var p in prompts) results.Add(await One(p));
    await app.StopAsync();
    await app.DisposeAsync();
    Report(log ? "agent, field log on" : "agent, field log off", results, direct);
}

Report("direct, again", Direct(), null);

// The field log alone: one committed (fsynced) record per call.
using (var store = new FieldLogStore(dir.File("cost.db")))
{
    var record = new CompletionRecord("x", DateTimeOffset.UtcNow, "bench", "chat", "bench", null, [new FieldMessage("user", prompts[0])], new string('y', 200),
        new Dictionary<string, object?> { ["max_tokens"] = tokens }, 100, 10, 20, tokens, "length");
    for (int i = 0; i < 5; i++) store.Add(record with { Id = $"warm-{i}" });
    int n = 200;
    var sw = Stopwatch.StartNew();
    for (int i = 0; i < n; i++) store.Add(record with { Id = $"r-{i}" });
    Console.WriteLine($"field log: {sw.Elapsed.TotalMilliseconds / n:0.00} ms per committed record (WAL, synchronous=FULL, {dir.Path})");
}
return 0;

static void Report(string name, List<(double Ms, int Tokens)> runs, List<(double Ms, int Tokens)>? baseline)
{
    var ms = runs.Select(r => r.Ms).Order().ToArray();
    double tps = runs.Sum(r => r.Tokens) / (runs.Sum(r => r.Ms) / 1000);
    string ratio = baseline is null ? "" : $"  ({tps / (baseline.Sum(r => r.Tokens) / (baseline.Sum(r => r.Ms) / 1000)):0.000} of direct)";
    Console.WriteLine($"{name,-22} {tps,8:0.0} tok/s  p50 {ms[ms.Length / 2],7:0.0} ms  p95 {ms[(int)Math.Min(ms.Length - 1, Math.Ceiling(ms.Length * 0.95) - 1)],7:0.0} ms{ratio}");
}
