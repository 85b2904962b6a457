using System.Diagnostics;
using System.Globalization;
using EdgeTune.Agent;
using EdgeTune.Agent.Config;
using EdgeTune.Agent.Serving;
using EdgeTune.Agent.Tests;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Testing;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

/// <summary>The agent under mutated requests (fuzz) and under many concurrent clients (load), with a tiny model.</summary>
internal static class FuzzAndLoad
{
    private const string Token = "bench-token-0123456789";

    public static async Task<int> Run(string[] args)
    {
        string Opt(string name, string fallback) { int i = Array.IndexOf(args, name); return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback; }
        using var dir = new TempDir();
        string model = dir.File("tiny.gguf");
        var config = new TinyLlamaConfig { Embedding = 64, Heads = 4, KvHeads = 2, FeedForward = 128, Layers = 2, ContextLength = 256, Seed = 7 };
        var vocabulary = TinyLlama.Metadata(config).Where(kv => kv.Key.StartsWith("tokenizer.", StringComparison.Ordinal)).ToList();
        vocabulary.Add(new("tokenizer.chat_template", GgufValue.String(
            "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")));
        TinyLlama.WriteGguf(model, config, vocabulary: vocabulary);
        int queue = int.Parse(Opt("--queue", "64"), CultureInfo.InvariantCulture);
        int parallel = int.Parse(Opt("--parallel", "4"), CultureInfo.InvariantCulture);
        string configPath = dir.File("agent.toml");
        File.WriteAllText(configPath, $"""
            [server]
            listen = "http://127.0.0.1:0"
            api_token = "{Token}"
            queue_capacity = {queue}
            parallel = {parallel}
            log_level = "{(args.Contains("--log") ? "Warning" : "Critical")}"
            [model]
            path = "{model}"
            name = "tiny"
            context = 256
            threads = 2
            default_max_tokens = 16
            [field_log]
            path = "field.db"
            [telemetry]
            enabled = false
            """);
        var app = AgentApp.Build(AgentConfig.Load(configPath));
        await app.StartAsync();
        try
        {
            var address = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
            using (var probe = new HttpClient { BaseAddress = address })
                while (!(await probe.GetAsync("/health")).IsSuccessStatusCode) await Task.Delay(50);
            return args[0] == "fuzz"
                ? await Fuzz(address, int.Parse(Opt("--requests", "10000"), CultureInfo.InvariantCulture), int.Parse(Opt("--seed", "1"), CultureInfo.InvariantCulture), int.Parse(Opt("--concurrency", "8"), CultureInfo.InvariantCulture),
                    Opt("--only", "") is { Length: > 0 } only ? only.Split(',').Select(n => int.Parse(n, CultureInfo.InvariantCulture)).ToHashSet() : null)
                : await Load(app, address, int.Parse(Opt("--clients", "64"), CultureInfo.InvariantCulture), int.Parse(Opt("--per-client", "16"), CultureInfo.InvariantCulture), int.Parse(Opt("--tokens", "8"), CultureInfo.InvariantCulture));
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }

    private static async Task<int> Fuzz(Uri address, int requests, int seed, int concurrency, ISet<int>? only)
    {
        Console.WriteLine($"fuzz: {requests} mutated requests, seed {seed}, {concurrency} connections at a time");
        var clock = Stopwatch.StartNew();
        var (byStatus, problems) = await new HttpFuzzer(address, Token, seed).RunAsync(requests, concurrency, TimeSpan.FromSeconds(120), CancellationToken.None, only);
        Console.WriteLine($"  {clock.Elapsed.TotalSeconds:0.0} s; answers by status: {string.Join(", ", byStatus.Select(kv => $"{kv.Key} x{kv.Value}"))}");
        Console.WriteLine($"  problems (5xx, stack traces, unshaped errors, 429 without Retry-After, no answer): {problems.Count}");
        foreach (var p in problems.Take(20)) Console.WriteLine("    " + p);
        return problems.Count == 0 ? 0 : 1;
    }

    private static async Task<int> Load(Microsoft.AspNetCore.Builder.WebApplication app, Uri address, int clients, int perClient, int tokens)
    {
        var queue = app.Services.GetRequiredService<RequestQueue>();
        var store = app.Services.GetRequiredService<EdgeTune.Agent.FieldLog.FieldLogStore>();
        Console.WriteLine($"machine: {Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, load average {(File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "?")} at start");
        Console.WriteLine($"load: {clients} clients x {perClient} chat requests, {tokens} tokens each, queue capacity {queue.Capacity}, parallel {queue.Parallel}");
        long heapBefore = GC.GetTotalMemory(true);
        using var process = Process.GetCurrentProcess();
        var clock = Stopwatch.StartNew();
        var result = await AgentLoad.RunAsync(address, Token, clients, perClient, tokens, () => queue.Depth);
        double seconds = clock.Elapsed.TotalSeconds;
        process.Refresh();
        long heapAfter = GC.GetTotalMemory(true);
        var ok = result.LatenciesMs; // every request's latency, answered or refused
        Console.WriteLine($"  {seconds:0.0} s: {result.Answered.Count} answered (200), {result.Rejected} rejected (429 with Retry-After), {result.Unexpected.Count} other");
        Console.WriteLine($"  latency over all requests: p50 {AgentLoad.Percentile(ok, 0.5):0.0} ms, p95 {AgentLoad.Percentile(ok, 0.95):0.0} ms; answered per second {result.Answered.Count / seconds:0.0}");
        var answered = result.AnsweredLatenciesMs;
        Console.WriteLine($"  latency of answered requests (200): p50 {AgentLoad.Percentile(answered, 0.5):0.0} ms, p95 {AgentLoad.Percentile(answered, 0.95):0.0} ms");
        Console.WriteLine($"  deepest queue seen {result.MaxQueueDepth} (capacity {queue.Capacity}); managed heap {heapBefore >> 20} -> {heapAfter >> 20} MiB; peak working set {process.PeakWorkingSet64 >> 20} MiB");
        Console.WriteLine($"  field log: {store.Count} records for {result.Answered.Count} answers");
        foreach (var u in result.Unexpected.Take(5)) Console.WriteLine("    " + u);
        return result.Unexpected.Count == 0 && store.Count == result.Answered.Count ? 0 : 1;
    }
}
