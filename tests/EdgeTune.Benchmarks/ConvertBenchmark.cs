using System.Diagnostics;
using EdgeTune.Core;
using EdgeTune.Formats.Safetensors;
using EdgeTune.Models.Conversion;
using EdgeTune.Models.Reference;
using EdgeTune.Testing;

namespace EdgeTune.Benchmarks;

/// <summary>
/// HF → GGUF conversion throughput and peak memory on a ~1 GB synthetic F32 checkpoint (each conversion in a
/// child process so its memory is its own), then reference-model speed on the tiny test models.
///
///   dotnet run -c Release --project tests/EdgeTune.Benchmarks -- convert [--layers 3] [--types F32,F16,BF16,Q8_0] [--dir D]
/// </summary>
internal static class ConvertBenchmark
{
    public static int Run(string[] args)
    {
        if (args[0] == "convert-child") return Child(args[1], args[2], Enum.Parse<GgmlType>(args[3]));
        string Opt(string name, string fallback)
        {
            int i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        }
        string dir = Opt("--dir", Path.Combine(Path.GetTempPath(), "edgetune-bench-convert"));
        // A 1B-class shape: 3 layers of hidden 2048 / MLP 5632 (GQA 32/4) with a 32000 vocabulary ≈ 1.05 GB of F32.
        var options = new TinyHfOptions
        {
            Vocab = 32000, Hidden = 2048, Intermediate = 5632, Heads = 32, KvHeads = 4,
            Layers = int.Parse(Opt("--layers", "3")), ContextLength = 2048, MaxShardBytes = 500_000_000,
        };
        string hf = Path.Combine(dir, "hf");
        string configPath = Path.Combine(hf, "config.json");
        // Reuse a checkpoint from an earlier run only when it has this very shape.
        if (!File.Exists(configPath) || File.ReadAllText(configPath) != TinyHfCheckpoint.ConfigJson(options)
            || !File.Exists(Path.Combine(hf, SafetensorsCheckpoint.IndexFileName)))
        {
            Console.Error.WriteLine($"writing the synthetic checkpoint to {hf} ...");
            if (Directory.Exists(hf)) Directory.Delete(hf, recursive: true);
            TinyHfCheckpoint.Write(hf, options);
        }
        long inputBytes = options.ByteLength;
        Console.WriteLine($"machine: {Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription}");
        Console.WriteLine($"checkpoint: {options.Layers} layers, hidden {options.Hidden}, vocab {options.Vocab}, {inputBytes / 1e9:0.00} GB F32 in 3 shards");
        Console.WriteLine($"{"out type",-8} {"seconds",8} {"GB/s (input)",13} {"peak RSS",10} {"peak anon",10}");
        foreach (var type in Opt("--types", "F32,F16,BF16,Q8_0").Split(','))
        {
            var (seconds, rssMb, anonMb, error) = RunChild(hf, Path.Combine(dir, $"out-{type}.gguf"), type);
            if (error is not null) { Console.WriteLine($"{type,-8} not measured: {error}"); continue; }
            Console.WriteLine($"{type,-8} {seconds,8:0.00} {inputBytes / 1e9 / seconds,13:0.00} {rssMb,7:0} MB {anonMb,7:0} MB");
        }
        Console.WriteLine("peak RSS counts the mapped safetensors pages the kernel may drop; peak anon is the converter's own memory.");
        Console.WriteLine();
        ReferenceSpeed();
        return 0;
    }

    private static (double Seconds, double RssMb, double AnonMb, string? Error) RunChild(string hf, string output, string type)
    {
        var psi = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") psi.ArgumentList.Add(System.Reflection.Assembly.GetEntryAssembly()!.Location);
        foreach (var a in new[] { "convert-child", hf, output, type }) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string stdout = p.StandardOutput.ReadToEnd(), stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) return (0, 0, 0, stderr.Split('\n').FirstOrDefault(l => l.Contains("Exception", StringComparison.Ordinal))?.Trim() ?? $"exit {p.ExitCode}");
        var parts = stdout.Trim().Split(' ');
        return (double.Parse(parts[0]), long.Parse(parts[1]) / 1024.0, long.Parse(parts[2]) / 1024.0, null);
    }

    private static int Child(string hf, string output, GgmlType type)
    {
        long peakAnon = 0;
        using var stop = new CancellationTokenSource();
        // RssAnon has no high-water mark in /proc, so sample it while the conversion runs.
        var sampler = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                peakAnon = Math.Max(peakAnon, Status("RssAnon:"));
                await Task.Delay(5).ConfigureAwait(false);
            }
        });
        var sw = Stopwatch.StartNew();
        HfToGgufConverter.Convert(hf, output, type, m => TinyHfCheckpoint.AddVocabulary(m, 32000));
        sw.Stop();
        stop.Cancel();
        sampler.Wait();
        Console.WriteLine($"{sw.Elapsed.TotalSeconds:0.000} {Status("VmHWM:")} {peakAnon}");
        File.Delete(output);
        return 0;
    }

    private static long Status(string key)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(key, StringComparison.Ordinal))
                return long.Parse(line[key.Length..].Trim().Split(' ')[0]);
        return -1;
    }

    /// <summary>Logit rows (positions) per second of the reference forward on 64-token prompts, f32 and f64.</summary>
    private static void ReferenceSpeed()
    {
        using var dir = new TempDir();
        Console.WriteLine($"{"reference model",-34} {"precision",9} {"positions/s",12} {"ms/forward(64)",15}");
        var cases = new (string Name, TinyHfOptions Options)[]
        {
            ("llama h4/kv2 hidden 64", new TinyHfOptions()),
            ("mistral h8/kv2 hidden 128", new TinyHfOptions { ModelType = "mistral", Heads = 8, Hidden = 128, Intermediate = 160 }),
            ("qwen2 h4/kv2 hidden 64 (biases)", new TinyHfOptions { ModelType = "qwen2" }),
        };
        foreach (var (name, options) in cases)
        {
            string hf = TinyHfCheckpoint.Write(dir.File(name.Split(' ')[0]), options);
            var prompt = TinyHfCheckpoint.Prompt(64, options.Vocab, 1);
            foreach (var precision in new[] { ReferencePrecision.Float32, ReferencePrecision.Float64 })
            {
                var model = ReferenceModel.FromHuggingFace(hf, precision);
                model.Forward(prompt); // warm-up (JIT)
                int runs = 0;
                var sw = Stopwatch.StartNew();
                while (sw.Elapsed.TotalSeconds < 2 || runs < 3) { model.Forward(prompt); runs++; }
                double perForward = sw.Elapsed.TotalSeconds / runs;
                Console.WriteLine($"{name,-34} {precision,9} {64 / perForward,12:0} {perForward * 1000,15:0.0}");
            }
        }
    }
}
