using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using EdgeTune.Agent;
using EdgeTune.Agent.Config;
using EdgeTune.Agent.Serving;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Testing;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

/// <summary>
/// Batched serving: C concurrent clients, each sending chat requests one after another, against the agent with
/// [server] parallel = P (decoded together) and parallel = 1 (one at a time). Aggregate tokens/s = every answer's
/// completion tokens over the wall time of the whole block. Rounds alternate the order; medians are reported.
/// </summary>
internal static class Concurrent
{
    private const string Token = "bench-token-0123456789";

    //   dotnet run -c Release --project tests/EdgeTune.Agent.Benchmarks -- concurrent [--clients 8] [--per-client 4] [--tokens 48] [--parallel 8] [--rounds 3] [--threads N]
    public static async Task<int> Run(string[] args)
    {
        string Opt(string name, string fallback) { int i = Array.IndexOf(args, name); return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback; }
        int Int(string name, int fallback) => int.Parse(Opt(name, fallback.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
        int clients = Int("--clients", 8), perClient = Int("--per-client", 4), tokens = Int("--tokens", 48), parallel = Int("--parallel", 8), rounds = Int("--rounds", 3);
        int threads = Int("--threads", Math.Min(4, Environment.ProcessorCount));
        const int Context = 512;
        using var dir = new TempDir();
        string model = dir.File("bench.gguf");
        TinyLlama.WriteGguf(model, BenchModel.Config);
        Console.WriteLine($"machine: {Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, load average {BenchModel.LoadAverage()}");
        Console.WriteLine($"model: {new FileInfo(model).Length / 1e6:0} MB F32 llama (512 wide, 4 layers); {clients} clients x {perClient} chat requests x {tokens} tokens, greedy, context {Context}, {threads} threads, {rounds} rounds");

        var results = new Dictionary<int, List<double>> { [1] = [], [parallel] = [] };
        Dictionary<string, string>? reference = null;
        int differingTotal = 0, answered = 0;
        for (int round = 0; round < rounds; round++)
        {
            foreach (int p in round % 2 == 0 ? new[] { 1, parallel } : [parallel, 1])
            {
                var (tps, wall, answers, peak, mean) = await Block(p);
                results[p].Add(tps);
                reference ??= answers;
                int differing = answers.Count(a => reference[a.Key] != a.Value);
                if (p != 1) { differingTotal += differing; answered += answers.Count; }
                Console.WriteLine($"  round {round + 1} parallel {p,2}: {tps,7:0.0} tok/s aggregate, {wall,6:0.00} s wall, sequences per pass {mean:0.0} (most {peak}), answers unlike the first block's {differing}, load average {BenchModel.LoadAverage()}");
            }
        }
        double one = BenchModel.Median(results[1]), many = BenchModel.Median(results[parallel]);
        Console.WriteLine();
        Console.WriteLine($"medians over {rounds} rounds: parallel 1 {one:0.0} tok/s, parallel {parallel} {many:0.0} tok/s: {many / one:0.00}x");
        Console.WriteLine($"  per round: {string.Join(" ", results[parallel].Zip(results[1], (a, b) => (a / b).ToString("0.00", CultureInfo.InvariantCulture)))}");
        // llama.cpp's CPU matmul takes vec_dot for a one-row pass and tinyBLAS for two rows or more (ggml's sgemm.cpp,
        // "only enable sgemm for prompt processing"): the sums are ordered differently, so where two logits tie within
        // float rounding a greedy choice can differ between decoding alone and decoding beside others.
        Console.WriteLine($"  greedy answers unlike parallel 1's: {differingTotal} of {answered} (float summation order; see device/EdgeTune.Agent/README.md, Batched serving)");
        return 0;

        async Task<(double TokensPerSecond, double WallSeconds, Dictionary<string, string> Answers, int Peak, double Mean)> Block(int p)
        {
            string path = dir.File($"agent-{p}.toml");
            File.WriteAllText(path, $"""
                [server]
                listen = "http://127.0.0.1:0"
                api_token = "{Token}"
                log_level = "Warning"
                parallel = {p}
                [model]
                path = "{model}"
                context = {Context}
                batch = {Context}
                threads = {threads}
                [field_log]
                path = "field-{Guid.NewGuid():N}.db"
                [telemetry]
                enabled = false
                """);
            EdgeTune.Inference.InferenceModel? loaded = null;
            var app = AgentApp.Build(AgentConfig.Load(path), c => loaded = (EdgeTune.Inference.InferenceModel)ModelHost.Open(c.Model, c.Server.Parallel));
            await app.StartAsync();
            try
            {
                var address = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
                using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = clients }) { BaseAddress = address, Timeout = TimeSpan.FromMinutes(10) };
                http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Token);
                while (!(await http.GetAsync("/health")).IsSuccessStatusCode) await Task.Delay(50);
                var answers = new Dictionary<string, string>();
                int total = 0;
                async Task<int> One(string prompt)
                {
                    using var response = await http.PostAsJsonAsync("/v1/chat/completions", new { model = "bench", max_tokens = tokens, temperature = 0, messages = new[] { new { role = "user", content = prompt } } });
                    response.EnsureSuccessStatusCode();
                    var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
                    lock (answers) answers[prompt] = body.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
                    return body.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
                }
                // Warm-up: every client once (JIT, the first prompts), unmeasured.
                await Task.WhenAll(Enumerable.Range(0, clients).Select(c => One($"warm up {c} in the world")));
                answers.Clear();
                long start = Stopwatch.GetTimestamp();
                await Task.WhenAll(Enumerable.Range(0, clients).Select(c => Task.Run(async () =>
                {
                    for (int i = 0; i < perClient; i++)
                        Interlocked.Add(ref total, await One($"the device model {c * perClient + i} is in the world of hello"));
                })));
                double wall = Stopwatch.GetElapsedTime(start).TotalSeconds;
                return (total / wall, wall, answers, loaded!.PeakSequencesPerPass, loaded.BatchedPasses == 0 ? 0 : (double)loaded.BatchedTokens / loaded.BatchedPasses);
            }
            finally
            {
                await app.StopAsync();
                await app.DisposeAsync();
            }
        }
    }
}

/// <summary>The benchmark's model (65 MB F32 synthetic llama) and small helpers shared by the benchmark commands.</summary>
internal static class BenchModel
{
    public static readonly TinyLlamaConfig Config = new() { Embedding = 512, Heads = 8, KvHeads = 4, FeedForward = 1408, Layers = 4, ContextLength = 512, ExtraTokens = 4000, Seed = 5 };

    public static double Median(IEnumerable<double> values)
    {
        var v = values.Order().ToArray();
        return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
    }

    public static string LoadAverage()
    {
        try { return string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (IOException) { return "?"; }
    }
}
