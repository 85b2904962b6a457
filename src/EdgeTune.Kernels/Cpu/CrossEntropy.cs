using System.Buffers;
using System.Numerics.Tensors;

namespace EdgeTune.Kernels.Cpu;

// hidden: (N,C)  head: (V,C)  targets: (N), −1 = no loss   dHidden: (N,C) overwritten  dHead: (V,C) accumulated
// Rows go 64 at a time so only a (64,V) logits block exists:
//   logits = hidden[chunk]·headᵀ              (the Dot grid, parallel over V panels)
//   per row: lse, loss = lse − logit[target], dlogits = gradScale·(softmax − onehot), 0 rows without a target
//   dHidden[chunk] = dlogits·head             (Axpy grid, parallel over rows × C)
//   dHead += dlogitsᵀ·hidden[chunk]           (Axpy grid, parallel over V × C; chunks in order: deterministic)
// Per-row losses are summed in float64 in row order.
public sealed unsafe partial class CpuBackend
{
    private const int CrossEntropyRows = 64;

    public double CrossEntropy(DeviceBuffer hidden, DeviceBuffer head, ReadOnlySpan<int> targets, int n, int c, int vocab,
        float gradScale, DeviceBuffer? dHidden, DeviceBuffer? dHead)
    {
        Reference.CheckCrossEntropy(hidden.Length, head.Length, targets, n, c, vocab);
        return HeadLoss(hidden, head, targets, null, null, default, n, c, vocab, gradScale, dHidden, dHead).CrossEntropy;
    }

    // The distillation term rides on the same logits block: per row, before the softmax overwrites it, the K student
    // logits at the teacher's ids are gathered and Reference.DistillRow (O(K), scalar) gives τ²·D and its dlogits,
    // added at those ids after the cross-entropy's (scaled by 1 − α). The head's two GEMMs are shared.
    public DistillLossSums Distill(DeviceBuffer hidden, DeviceBuffer head, ReadOnlySpan<int> targets, ReadOnlySpan<int> teacherIds,
        ReadOnlySpan<float> teacherLogProbs, DistillSettings settings, int n, int c, int vocab, float gradScale, DeviceBuffer? dHidden, DeviceBuffer? dHead)
    {
        Reference.CheckDistill(hidden.Length, head.Length, targets, teacherIds, teacherLogProbs.Length, settings, n, c, vocab);
        int k = settings.TopK;
        return HeadLoss(hidden, head, targets, teacherIds[..(n * k)].ToArray(), teacherLogProbs[..(n * k)].ToArray(), settings,
            n, c, vocab, gradScale, dHidden, dHead);
    }

    private DistillLossSums HeadLoss(DeviceBuffer hidden, DeviceBuffer head, ReadOnlySpan<int> targets, int[]? teacherIds, float[]? teacherLogProbs,
        DistillSettings settings, int n, int c, int vocab, float gradScale, DeviceBuffer? dHidden, DeviceBuffer? dHead)
    {
        if (dHidden is not null) Shapes.Require(dHidden.Length, (long)n * c, nameof(dHidden), $"(N={n},C={c})");
        if (dHead is not null) Shapes.Require(dHead.Length, (long)vocab * c, nameof(dHead), $"(V={vocab},C={c})");
        float* ph = Of(hidden, nameof(hidden)).Pointer, pw = Of(head, nameof(head)).Pointer;
        float* pdh = dHidden is null ? null : Of(dHidden, nameof(dHidden)).Pointer;
        float* pdw = dHead is null ? null : Of(dHead, nameof(dHead)).Pointer;
        bool gradients = pdh != null || pdw != null;
        int[] ids = targets[..n].ToArray();
        var losses = new double[n];
        var divergences = new double[n];
        int k = settings.TopK;
        bool distill = teacherIds is not null;
        float alpha = distill ? (float)settings.Alpha : 0f;
        float ceScale = gradScale * (1 - alpha);
        float[] logits = CpuScratch.Pool.Rent(CrossEntropyRows * vocab);
        try
        {
            fixed (float* pl = logits)
            {
                float* block = pl;
                for (int r0 = 0; r0 < n; r0 += CrossEntropyRows)
                {
                    int rows = Math.Min(CrossEntropyRows, n - r0);
                    DotProduct(ph + (long)r0 * c, rows, c, vocab, block, accumulate: false, pw, null);
                    For(rows, r =>
                    {
                        var row = new Span<float>(block + (long)r * vocab, vocab);
                        int target = ids[r0 + r];
                        if (target < 0) { row.Clear(); return; }
                        Span<float> z = stackalloc float[0], dz = stackalloc float[0];
                        if (distill)
                        {
                            z = k <= 256 ? stackalloc float[k] : new float[k];
                            dz = k <= 256 ? stackalloc float[k] : new float[k];
                            var ids = teacherIds.AsSpan((r0 + r) * k, k);
                            for (int i = 0; i < k; i++) z[i] = row[ids[i]];
                            divergences[r0 + r] = Reference.DistillRow<float>(z, teacherLogProbs.AsSpan((r0 + r) * k, k), settings, gradScale * alpha, dz);
                        }
                        float max = TensorPrimitives.Max(row), logit = row[target];
                        TensorPrimitives.Subtract(row, max, row);
                        TensorPrimitives.Exp(row, row);
                        float sum = TensorPrimitives.Sum(row);
                        losses[r0 + r] = (double)max + Math.Log(sum) - logit;
                        if (!gradients) return;
                        TensorPrimitives.Multiply(row, ceScale / sum, row);
                        row[target] -= ceScale;
                        if (!distill) return;
                        var at = teacherIds.AsSpan((r0 + r) * k, k);
                        for (int i = 0; i < k; i++) row[at[i]] += dz[i];
                    });
                    if (pdh != null)
                        AxpyGrid(rows, c, (a0, count, c0, width) =>
                            Gemm.Axpy(block + (long)a0 * vocab, vocab, 1, pw + c0, c, pdh + (long)(r0 + a0) * c + c0, c, count, width, vocab, true));
                    if (pdw != null)
                        AxpyGrid(vocab, c, (v0, count, c0, width) =>
                            Gemm.Axpy(block + v0, 1, vocab, ph + (long)r0 * c + c0, c, pdw + (long)v0 * c + c0, c, count, width, rows, false));
                }
            }
        }
        finally
        {
            CpuScratch.Pool.Return(logits);
        }
        double loss = 0, divergence = 0;
        foreach (double l in losses) loss += l;
        foreach (double d in divergences) divergence += d;
        return new DistillLossSums(loss, divergence);
    }
}
