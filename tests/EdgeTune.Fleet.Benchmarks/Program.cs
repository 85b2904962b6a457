using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using EdgeTune.Agent;
using EdgeTune.Agent.Config;
using EdgeTune.Agent.FieldLog;
using EdgeTune.Agent.Fleet;
using EdgeTune.Cli.Fleet;
using EdgeTune.Formats.FieldData;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Testing;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

// The fleet path through a real Mosquitto on this machine (Debian's mosquitto; agents, broker and collector share the CPUs):
//   collect - A agents (the agent's real outbox over real SQLite field logs) with R records each, and `fleet collect`'s
//             collector writing into a split folder: records/s from the first publish to the last row on disk.
//   request - the real agent (HTTP, tiny GGUF through llama.cpp, field log on) with [fleet] off and on (a collector
//             subscribed, so every record is really published): p50 and p95 of whole requests, blocks alternating.
//             Publishing runs on the outbox's own task; the figure to watch is the p50 difference (target < 1 ms).
//
//   dotnet run -c Release --project tests/EdgeTune.Fleet.Benchmarks -- [--agents A] [--records R] [--requests N] [--rounds K]

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
string Opt(string name, string fallback) { int i = Array.IndexOf(args, name); return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback; }
int agentCount = int.Parse(Opt("--agents", "20"));
int recordCount = int.Parse(Opt("--records", "200"));
int requests = int.Parse(Opt("--requests", "100"));
int rounds = int.Parse(Opt("--rounds", "4"));
if (Mosquitto.Binary is null) { Console.Error.WriteLine(Mosquitto.MissingReason); return 1; }

Console.WriteLine($"machine: {Environment.ProcessorCount} cores, load average {EdgeTune.Core.MachineFacts.LoadAverages()}");
using var dir = new TempDir();
using var broker = new Mosquitto();
FleetConnection Connection(string clientId) => new() { Broker = broker.Url, ClientId = clientId, Username = Mosquitto.User, PasswordFile = broker.PasswordFile };

// --- collect: records/s end to end
{
    string data = SplitFolder(dir.File("collect"));
    var logs = new List<FieldLogStore>();
    var outboxes = new List<FleetOutbox>();
    ulong seed = 1;
    for (int a = 0; a < agentCount; a++)
    {
        var log = new FieldLogStore(dir.File($"agent-{a}.db"));
        for (int r = 0; r < recordCount; r++)
            log.Add(new CompletionRecord($"c-{a}-{r}", DateTimeOffset.UtcNow, $"a{a}", "chat", "tiny", null, [new FieldMessage("user", Sentence(ref seed, 12))],
                Sentence(ref seed, 8), new Dictionary<string, object?>(), 10, 1, 12, 8, "stop"));
        logs.Add(log);
        outboxes.Add(new FleetOutbox(new FleetConfig { Connection = Connection($"a{a}"), Device = $"a{a}", Fleet = "bench" }, log));
    }
    using var stop = new CancellationTokenSource();
    var collector = new FleetCollector(new CollectOptions { Connection = Connection("bench-collector") with { ReceiveMaximum = 5000, SessionExpirySeconds = 600 }, Into = data, Fleet = "bench", UntilIdle = TimeSpan.FromSeconds(2) }, TextWriter.Null);
    var collecting = collector.RunAsync(stop.Token);
    await Task.Delay(500); // the collector's subscription first
    var clock = Stopwatch.StartNew();
    foreach (var o in outboxes) await o.StartAsync(default);
    string ledger = Path.Combine(data, "fleet", "ledger.tsv");
    long total = (long)agentCount * recordCount;
    while (!File.Exists(ledger) || File.ReadLines(ledger).LongCount() < total) await Task.Delay(20);
    double seconds = clock.Elapsed.TotalSeconds;
    var result = await collecting;
    foreach (var o in outboxes) { await o.StopAsync(default); o.Dispose(); }
    foreach (var l in logs) l.Dispose();
    Console.WriteLine($"collect: {agentCount} agents x {recordCount} records = {total} records in {seconds:0.00} s: {total / seconds:0} records/s end to end ({result.Batches} batches; every record written once: {result.Added.Values.Sum() + result.HeldBack == total})");
}

// --- request: the agent's latency with [fleet] off and on
{
    string model = dir.File("tiny.gguf");
    TinyLlama.WriteGguf(model, new TinyLlamaConfig { Embedding = 64, Heads = 4, KvHeads = 2, FeedForward = 128, Layers = 2, ContextLength = 256, Seed = 7 });
    string data = SplitFolder(dir.File("request"));
    using var stop = new CancellationTokenSource();
    var collecting = new FleetCollector(new CollectOptions { Connection = Connection("bench-collector-2") with { ReceiveMaximum = 5000 }, Into = data, Fleet = "req" }, TextWriter.Null).RunAsync(stop.Token);
    var latencies = new Dictionary<bool, List<double>> { [false] = [], [true] = [] };
    for (int round = 0; round < rounds; round++)
        foreach (bool fleet in round % 2 == 0 ? new[] { false, true } : [true, false])
            latencies[fleet].AddRange(await Block(fleet, round));
    stop.Cancel();
    try { await collecting; } catch (OperationCanceledException) { }
    foreach (bool fleet in new[] { false, true })
    {
        var l = latencies[fleet].Order().ToList();
        Console.WriteLine($"request, [fleet] {(fleet ? "on " : "off")}: p50 {P(l, 0.5):0.00} ms, p95 {P(l, 0.95):0.00} ms ({l.Count} requests)");
    }
    double added = P(latencies[true].Order().ToList(), 0.5) - P(latencies[false].Order().ToList(), 0.5);
    Console.WriteLine($"request: [fleet] adds {added:0.00} ms at p50 (target < 1 ms)");

    async Task<List<double>> Block(bool fleet, int round)
    {
        string config = dir.File($"agent-{fleet}-{round}.toml");
        File.WriteAllText(config, $"""
            [server]
            listen = "http://127.0.0.1:0"
            api_token = "bench-token-0123456789"
            log_level = "Warning"
            [model]
            path = "{model}"
            context = 256
            threads = 1
            [field_log]
            path = "field-{fleet}-{round}.db"
            device_id = "bench-{round}"
            [telemetry]
            enabled = false
            {(fleet ? $"[fleet]\nbroker = \"{broker.Url}\"\nfleet = \"req\"\nusername = \"{Mosquitto.User}\"\npassword_file = \"{broker.PasswordFile}\"\nstatus_every_seconds = 1" : "")}
            """);
        var app = AgentApp.Build(AgentConfig.Load(config));
        await app.StartAsync();
        using var http = new HttpClient { BaseAddress = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "bench-token-0123456789");
        while (!(await http.GetAsync("/health")).IsSuccessStatusCode) await Task.Delay(20);
        var times = new List<double>();
        for (int i = 0; i < requests + 10; i++)
        {
            var clock = Stopwatch.StartNew();
            using var response = await http.PostAsJsonAsync("/v1/chat/completions", new { max_tokens = 4, messages = new[] { new { role = "user", content = $"hello {i}" } } });
            response.EnsureSuccessStatusCode();
            if (i >= 10) times.Add(clock.Elapsed.TotalMilliseconds); // the first ten warm up
        }
        await app.StopAsync();
        await app.DisposeAsync();
        return times;
    }
}
return 0;

static double P(List<double> sorted, double q) => sorted.Count == 0 ? double.NaN : sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Count) - 1, 0, sorted.Count - 1)];

static string SplitFolder(string data)
{
    Directory.CreateDirectory(data);
    string seed = data + ".seed.jsonl";
    File.WriteAllLines(seed, Enumerable.Range(0, 40).Select(i => JsonSerializer.Serialize(new { prompt = $"seed {i} item {i * 7919 % 1000}", completion = $"answer {i}" })));
    EdgeTune.Data.DatasetSplitter.Split([seed], data, new EdgeTune.Data.SplitOptions());
    return data;
}

static string Sentence(ref ulong seed, int words)
{
    var parts = new string[words];
    for (int i = 0; i < words; i++)
    {
        ulong n = EdgeTune.Core.Numerics.SplitMix64.Next(ref seed) % 50_000;
        var chars = new List<char>();
        do { chars.Add((char)('a' + (int)(n % 26))); n /= 26; } while (n > 0);
        parts[i] = new string([.. chars]) + "x";
    }
    return string.Join(' ', parts);
}

