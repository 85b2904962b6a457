using System.Diagnostics;
using EdgeTune.Kernels;
using EdgeTune.Kernels.Cpu;

namespace EdgeTune.Benchmarks;

/// <summary>
/// GFLOP/s of a backend's matmuls (2·N·K·M flops each) at a LoRA-sized and a llama-sized shape, float32 and
/// frozen NF4, causal attention forward and backward, and the fused cross-entropy. Best of a few runs after a warm-up;
/// on a device backend each timing ends with a read-back, so the kernels have finished.
///
///   dotnet run -c Release --project tests/EdgeTune.Benchmarks -- kernels [--device cpu|cuda] [--threads N] [--repeat R]
/// </summary>
internal static class KernelsBenchmark
{
    public static int Run(string[] args)
    {
        string Opt(string name, string fallback)
        {
            int i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        }
        int threads = int.Parse(Opt("--threads", "0"));
        int repeat = int.Parse(Opt("--repeat", "3"));
        using var backend = Backends.Create(Opt("--device", "cpu"), threads, Console.Error.WriteLine);
        Console.WriteLine($"backend: {backend.Name}, best of {repeat}");
        var sync = backend.Allocate(1);
        double Time(Action action, int repeat) => Timed(() => { action(); backend.SumOfSquares(sync); }, repeat);
        Console.WriteLine($"{"op",-28} {"N",6} {"K",6} {"M",6} {"ms",9} {"GFLOP/s",9}");
        if (Opt("--device", "cpu") == "cpu")
        {
            int cores = threads > 0 ? threads : Environment.ProcessorCount;
            var (seconds, flops) = FmaPeak(cores);
            Report($"FMA peak, {cores} threads", 0, 0, 0, flops, seconds);
        }
        foreach (var (n, k, m) in new[] { (256, 256, 688), (512, 2048, 2048), (1024, 4096, 4096) })
        {
            var random = new Random(1);
            DeviceBuffer Fill(long count) => Uniform(backend, random, count, 1f);
            var (x, w, y, dy, dx, dw) = (Fill((long)n * k), Fill((long)m * k), Fill((long)n * m), Fill((long)n * m), Fill((long)n * k), Fill((long)m * k));
            double flops = 2.0 * n * k * m;
            Report("MatMul  y = x·wᵀ", n, k, m, flops, Time(() => backend.MatMul(x, w, y, n, k, m, false), repeat));
            Report("MatMulBackwardInput", n, k, m, flops, Time(() => backend.MatMulBackwardInput(dy, w, dx, n, k, m, false), repeat));
            Report("MatMulBackwardWeight", n, k, m, flops, Time(() => backend.MatMulBackwardWeight(dy, x, dw, n, k, m, false), repeat));
            var weights = new float[(long)m * k];
            backend.Download(w, weights);
            using var frozen = backend.UploadFrozen(FrozenFormat.Nf4, Nf4Codec.Quantize(weights), m, k);
            Report("FrozenMatMul NF4", n, k, m, flops, Time(() => backend.FrozenMatMul(x, frozen, y, n, false), repeat));
            Report("FrozenMatMulBackwardInput NF4", n, k, m, flops, Time(() => backend.FrozenMatMulBackwardInput(dy, frozen, dx, n, false), repeat));
        }
        {
            int n = 512, c = 1024, vocab = 32000;
            var random = new Random(2);
            var hidden = backend.Allocate((long)n * c);
            var head = backend.Allocate((long)vocab * c);
            var values = new float[(long)vocab * c];
            for (long i = 0; i < values.Length; i++) values[i] = (float)(random.NextDouble() - 0.5) * 0.1f;
            backend.Upload(values, head);
            backend.Upload(values.AsSpan(0, n * c), hidden);
            int[] targets = [.. Enumerable.Range(0, n).Select(i => i * 7 % vocab)];
            var (dHidden, dHead) = (backend.Allocate((long)n * c), backend.Allocate((long)vocab * c));
            double flops = 3 * 2.0 * n * c * vocab;
            Report("CrossEntropy fwd+bwd", n, c, vocab, flops, Time(() => backend.CrossEntropy(hidden, head, targets, n, c, vocab, 1f / n, dHidden, dHead), repeat));
        }
        foreach (var (seq, heads, kvHeads, headDim) in new[] { (512, 14, 2, 64), (1024, 32, 8, 64) })
        {
            var random = new Random(3);
            DeviceBuffer Fill(long count) => Uniform(backend, random, count, 0.5f);
            long qn = (long)seq * heads * headDim, kvn = (long)seq * kvHeads * headDim;
            var (q, k, v, o, dO) = (Fill(qn), Fill(kvn), Fill(kvn), backend.Allocate(qn), Fill(qn));
            var (lse, dq, dk, dv) = (backend.Allocate((long)heads * seq), backend.Allocate(qn), backend.Allocate(kvn), backend.Allocate(kvn));
            // Causal: half of the T² score pairs, 2 matmuls forward (q·kᵀ, p·v) and 5 in the backward (flash-style recompute).
            double pairs = seq * (seq + 1) / 2.0 * heads * headDim * 2;
            Report($"Attention fwd T={seq} H={heads}/{kvHeads}", seq, headDim, heads, 2 * pairs, Time(() => backend.AttentionForward(q, k, v, o, lse, 1, seq, heads, kvHeads, headDim), repeat));
            Report($"Attention bwd T={seq} H={heads}/{kvHeads}", seq, headDim, heads, 5 * pairs, Time(() => backend.AttentionBackward(dO, q, k, v, o, lse, dq, dk, dv, 1, seq, heads, kvHeads, headDim), repeat));
        }
        return 0;
    }

    /// <summary>
    /// The machine's float32 ceiling: every thread runs 12 independent chains of vector fused multiply-adds (enough to
    /// cover the FMA latency on two pipes) with no memory traffic. No kernel can beat it; a matmul's GFLOP/s over it is
    /// the kernel's efficiency. Returns the best of three runs' seconds and the flops each run does.
    /// </summary>
    private static (double Seconds, double Flops) FmaPeak(int threads)
    {
        const long Iterations = 50_000_000;
        double best = double.MaxValue;
        for (int run = 0; run < 3; run++)
        {
            var clock = Stopwatch.StartNew();
            var sums = new float[threads];
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t => sums[t] = FmaChains(Iterations / 10 * (run == 0 ? 1 : 10)));
            if (run > 0) best = Math.Min(best, clock.Elapsed.TotalSeconds);
        }
        return (best, 2.0 * 12 * System.Numerics.Vector<float>.Count * Iterations * threads);
    }

    private static float FmaChains(long iterations)
    {
        var one = new System.Numerics.Vector<float>(0.999999f);
        var add = new System.Numerics.Vector<float>(1e-7f);
        System.Numerics.Vector<float> a0 = one, a1 = one, a2 = one, a3 = one, a4 = one, a5 = one, a6 = one, a7 = one, a8 = one, a9 = one, a10 = one, a11 = one;
        for (long i = 0; i < iterations; i++)
        {
            a0 = System.Numerics.Vector.FusedMultiplyAdd(a0, one, add); a1 = System.Numerics.Vector.FusedMultiplyAdd(a1, one, add);
            a2 = System.Numerics.Vector.FusedMultiplyAdd(a2, one, add); a3 = System.Numerics.Vector.FusedMultiplyAdd(a3, one, add);
            a4 = System.Numerics.Vector.FusedMultiplyAdd(a4, one, add); a5 = System.Numerics.Vector.FusedMultiplyAdd(a5, one, add);
            a6 = System.Numerics.Vector.FusedMultiplyAdd(a6, one, add); a7 = System.Numerics.Vector.FusedMultiplyAdd(a7, one, add);
            a8 = System.Numerics.Vector.FusedMultiplyAdd(a8, one, add); a9 = System.Numerics.Vector.FusedMultiplyAdd(a9, one, add);
            a10 = System.Numerics.Vector.FusedMultiplyAdd(a10, one, add); a11 = System.Numerics.Vector.FusedMultiplyAdd(a11, one, add);
        }
        var sum = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
        return System.Numerics.Vector.Sum(sum);
    }

    /// <summary>A device buffer of <paramref name="count"/> values drawn uniformly from [-limit, limit).</summary>
    private static DeviceBuffer Uniform(IComputeBackend backend, Random random, long count, float limit)
    {
        var values = new float[count];
        for (long i = 0; i < count; i++) values[i] = (float)(random.NextDouble() * 2 - 1) * limit;
        var buffer = backend.Allocate(count);
        backend.Upload(values, buffer);
        return buffer;
    }

    private static double Timed(Action action, int repeat)
    {
        action();
        double best = double.MaxValue;
        for (int r = 0; r < repeat; r++)
        {
            var sw = Stopwatch.StartNew();
            action();
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        return best;
    }

    private static void Report(string op, int n, int k, int m, double flops, double seconds) =>
        Console.WriteLine($"{op,-28} {n,6} {k,6} {m,6} {seconds * 1e3,9:0.0} {flops / seconds / 1e9,9:0.0}");
}
