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
    public static async Task<int> Run(string[] args)
    {
        using var dir = new TempDir();
        string model = dir.File("tiny.gguf");
        var config = new TinyLlamaConfig { Embedding = 64, Heads = 4, KvHeads = 2, FeedForward = 128, Layers = 2, ContextLength = 256, Seed = 7 };
        var vocabulary = TinyLlama.Metadata(config).Where(kv => kv.Key.StartsWith("tokenizer.", StringComparison.Ordinal)).ToList();
        vocabulary.Add(new("tokenizer.chat_template", GgufValue.String(
            "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")));
        TinyLlama.WriteGguf(model, config, vocabulary: vocabulary);
        var options = new BenchArgs(args);
        await using var agent = await BenchAgent.StartAsync(dir.Path, new BenchAgentSettings(model, 256, 2, options.Int("--parallel", 4))
        {
            Name = "tiny", QueueCapacity = options.Int("--queue", 64), LogLevel = options.Flag("--log") ? "Warning" : "Critical", ModelExtra = "default_max_tokens = 16",
        });
        return args[0] == "fuzz"
            ? await Fuzz(agent.Address, options.Int("--requests", 10000), options.Int("--seed", 1), options.Int("--concurrency", 8),
                options.Text("--only", "") is { Length: > 0 } only ? only.Split(',').Select(n => int.Parse(n, CultureInfo.InvariantCulture)).ToHashSet() : null)
            : await Load(agent, options.Int("--clients", 64), options.Int("--per-client", 16), options.Int("--tokens", 8));
    }

    private static async Task<int> Fuzz(Uri address, int requests, int seed, int concurrency, ISet<int>? only)
    {
        Console.WriteLine($"fuzz: {requests} mutated requests, seed {seed}, {concurrency} connections at a time");
        var clock = Stopwatch.StartNew();
        var (byStatus, problems) = await new HttpFuzzer(address, BenchAgent.Token, seed).RunAsync(requests, concurrency, TimeSpan.FromSeconds(120), CancellationToken.None, only);
        Console.WriteLine($"  {clock.Elapsed.TotalSeconds:0.0} s; answers by status: {string.Join(", ", byStatus.Select(kv => $"{kv.Key} x{kv.Value}"))}");
        Console.WriteLine($"  problems (5xx, stack traces, unshaped errors, 429 without Retry-After, no answer): {problems.Count}");
        foreach (var p in problems.Take(20)) Console.WriteLine("    " + p);
        return problems.Count == 0 ? 0 : 1;
    }

    private static async Task<int> Load(BenchAgent agent, int clients, int perClient, int tokens)
    {
        var queue = agent.App.Services.GetRequiredService<RequestQueue>();
        var store = agent.App.Services.GetRequiredService<EdgeTune.Agent.FieldLog.FieldLogStore>();
        Console.WriteLine(BenchModel.Machine() + " at start");
        Console.WriteLine($"load: {clients} clients x {perClient} chat requests, {tokens} tokens each, queue capacity {queue.Capacity}, parallel {queue.Parallel}");
        long heapBefore = GC.GetTotalMemory(true);
        using var process = Process.GetCurrentProcess();
        var clock = Stopwatch.StartNew();
        var result = await agent.RunClientsAsync(clients, perClient, tokens);
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
