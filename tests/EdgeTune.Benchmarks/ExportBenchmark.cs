using System.Diagnostics;
using System.Globalization;
using EdgeTune.Core;
using EdgeTune.Export.Gguf;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Gguf.Quantize;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Models.Adapters;
using EdgeTune.Models.Architectures;

namespace EdgeTune.Benchmarks;

/// <summary>
/// The heavy path of `edgetune export gguf --merge`: a LoRA adapter merged into a float32 base (MergedGgufWriter, the
/// exporter's own step) and the merged model quantised to Q4_K_M (GgufQuantizer), on a model of Qwen2.5-0.5B's shape
/// (dim 896, 24 layers, 14 heads over 2 KV heads, FFN 4864, 151,669-token vocabulary, tied embeddings; random weights).
/// Runs in a child process so its memory is its own, and samples anonymous RSS (the process's own memory; the mapped
/// model pages are the kernel's to drop) to check the streaming claim: peak anonymous memory above the process's
/// baseline stays below 1.5× the largest tensor as float32 plus the output buffers (no whole-model copy).
///
///   dotnet run -c Release --project tests/EdgeTune.Benchmarks -- export [--layers 24] [--rank 16] [--threads N] [--dir D]
/// </summary>
internal static class ExportBenchmark
{
    // Qwen2.5-0.5B: hidden 896, 24 layers, 14 heads / 2 KV heads, intermediate 4864, tied embeddings.
    private const int Vocab = 151_669;

    // GgufQuantizer holds two source and two destination chunk buffers of 4 Mi values (16 MiB of float32 each at most),
    // GgufWriter one 1 MiB file buffer: the "output buffers" of the bound.
    private const long OutputBuffers = 4L * (16 << 20) + (1 << 20);

    public static int Run(string[] args)
    {
        if (args[0] == "export-child") return Child(args[1], args[2], args[3], int.Parse(args[4], CultureInfo.InvariantCulture));
        string Opt(string name, string fallback)
        {
            int i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        }
        int layers = int.Parse(Opt("--layers", "24"), CultureInfo.InvariantCulture);
        int rank = int.Parse(Opt("--rank", "16"), CultureInfo.InvariantCulture);
        int threads = int.Parse(Opt("--threads", Environment.ProcessorCount.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
        string dir = Opt("--dir", Path.Combine(Path.GetTempPath(), "edgetune-bench-export"));
        Directory.CreateDirectory(dir);

        var config = new TinyLlamaConfig
        {
            Embedding = 896, Layers = layers, Heads = 14, KvHeads = 2, FeedForward = 4864, ContextLength = 32768, RopeBase = 1_000_000f,
            RmsEpsilon = 1e-6f, TiedEmbeddings = true, Seed = 5,
        };
        config = config with { ExtraTokens = Vocab - config.VocabSize };
        string basePath = Path.Combine(dir, $"qwen2.5-0.5b-shape-{layers}l-f32.gguf");
        string adapterPath = Path.Combine(dir, $"adapter-r{rank}-{layers}l.gguf");
        if (!File.Exists(basePath))
        {
            Console.Error.WriteLine($"writing {basePath} ...");
            TinyLlama.WriteGguf(basePath, config, modelName: "qwen2.5-0.5b-shaped");
        }
        if (!File.Exists(adapterPath)) WriteAdapter(basePath, adapterPath, rank);

        long baseBytes = new FileInfo(basePath).Length;
        long largest;
        using (var file = GgufFile.Open(basePath)) largest = file.Tensors.Max(t => t.ElementCount) * sizeof(float);
        Console.WriteLine($"machine: {Environment.ProcessorCount} cores, {EdgeTune.Core.MachineFacts.CpuName()}, {MemTotal()} RAM, {System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription}, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}");
        Console.WriteLine($"model:   Qwen2.5-0.5B shape: dim 896, {layers} layers, 14 heads / 2 KV, FFN 4864, vocab {config.VocabSize}, tied embeddings; {baseBytes / 1e6:0} MB F32");
        Console.WriteLine($"adapter: rank {rank} on the seven linear layers of every block; threads {threads}");
        Console.WriteLine();

        var psi = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true };
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") psi.ArgumentList.Add(System.Reflection.Assembly.GetEntryAssembly()!.Location);
        foreach (var a in new[] { "export-child", basePath, adapterPath, dir, threads.ToString(CultureInfo.InvariantCulture) }) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"the export child failed (exit {p.ExitCode}): {output}");
        var f = output.Trim().Split(' ').Select(s => double.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        double mergeSeconds = f[0], quantSeconds = f[1], baselineMb = f[2], mergePeakMb = f[3], quantPeakMb = f[4], outBytes = f[5];

        double boundMb = (1.5 * largest + OutputBuffers) / 1e6;
        Console.WriteLine($"{"step",-22} {"seconds",8} {"MB/s (F32 in)",14} {"peak anon",10} {"above baseline",15}");
        Console.WriteLine($"{"merge (float32)",-22} {mergeSeconds,8:0.00} {baseBytes / 1e6 / mergeSeconds,14:0} {mergePeakMb,7:0} MB {mergePeakMb - baselineMb,12:0} MB");
        Console.WriteLine($"{"quantise Q4_K_M",-22} {quantSeconds,8:0.00} {baseBytes / 1e6 / quantSeconds,14:0} {quantPeakMb,7:0} MB {quantPeakMb - baselineMb,12:0} MB");
        Console.WriteLine($"{"merge + Q4_K_M",-22} {mergeSeconds + quantSeconds,8:0.00} {baseBytes / 1e6 / (mergeSeconds + quantSeconds),14:0}");
        Console.WriteLine();
        Console.WriteLine($"Q4_K_M file: {outBytes / 1e6:0} MB; baseline anon (runtime + model metadata, before the export): {baselineMb:0} MB");
        double peakAbove = Math.Max(mergePeakMb, quantPeakMb) - baselineMb;
        bool within = peakAbove < boundMb;
        Console.WriteLine($"bound: 1.5 × the largest tensor as float32 ({largest / 1e6:0} MB) + output buffers ({OutputBuffers / 1e6:0} MB) = {boundMb:0} MB above baseline; " +
                          $"measured {peakAbove:0} MB: {(within ? "within" : "OVER")}");
        return within ? 0 : 1;
    }

    /// <summary>A rank-r adapter on all seven linear layers of every block, random A and B (B non-zero, so the merge does work).</summary>
    private static void WriteAdapter(string basePath, string path, int rank)
    {
        using var file = GgufFile.Open(basePath);
        var config = ModelConfig.FromGguf(file);
        var rng = new Random(11);
        float[] Random(long n) => Enumerable.Range(0, (int)n).Select(_ => (float)((rng.NextDouble() * 2 - 1) * 0.05)).ToArray();
        var pairs = TensorMap.Tensors(config)
            .Where(s => s.Shape.Length == 2 && s.GgufName.StartsWith("blk.", StringComparison.Ordinal))
            .Select(s => new LoraPair(s.GgufName, rank, s.Shape[1], s.Shape[0], Random(rank * s.Shape[1]), Random(s.Shape[0] * rank)))
            .ToList();
        LoraAdapterWriter.WriteGguf(path, config, pairs, alpha: 2 * rank, rsLora: false, AdapterLayout.Gguf);
    }

    private static int Child(string basePath, string adapterPath, string dir, int threads)
    {
        string merged = Path.Combine(dir, "merged-f32.gguf"), quantised = Path.Combine(dir, "merged-q4_k_m.gguf");
        // What the exporter holds before its merge starts: the runtime, the adapter, the base's metadata (151k tokens).
        var adapter = LoraAdapter.Open(adapterPath);
        using (var warm = GgufFile.Open(basePath)) _ = warm.Tensors.Count;
        GC.Collect();
        long baseline = AnonKb();

        long peak = 0;
        using var stop = new CancellationTokenSource();
        // RssAnon has no high-water mark in /proc, so sample it while the export runs.
        var sampler = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                Interlocked.Exchange(ref peak, Math.Max(Interlocked.Read(ref peak), AnonKb()));
                await Task.Delay(2).ConfigureAwait(false);
            }
        });
        long TakePeak() => Interlocked.Exchange(ref peak, AnonKb());

        var sw = Stopwatch.StartNew();
        MergedGgufWriter.Write(basePath, adapter, merged);
        double mergeSeconds = sw.Elapsed.TotalSeconds;
        long mergePeak = TakePeak();
        // The merge's buffers are garbage now. The GC may keep their pages committed, so the quantise row's peak can
        // still count them: the bound is checked against the higher of the two rows, the export's real peak.
        GC.Collect();
        sw.Restart();
        GgufQuantizer.Run(merged, quantised, LlamaFileType.MostlyQ4_K_M, new QuantizeOptions { Threads = threads });
        double quantSeconds = sw.Elapsed.TotalSeconds;
        stop.Cancel();
        sampler.Wait();
        long quantPeak = Math.Max(peak, AnonKb());
        long outBytes = new FileInfo(quantised).Length;
        File.Delete(merged);
        File.Delete(quantised);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{mergeSeconds:0.000} {quantSeconds:0.000} {baseline / 1024.0:0.0} {mergePeak / 1024.0:0.0} {quantPeak / 1024.0:0.0} {outBytes}"));
        return 0;
    }

    private static long AnonKb()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("RssAnon:", StringComparison.Ordinal))
                return long.Parse(line["RssAnon:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        throw new EdgeTuneException("/proc/self/status has no RssAnon line (Linux only)");
    }

    private static string MemTotal()
    {
        foreach (var line in File.ReadLines("/proc/meminfo"))
            if (line.StartsWith("MemTotal:", StringComparison.Ordinal))
                return $"{long.Parse(line["MemTotal:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) / 1e6:0.0} GB";
        return "? GB";
    }

}
