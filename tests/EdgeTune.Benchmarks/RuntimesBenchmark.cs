using System.Globalization;
using EdgeTune.Export.Onnx;
using EdgeTune.Formats.Gguf.Quantize;
using EdgeTune.Formats.Onnx;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Inference;
using EdgeTune.Inference.LlamaCpp;
using EdgeTune.Inference.Onnx;
using EdgeTune.Profiles.Bench;

namespace EdgeTune.Benchmarks;

/// <summary>
/// ONNX int4 (ONNX Runtime GenAI, MatMulNBits) against llama.cpp Q4_0 on the same weights and threads, in one run:
/// the same F32 model is quantised to Q4_0 and exported as ONNX int4 (block 32), then both are measured in
/// alternating rounds with `edgetune bench`'s own loop (BenchRunner: seeded prompt, greedy decode), so the machine's
/// noise falls on both. Prints TTFT and decode tokens/s per round and the medians, with the machine.
///
///   dotnet run -c Release --project tests/EdgeTune.Benchmarks -- runtimes [--threads N] [--rounds 4] [--prompt-tokens 128] [--gen-tokens 64] [--shape small|medium] [--dir D]
/// </summary>
public static class RuntimesBenchmark
{
    public static int Run(string[] args)
    {
        string Opt(string name, string fallback)
        {
            int i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        }
        int threads = int.Parse(Opt("--threads", Environment.ProcessorCount.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
        int rounds = int.Parse(Opt("--rounds", "4"), CultureInfo.InvariantCulture);
        var settings = new BenchSettings
        {
            PromptTokens = int.Parse(Opt("--prompt-tokens", "128"), CultureInfo.InvariantCulture),
            GenTokens = int.Parse(Opt("--gen-tokens", "64"), CultureInfo.InvariantCulture),
            Repetitions = 1,
            Warmup = 0,
        };
        string shape = Opt("--shape", "medium");
        string dir = Opt("--dir", Path.Combine(Path.GetTempPath(), "edgetune-bench-runtimes"));
        Directory.CreateDirectory(dir);

        // medium: ~100M parameters in llama shapes (1024 wide, 16 heads over 4 KV heads, FFN 2816, 6 layers, 12k vocabulary).
        var config = shape == "small"
            ? new TinyLlamaConfig { Embedding = 256, Heads = 8, KvHeads = 4, FeedForward = 688, Layers = 4, ExtraTokens = 4096 - 281, Seed = 3, ContextLength = 1024 }
            : new TinyLlamaConfig { Embedding = 1024, Heads = 16, KvHeads = 4, FeedForward = 2816, Layers = 6, ExtraTokens = 12000 - 281, Seed = 3, ContextLength = 1024 };
        string f32 = Path.Combine(dir, $"{shape}-f32.gguf"), q4 = Path.Combine(dir, $"{shape}-q4_0.gguf"), onnx = Path.Combine(dir, $"{shape}-onnx-int4");
        if (!File.Exists(f32))
        {
            Console.Error.WriteLine($"writing {f32} ...");
            TinyLlama.WriteGguf(f32, config);
        }
        if (!File.Exists(q4))
        {
            Console.Error.WriteLine($"quantising {q4} (Q4_0, llama-quantize's mix) ...");
            GgufQuantizer.Run(f32, q4, LlamaFileTypes.Parse("Q4_0"), new QuantizeOptions { Threads = threads });
        }
        if (!Directory.Exists(onnx))
        {
            Console.Error.WriteLine($"exporting {onnx} (int4, block 32) ...");
            OnnxExporter.Export(f32, onnx, new OnnxExportOptions { Precision = OnnxPrecision.Int4, BlockSize = 32 });
        }

        Console.WriteLine($"machine: {Environment.ProcessorCount} cores, {EdgeTune.Core.MachineFacts.CpuName()}, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}; load average {EdgeTune.Core.MachineFacts.LoadAverages()}");
        long onnxBytes = Directory.EnumerateFiles(onnx).Where(f => Path.GetFileName(f).StartsWith("model.onnx", StringComparison.Ordinal)).Sum(f => new FileInfo(f).Length);
        Console.WriteLine($"model:   {shape}, {config.Layers} layers × {config.Embedding} wide, vocabulary {config.VocabSize}; Q4_0 GGUF {new FileInfo(q4).Length / 1e6:0.0} MB, ONNX int4 {onnxBytes / 1e6:0.0} MB");
        Console.WriteLine($"run:     {threads} threads each, prompt {settings.PromptTokens} tokens, {settings.GenTokens} decoded greedily, {rounds} alternating rounds after one warm-up each");

        using var llama = LlamaCppRuntime.Default.Open(new ModelOptions { Path = q4, Threads = threads, ContextSize = settings.PromptTokens + settings.GenTokens + 8 });
        using var ort = OnnxGenAiRuntime.Default.Open(new ModelOptions { Path = onnx, Threads = threads, ContextSize = settings.PromptTokens + settings.GenTokens + 8 });
        var models = new (string Name, IInferenceModel Model)[] { ("llama.cpp Q4_0", llama), ("ONNX Runtime int4", ort) };
        foreach (var (_, model) in models) Measure(model, settings with { Warmup = 1 });

        var ttft = models.ToDictionary(m => m.Name, _ => new List<double>());
        var decode = models.ToDictionary(m => m.Name, _ => new List<double>());
        Console.WriteLine();
        Console.WriteLine($"{"round",-6} {"runtime",-18} {"TTFT ms",9} {"prompt tok/s",13} {"decode tok/s",13}");
        for (int r = 0; r < rounds; r++)
        {
            var order = r % 2 == 0 ? models : models.Reverse().ToArray();
            foreach (var (name, model) in order)
            {
                var t = Measure(model, settings);
                ttft[name].Add(t.TtftSeconds * 1000);
                decode[name].Add(t.GenTokensPerSecond);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{r + 1,-6} {name,-18} {t.TtftSeconds * 1000,9:0.0} {t.PromptTokensPerSecond(settings.PromptTokens),13:0.0} {t.GenTokensPerSecond,13:0.0}"));
            }
        }
        Console.WriteLine();
        foreach (var (name, _) in models)
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"median  {name,-18} TTFT {Median(ttft[name]),7:0.0} ms   decode {Median(decode[name]),7:0.0} tok/s"));
        double ratio = Median(decode["ONNX Runtime int4"]) / Median(decode["llama.cpp Q4_0"]);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"decode: ONNX int4 / llama.cpp Q4_0 = {ratio:0.00}; {(ratio >= 1 ? "ONNX Runtime" : "llama.cpp")} is faster on this machine"));
        return 0;
    }

    private static RepetitionTiming Measure(IInferenceModel model, BenchSettings settings) =>
        model.Run(session => BenchRunner.Run(session, model.VocabularySize, settings, TimeProvider.System))[^1];

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
    }


}
