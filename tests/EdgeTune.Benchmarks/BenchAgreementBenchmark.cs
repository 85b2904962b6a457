using System.Diagnostics;
using System.Text.Json;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Profiles.Bench;
using EdgeTune.Testing;
using LLama;
using LLama.Common;
using LLama.Native;

namespace EdgeTune.Benchmarks;

/// <summary>
/// Does `edgetune bench` measure what llama.cpp itself does? Generation tokens/s of the tiny test model through
/// `edgetune bench` (the built edgetune.dll in a child process, as a user runs it) beside the same decode loop
/// straight through LLamaSharp with the same settings (context 256, one thread, a prompt in one batch, then one
/// llama_decode and a greedy pick per step). On a shared machine other work slows every run by a different amount,
/// so the two are measured in turn, round after round, and compared at the fast end of their decode steps (the 5th
/// percentile of every step's time: the machine's speed when nothing got in the way); the means and their spread are
/// printed as well. On a quiet machine the ratio is within a few per cent of 1.
///
///   dotnet run -c Release --project tests/EdgeTune.Benchmarks -- bench-agreement [--rounds 4] [--gen-tokens 64] [--dir D]
/// </summary>
internal static class BenchAgreementBenchmark
{
    private const int PromptTokens = 32, Repetitions = 3;

    public static int Run(string[] args)
    {
        string Opt(string name, string fallback)
        {
            int i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        }
        int rounds = int.Parse(Opt("--rounds", "4"));
        int genTokens = int.Parse(Opt("--gen-tokens", "64"));
        string dir = Opt("--dir", Path.Combine(Path.GetTempPath(), "edgetune-bench-agreement"));
        Directory.CreateDirectory(dir);
        string model = Path.Combine(dir, "tiny.gguf");
        TinyLlama.WriteGguf(model, new TinyLlamaConfig());
        string outDir = Path.Combine(dir, "out");
        string json = Path.Combine(outDir, "tiny-x86-64-generic.json");

        var direct = new List<double>();
        var bench = new List<double>();
        var directSteps = new List<double>();
        var benchSteps = new List<double>();
        for (int round = 0; round < rounds; round++)
        {
            var d = DirectGenTokensPerSecond(model, genTokens, directSteps);
            direct.AddRange(d);
            RunEdgetune("bench", "--profile", "x86-64-generic", "--model", model, "--prompt-tokens", $"{PromptTokens}",
                "--gen-tokens", $"{genTokens}", "--repetitions", $"{Repetitions}", "--threads", "1", "--out", outDir);
            using var doc = JsonDocument.Parse(File.ReadAllText(json));
            var reps = doc.RootElement.GetProperty("repetitions").EnumerateArray().ToList();
            var b = reps.Select(x => x.GetProperty("gen_tokens_per_second").GetDouble()).ToList();
            bench.AddRange(b);
            benchSteps.AddRange(reps.SelectMany(x => x.GetProperty("token_latencies_ms").EnumerateArray().Select(v => v.GetDouble())));
            Console.WriteLine($"round {round + 1}: direct {string.Join(", ", d.Select(x => x.ToString("0")))} | bench {string.Join(", ", b.Select(x => x.ToString("0")))} tokens/s");
        }
        double benchFast = 1e3 / P5(benchSteps), directFast = 1e3 / P5(directSteps);
        Console.WriteLine($"at the 5th-percentile step: bench {benchFast:0} / direct {directFast:0} tokens/s = {benchFast / directFast:0.000}");
        var (sb, sd) = (Summary.Of(bench), Summary.Of(direct));
        Console.WriteLine($"means: bench {sb.Mean:0} (CV {sb.CvPercent:0.#}%) / direct {sd.Mean:0} (CV {sd.CvPercent:0.#}%) tokens/s = {sb.Mean / sd.Mean:0.000}");
        return 0;
    }

    private static double P5(List<double> values) => Summary.Percentile(values.Order().ToList(), 5);

    /// <summary>The built edgetune.dll (copied beside this program by the project reference), run as a user's shell would.</summary>
    private static void RunEdgetune(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "edgetune.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        string stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        _ = stdout.Result;
        if (process.ExitCode != 0) throw new InvalidOperationException($"edgetune {string.Join(' ', args)} exited {process.ExitCode}: {stderr}");
    }

    /// <summary>Generation tokens/s per repetition after one warm-up, timed step by step with a Stopwatch.</summary>
    private static List<double> DirectGenTokensPerSecond(string model, int genTokens, List<double> stepsMs)
    {
        LlamaCpp.EnsureLoaded();
        var parameters = new ModelParams(model) { ContextSize = 256, BatchSize = 256, UBatchSize = 256, GpuLayerCount = 0, Threads = 1, BatchThreads = 1 };
        using var weights = LLamaWeights.LoadFromFile(parameters);
        using var context = weights.CreateContext(parameters);
        int vocab = weights.Vocab.Count;
        var rng = new Random(42);
        var batch = new LLamaBatch();
        var rates = new List<double>();
        for (int rep = 0; rep < 1 + Repetitions; rep++)
        {
            context.NativeHandle.MemoryClear(true);
            batch.Clear();
            for (int i = 0; i < PromptTokens; i++) batch.Add((LLamaToken)rng.Next(vocab), i, LLamaSeqId.Zero, i == PromptTokens - 1);
            Decode(context, batch);
            int token = ArgMax(context.NativeHandle.GetLogitsIth(PromptTokens - 1));
            var steps = new double[genTokens];
            long before = Stopwatch.GetTimestamp();
            for (int i = 0; i < genTokens; i++)
            {
                batch.Clear();
                batch.Add((LLamaToken)token, PromptTokens + i, LLamaSeqId.Zero, true);
                Decode(context, batch);
                token = ArgMax(context.NativeHandle.GetLogitsIth(0));
                long after = Stopwatch.GetTimestamp();
                steps[i] = (after - before) * 1e3 / Stopwatch.Frequency;
                before = after;
            }
            if (rep == 0) continue;
            rates.Add(genTokens / (steps.Sum() / 1e3));
            stepsMs.AddRange(steps);
        }
        return rates;
    }

    private static void Decode(LLamaContext context, LLamaBatch batch)
    {
        var result = context.NativeHandle.Decode(batch);
        if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode failed: {result}");
    }

    private static int ArgMax(Span<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }
}
