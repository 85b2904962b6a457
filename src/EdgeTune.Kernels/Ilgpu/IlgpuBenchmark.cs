using System.Diagnostics;

namespace EdgeTune.Kernels.Ilgpu;

/// <summary>
/// Throughput of the ILGPU kernels that dominate a training step, for a GPU machine: GEMM GFLOP/s at 4096³ (forward
/// and both backwards), frozen NF4/Q4_K GEMMs at a LoRA-sized batch, causal attention forward + backward, and the
/// fused cross-entropy at a llama-3 vocabulary. Best of <c>repeat</c> timed runs after a warm-up (which also
/// compiles the kernels); the accelerator is synchronised around each run.
/// <para>On CUDA: <c>dotnet test tests/EdgeTune.Kernels.Tests --filter IlgpuCudaBenchmark --logger "console;verbosity=detailed"</c>
/// (a <see cref="IlgpuBackend.Cuda"/> run), or call <see cref="Run"/> from a CLI verb.</para>
/// </summary>
public static class IlgpuBenchmark
{
    /// <param name="small">Tiny shapes, for checking the benchmark itself on the CPU accelerator.</param>
    public static void Run(IlgpuBackend backend, Action<string> log, int repeat = 3, bool small = false)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(log);
        var random = new Random(1);
        var owned = new List<IDisposable>();
        DeviceBuffer Fill(long count, float scale = 1f)
        {
            var values = new float[count];
            for (long i = 0; i < count; i++) values[i] = (float)(random.NextDouble() * 2 - 1) * scale;
            var buffer = backend.Allocate(count);
            backend.Upload(values, buffer);
            owned.Add(buffer);
            return buffer;
        }
        double Time(Action action)
        {
            action();
            backend.Accelerator.Synchronize();
            double best = double.MaxValue;
            for (int r = 0; r < repeat; r++)
            {
                var clock = Stopwatch.StartNew();
                action();
                backend.Accelerator.Synchronize();
                best = Math.Min(best, clock.Elapsed.TotalMilliseconds);
            }
            return best;
        }
        void Report(string op, string shape, double flops, double ms) =>
            log($"{op,-30} {shape,-34} {ms,10:F3} ms {flops / ms / 1e6,10:F1} GFLOP/s");

        try
        {
            log($"backend: {backend.Name}, best of {repeat}");
            int s = small ? 48 : 4096;
            {
                var (x, w, y) = (Fill((long)s * s), Fill((long)s * s), Fill((long)s * s));
                double flops = 2.0 * s * s * s;
                string shape = $"N=K=M={s}";
                Report("MatMul", shape, flops, Time(() => backend.MatMul(x, w, y, s, s, s, false)));
                Report("MatMulBackwardInput", shape, flops, Time(() => backend.MatMulBackwardInput(y, w, x, s, s, s, false)));
                Report("MatMulBackwardWeight", shape, flops, Time(() => backend.MatMulBackwardWeight(y, x, w, s, s, s, false)));
            }
            {
                int n = small ? 16 : 512, k = small ? 256 : 4096, m = small ? 32 : 4096;
                var weights = new float[(long)m * k];
                for (long i = 0; i < weights.Length; i++) weights[i] = (float)(random.NextDouble() * 2 - 1) * 0.05f;
                var (x, y, dy, dx) = (Fill((long)n * k), Fill((long)n * m), Fill((long)n * m), Fill((long)n * k));
                foreach (var format in new[] { FrozenFormat.Nf4, FrozenFormat.Q4_K })
                {
                    byte[] data = format == FrozenFormat.Nf4 ? Nf4Codec.Quantize(weights) : QuantizeQ4K(weights, m, k);
                    using var frozen = backend.UploadFrozen(format, data, m, k);
                    string shape = $"N={n} K={k} M={m}";
                    Report($"FrozenMatMul {format}", shape, 2.0 * n * k * m, Time(() => backend.FrozenMatMul(x, frozen, y, n, false)));
                    Report($"FrozenMatMulBackwardInput {format}", shape, 2.0 * n * k * m, Time(() => backend.FrozenMatMulBackwardInput(dy, frozen, dx, n, false)));
                }
            }
            {
                int b = small ? 1 : 4, t = small ? 32 : 1024, h = small ? 4 : 32, kv = small ? 2 : 8, d = small ? 16 : 128;
                long qCount = (long)b * t * h * d, kvCount = (long)b * t * kv * d;
                var (q, k, v, o, lse) = (Fill(qCount), Fill(kvCount), Fill(kvCount), Fill(qCount), Fill((long)b * h * t));
                var (dO, dq, dk, dv) = (Fill(qCount), Fill(qCount), Fill(kvCount), Fill(kvCount));
                // causal: about half of the T² scores; 2 GEMM-like products forward, 4 (+1 recompute) backward
                double forward = 2.0 * 2 * b * h * (t * (t + 1.0) / 2) * d;
                string shape = $"B={b} T={t} H={h} KV={kv} D={d}";
                Report("AttentionForward", shape, forward, Time(() => backend.AttentionForward(q, k, v, o, lse, b, t, h, kv, d)));
                Report("AttentionBackward", shape, 2.5 * forward,
                    Time(() => backend.AttentionBackward(dO, q, k, v, o, lse, dq, dk, dv, b, t, h, kv, d)));
            }
            {
                int n = small ? 8 : 2048, c = small ? 32 : 2048, vocab = small ? 300 : 128256;
                var (hidden, head, dHidden, dHead) = (Fill((long)n * c), Fill((long)vocab * c, 0.02f), Fill((long)n * c), Fill((long)vocab * c));
                var targets = new int[n];
                for (int i = 0; i < n; i++) targets[i] = i * 7919 % vocab;
                Report("CrossEntropy (fwd+bwd, fused)", $"N={n} C={c} V={vocab}", 3 * 2.0 * n * c * vocab,
                    Time(() => backend.CrossEntropy(hidden, head, targets, n, c, vocab, 1f / n, dHidden, dHead)));
            }
        }
        finally
        {
            foreach (var buffer in owned) buffer.Dispose();
        }
    }

    private static byte[] QuantizeQ4K(float[] weights, int rows, int cols)
    {
        var data = new byte[FrozenRows.ByteCount(FrozenFormat.Q4_K, rows, cols)];
        Core.Quantization.QuantCodecs.Quantize(Core.GgmlType.Q4_K, weights, data);
        return data;
    }
}
