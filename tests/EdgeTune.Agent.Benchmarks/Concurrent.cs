using System.Diagnostics;
using System.Globalization;
using EdgeTune.Inference;
using EdgeTune.Testing;

/// <summary>
/// Batched serving: C concurrent clients, each sending chat requests one after another, against the agent with
/// [server] parallel = P (decoded together) and parallel = 1 (one at a time). Aggregate tokens/s = every answer's
/// completion tokens over the wall time of the whole block. Rounds alternate the order; medians are reported.
/// </summary>
internal static class Concurrent
{
    //   dotnet run -c Release --project tests/EdgeTune.Agent.Benchmarks -- concurrent [--model PATH] [--clients 8] [--per-client 4] [--tokens 48] [--parallel 8] [--rounds 3] [--threads N] [--context 512]
    public static async Task<int> Run(string[] argv)
    {
        var args = new BenchArgs(argv);
        int clients = args.Int("--clients", 8), perClient = args.Int("--per-client", 4), tokens = args.Int("--tokens", 48), parallel = args.Int("--parallel", 8), rounds = args.Int("--rounds", 3);
        int threads = args.Int("--threads", Math.Min(4, Environment.ProcessorCount)), context = args.Int("--context", 512);
        using var dir = new TempDir();
        var (model, description) = BenchModel.Resolve(args, dir);
        Console.WriteLine(BenchModel.Machine());
        Console.WriteLine($"model: {description}; {clients} clients x {perClient} chat requests x {tokens} tokens, greedy, context {context}, {threads} threads, {rounds} rounds");

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
            InferenceModel? loaded = null;
            await using var agent = await BenchAgent.StartAsync(dir.Path, new BenchAgentSettings(model, context, threads, p) { QueueCapacity = Math.Max(64, clients) },
                c => loaded = (InferenceModel)EdgeTune.Agent.Serving.ModelHost.Open(c.Model, c.Server.Parallel));
            // Warm-up: every client once (JIT, the first prompts), unmeasured.
            await agent.RunClientsAsync(clients, 1, tokens, (c, _) => $"warm up {c} in the world", temperature: 0);
            long start = Stopwatch.GetTimestamp();
            var result = await agent.RunClientsAsync(clients, perClient, tokens, (c, i) => $"the device model {c * perClient + i} is in the world of hello", temperature: 0);
            double wall = Stopwatch.GetElapsedTime(start).TotalSeconds;
            if (result.Unexpected.Count > 0 || result.Rejected > 0)
                throw new InvalidOperationException($"parallel {p}: {result.Rejected} refused, {result.Unexpected.Count} unexpected answers ({result.Unexpected.FirstOrDefault()})");
            var answers = result.Answers.ToDictionary(a => a.Prompt, a => a.Text);
            return (result.CompletionTokens / wall, wall, answers, loaded!.PeakSequencesPerPass, loaded.BatchedPasses == 0 ? 0 : (double)loaded.BatchedTokens / loaded.BatchedPasses);
        }
    }
}
