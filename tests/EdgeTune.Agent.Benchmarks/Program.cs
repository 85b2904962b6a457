using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using EdgeTune.Agent;
using EdgeTune.Agent.Config;
using EdgeTune.Agent.FieldLog;
using EdgeTune.Agent.Serving;
using EdgeTune.Formats.FieldData;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Testing;
using LLama;
using LLama.Common;
using LLama.Native;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

// Agent overhead. The same model, chat prompts, greedy sampling (argmax), context, batch and threads through
//   direct - LLamaSharp called directly in process: LLamaWeights + LLamaContext, the model's chat template,
//            tokenize, llama_decode, argmax; no agent code, no HTTP, no log
//   agent  - POST /v1/chat/completions on loopback to the agent in this process, field log off, then on
//            (WAL, synchronous=FULL)
// and the field log's cost per record alone. Each latency is one whole request: template, tokenize, prompt
// evaluation and every generated token (plus, for the agent, HTTP and JSON). Rounds alternate the order
// (direct first, then agent first, ...) and each kind's median over rounds is reported, because a shared
// machine drifts.
//
// The direct side runs on a thread of its own that ends when its block ends: llama.cpp's CPU backend computes
// through OpenMP, and libgomp keeps a worker team per calling thread for that thread's life; two teams alive
// at once (more workers than cores) make libgomp throttle its spin-waits, which halves llama.cpp's speed for
// everyone in the process. The agent keeps its own compute on one thread and ends it when it stops.
//
// Every command takes --model PATH (any GGUF, e.g. a quantised real-shape model; default: a synthetic 65 MB F32
// llama written here) and --context N (512). Decode of a bandwidth-bound quantised model gains far more from
// batching than the tiny F32 model, so the 3x and 0.95 goals are measured with one.
//
//   dotnet run -c Release --project tests/EdgeTune.Agent.Benchmarks -- [--model PATH] [--requests N] [--tokens T] [--threads N] [--rounds R] [--warmup W] [--parallel P]
//     [--each: print every latency] [--cpu: print CPU time by thread per block]
//   ... -- fuzz [--requests 10000] [--seed S] [--concurrency C] [--only N,M] [--log]   mutated HTTP requests; exit 1 on any problem
//   ... -- load [--clients 64] [--per-client 16] [--tokens 8] [--queue 64] [--parallel 4]   latency p50/p95, rejections, memory
//   ... -- concurrent [--model PATH] [--clients 8] [--per-client 4] [--tokens 48] [--parallel 8] [--rounds 3]   aggregate tok/s, parallel P vs 1

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
if (args.Length > 0 && args[0] is "fuzz" or "load") return await FuzzAndLoad.Run(args);
if (args.Length > 0 && args[0] is "concurrent") return await Concurrent.Run(args);
var options = new BenchArgs(args);
int requests = options.Int("--requests", 20);
int tokens = options.Int("--tokens", 48);
int threads = options.Int("--threads", Math.Min(4, Environment.ProcessorCount));
int rounds = options.Int("--rounds", 4);
int warmup = options.Int("--warmup", 8); // unmeasured requests first, on each side (lets .NET's tiered JIT settle in the agent)
int parallel = options.Int("--parallel", new ServerConfig().Parallel); // the agent's [server] parallel, its default unless given: one client, so one sequence at a time either way
int contextTokens = options.Int("--context", 512);

using var dir = new TempDir();
var (model, modelDescription) = BenchModel.Resolve(options, dir);
string[] prompts = Enumerable.Range(0, requests).Select(i => $"the device model {i} is in the world of hello").ToArray();
Console.WriteLine(BenchModel.Machine());
Console.WriteLine($"model: {modelDescription}; {requests} chat requests x {tokens} tokens, greedy, context {contextTokens}, batch {contextTokens}, {threads} threads, {rounds} rounds (order alternates), {warmup} warm-up requests per block, agent parallel {parallel}");

var all = new Dictionary<string, List<Block>>();
string[] kinds = ["direct", "agent, field log off", "agent, field log on"];
foreach (var k in kinds) all[k] = [];
Dictionary<string, string>? directTexts = null;
bool sameOutput = true;
Dictionary<string, double> cpuMark = ThreadCpu();
for (int round = 0; round < rounds; round++)
{
    bool directFirst = round % 2 == 0;
    Console.WriteLine($"round {round + 1} ({(directFirst ? "direct first" : "agent first")})");
    if (directFirst) RunDirect();
    foreach (bool log in new[] { false, true })
    {
        var block = await Agent(log);
        Add(log ? "agent, field log on" : "agent, field log off", block);
    }
    if (!directFirst) RunDirect();
}

void RunDirect()
{
    Block? block = null;
    var thread = new Thread(() => block = Direct(), 8 << 20) { Name = "direct" };
    thread.Start();
    thread.Join();
    Add("direct", block!);
}

void Add(string kind, Block block)
{
    if (args.Contains("--cpu"))
    {
        var now = ThreadCpu();
        Console.WriteLine("    cpu ms by thread: " + string.Join(", ", now.Select(t => (t.Key, Ms: t.Value - cpuMark.GetValueOrDefault(t.Key))).Where(t => t.Ms > 0).OrderByDescending(t => t.Ms).Take(8).Select(t => $"{t.Key} {t.Ms:0}")));
        cpuMark = now;
    }
    all[kind].Add(block);
    directTexts ??= kind == "direct" ? block.Texts : null;
    if (directTexts is not null && block.Texts.Any(t => directTexts[t.Key] != t.Value)) sameOutput = false;
    if (args.Contains("--each")) Console.WriteLine("    " + string.Join(" ", block.Runs.Select(r => r.Ms.ToString("0"))));
    Console.WriteLine($"  {kind,-22} {block.TokensPerSecond,7:0.0} tok/s  p50 {block.P50,6:0.0} ms  p95 {block.P95,6:0.0} ms{(block.RuntimeP50 is { } rt ? $"  (in runtime p50 {rt,6:0.0} ms)" : ""),-29}  (process threads {block.ThreadsBefore} before, {block.ThreadsAfter} after)");
}

Console.WriteLine();
Console.WriteLine($"medians over {rounds} rounds:");
double directTps = BenchModel.Median(all["direct"].Select(b => b.TokensPerSecond));
foreach (var kind in kinds)
{
    var blocks = all[kind];
    double tps = BenchModel.Median(blocks.Select(b => b.TokensPerSecond));
    string ratio = kind == "direct" ? "" : $"  {tps / directTps:0.000} of direct";
    string range = $"[{blocks.Min(b => b.TokensPerSecond):0}-{blocks.Max(b => b.TokensPerSecond):0}]";
    Console.WriteLine($"  {kind,-22} {tps,7:0.0} tok/s {range,-11} p50 {BenchModel.Median(blocks.Select(b => b.P50)),6:0.0} ms  p95 {BenchModel.Median(blocks.Select(b => b.P95)),6:0.0} ms{ratio}");
}
foreach (var kind in kinds.Skip(1))
{
    var perRound = all[kind].Zip(all["direct"], (a, d) => a.TokensPerSecond / d.TokensPerSecond).ToList();
    Console.WriteLine($"  {kind} / direct, same round: median {BenchModel.Median(perRound):0.000} ({string.Join(" ", perRound.Select(r => r.ToString("0.00")))})");
}
Console.WriteLine($"  agent time outside the runtime (HTTP, JSON, queue, log; p50 of request minus p50 in runtime): off {BenchModel.Median(all["agent, field log off"].Select(b => b.P50 - b.RuntimeP50!.Value)):0.0} ms, on {BenchModel.Median(all["agent, field log on"].Select(b => b.P50 - b.RuntimeP50!.Value)):0.0} ms");
Console.WriteLine($"  same greedy output through both: {(sameOutput ? "yes" : "NO")}");
Console.WriteLine($"  field log cost inside the agent (p50 on - p50 off): {BenchModel.Median(all["agent, field log on"].Select(b => b.P50)) - BenchModel.Median(all["agent, field log off"].Select(b => b.P50)):0.00} ms per request");

// The field log alone: one committed (fsynced) record per call.
using (var store = new FieldLogStore(dir.File("cost.db")))
{
    var record = new CompletionRecord("x", DateTimeOffset.UtcNow, "bench", "chat", "bench", null, [new FieldMessage("user", prompts[0])], new string('y', 200),
        new Dictionary<string, object?> { ["max_tokens"] = tokens }, 100, 10, 20, tokens, "length");
    for (int i = 0; i < 5; i++) store.Add(record with { Id = $"warm-{i}" });
    int n = 200;
    var costs = new double[n];
    for (int i = 0; i < n; i++)
    {
        long start = Stopwatch.GetTimestamp();
        store.Add(record with { Id = $"r-{i}" });
        costs[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }
    Array.Sort(costs);
    Console.WriteLine($"field log alone: p50 {costs[n / 2]:0.00} ms, p95 {costs[(int)(n * 0.95)]:0.00} ms per committed record (WAL, synchronous=FULL, {dir.Path})");
}
return 0;

// LLamaSharp called directly, with the settings the agent gives llama.cpp for the same config.
Block Direct()
{
    int before = Process.GetCurrentProcess().Threads.Count;
    EdgeTune.Inference.LlamaCpp.LlamaCppNative.EnsureLoaded();
    var parameters = new ModelParams(model)
    {
        ContextSize = (uint)contextTokens,
        BatchSize = (uint)contextTokens,
        GpuLayerCount = 0,
        Threads = threads,
        BatchThreads = threads,
    };
    var runs = new List<(double Ms, int Tokens)>();
    var texts = new Dictionary<string, string>();
    using (var weights = LLamaWeights.LoadFromFile(parameters))
    using (var context = weights.CreateContext(parameters))
    {
        var handle = context.NativeHandle;
        var vocab = weights.Vocab;
        (string Text, int Tokens) One(string p)
        {
            var template = new LLamaTemplate(weights.NativeHandle, null, false) { AddAssistant = true };
            template.Add("user", p);
            var prompt = weights.NativeHandle.Tokenize(Encoding.UTF8.GetString(template.Apply()), vocab.ShouldAddBOS, true, Encoding.UTF8);
            handle.MemoryClear(true);
            var batch = new LLamaBatch();
            for (int i = 0; i < prompt.Length; i++) batch.Add(prompt[i], i, LLamaSeqId.Zero, logits: i == prompt.Length - 1);
            if (handle.Decode(batch) != DecodeResult.Ok) throw new InvalidOperationException("llama_decode failed");
            int index = batch.TokenCount - 1, position = prompt.Length, generated = 0;
            var decoder = new StreamingTokenDecoder(Encoding.UTF8, weights);
            var text = new StringBuilder();
            while (generated < tokens)
            {
                var logits = handle.GetLogitsIth(index);
                int best = 0;
                for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
                var token = (LLamaToken)best;
                if (token.IsEndOfGeneration(vocab)) break;
                generated++;
                decoder.Add(token);
                text.Append(decoder.Read());
                if (generated >= tokens || position + 1 >= contextTokens) break;
                batch.Clear();
                batch.Add(token, position++, LLamaSeqId.Zero, logits: true);
                if (handle.Decode(batch) != DecodeResult.Ok) throw new InvalidOperationException("llama_decode failed");
                index = 0;
            }
            return (text.ToString(), generated);
        }
        foreach (var warm in Enumerable.Range(0, warmup).Select(i => prompts[i % prompts.Length])) One(warm);
        foreach (var p in prompts)
        {
            long start = Stopwatch.GetTimestamp();
            var (text, count) = One(p);
            runs.Add((Stopwatch.GetElapsedTime(start).TotalMilliseconds, count));
            texts[p] = text;
        }
    }
    return new Block(runs, texts, before, Process.GetCurrentProcess().Threads.Count, null);
}

async Task<Block> Agent(bool log)
{
    int before = Process.GetCurrentProcess().Threads.Count;
    Timed? timed = null;
    var runs = new List<(double Ms, int Tokens)>();
    var texts = new Dictionary<string, string>();
    await using (var agent = await BenchAgent.StartAsync(dir.Path, new BenchAgentSettings(model, contextTokens, threads, parallel) { FieldLog = log },
        c => timed = new Timed(ModelHost.Open(c.Model, c.Server.Parallel))))
    {
        foreach (var warm in Enumerable.Range(0, warmup).Select(i => prompts[i % prompts.Length])) await agent.ChatAsync(warm, tokens);
        lock (timed!.Ms) timed.Ms.Clear();
        foreach (var p in prompts)
        {
            long start = Stopwatch.GetTimestamp();
            var (text, count) = await agent.ChatAsync(p, tokens);
            runs.Add((Stopwatch.GetElapsedTime(start).TotalMilliseconds, count));
            texts[p] = text;
        }
    }
    return new Block(runs, texts, before, Process.GetCurrentProcess().Threads.Count, timed!.Ms.ToList());
}

// CPU time (user + system) of each live thread of this process, by "tid name", from /proc.
static Dictionary<string, double> ThreadCpu()
{
    var result = new Dictionary<string, double>();
    foreach (var task in Directory.GetDirectories("/proc/self/task"))
    {
        try
        {
            string stat = File.ReadAllText(Path.Combine(task, "stat"));
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            string name = stat[(stat.IndexOf('(') + 1)..stat.LastIndexOf(')')];
            result[$"{Path.GetFileName(task)}:{name}"] = (long.Parse(fields[11]) + long.Parse(fields[12])) * 10.0;
        }
        catch (IOException) { }
    }
    return result;
}

/// <param name="RuntimeMs">For the agent: each request's time inside the runtime's GenerateAsync (the rest is HTTP, JSON, queue, log).</param>
internal sealed record Block(List<(double Ms, int Tokens)> Runs, Dictionary<string, string> Texts, int ThreadsBefore, int ThreadsAfter, List<double>? RuntimeMs)
{
    public double? RuntimeP50 => RuntimeMs is { Count: > 0 } r ? r.Order().ElementAt(r.Count / 2) : null;
    public double TokensPerSecond => Runs.Sum(r => r.Tokens) / (Runs.Sum(r => r.Ms) / 1000);
    private double[] Sorted => [.. Runs.Select(r => r.Ms).Order()];
    public double P50 => Sorted[Sorted.Length / 2];
    public double P95 => Sorted[(int)Math.Min(Sorted.Length - 1, Math.Ceiling(Sorted.Length * 0.95) - 1)];
}

/// <summary>The agent's model, timed from the endpoint's side of GenerateAsync.</summary>
internal sealed class Timed(EdgeTune.Inference.IInferenceModel inner) : EdgeTune.Inference.IInferenceModel
{
    public List<double> Ms { get; } = [];
    public string ModelName => inner.ModelName;
    public string Description => inner.Description;
    public EdgeTune.Inference.IInferenceRuntime Runtime => inner.Runtime;
    public EdgeTune.Inference.InferenceCapabilities Capabilities => inner.Capabilities;
    public int ContextSize => inner.ContextSize;
    public int VocabularySize => inner.VocabularySize;
    public int? BosId => inner.BosId;
    public IReadOnlyList<string> Adapters => inner.Adapters;
    public string? ActiveAdapter => inner.ActiveAdapter;
    public int Parallel => inner.Parallel;
    public string? EndOfTurnText => inner.EndOfTurnText;
    public void SetAdapter(string? name) => inner.SetAdapter(name);
    public string ApplyChatTemplate(IReadOnlyList<EdgeTune.Models.Chat.ChatMessage> messages, bool addAssistant = true) => inner.ApplyChatTemplate(messages, addAssistant);
    public int[] Tokenize(string text, bool addSpecial = true, bool parseSpecial = true) => inner.Tokenize(text, addSpecial, parseSpecial);
    public float[] Logits(int[] tokens, int from = 0) => inner.Logits(tokens, from);
    public T Run<T>(Func<EdgeTune.Inference.IDecodeSession, T> work, CancellationToken cancellationToken = default) => inner.Run(work, cancellationToken);
    public EdgeTune.Inference.GenerationResult Generate(int[] promptTokens, EdgeTune.Inference.SamplingSettings sampling, Action<string>? onText, CancellationToken cancellationToken) =>
        inner.Generate(promptTokens, sampling, onText, cancellationToken);
    public async Task<EdgeTune.Inference.GenerationResult> GenerateAsync(int[] promptTokens, EdgeTune.Inference.SamplingSettings sampling, Action<string>? onText, CancellationToken cancellationToken)
    {
        long start = Stopwatch.GetTimestamp();
        var result = await inner.GenerateAsync(promptTokens, sampling, onText, cancellationToken);
        lock (Ms) Ms.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
        return result;
    }
    public void Dispose() => inner.Dispose();
}
