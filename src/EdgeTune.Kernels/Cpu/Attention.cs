using System.Buffers;
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace EdgeTune.Kernels.Cpu;

// q, output, dq: (B,T,H,D)  k, v, dk, dv: (B,T,KV,D)  logSumExp: (B,H,T); query head h reads kv head h / (H/KV)
// forward: FlashAttention-style, one query row at a time over key blocks of 64 with an online softmax (running
//   max and sum, the accumulator rescaled once per block); no T×T matrix. Parallel over (b, h, query block).
// backward: P recomputed from logSumExp; Δ = dO·O; dS = P·(dP − Δ). Parallel over (b, kv head): a task owns
//   dk, dv of its kv head and dq of the H/KV query heads that read it, so nothing is written by two threads.
// packing: with segmentStarts (B,T) query row t reads keys [segmentStarts[b,t], t] only (see Reference).
public sealed unsafe partial class CpuBackend
{
    private const int KeyBlock = 64, QueryBlock = 64;

    public void AttentionForward(DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, DeviceBuffer output, DeviceBuffer logSumExp,
        int batch, int seqLen, int heads, int kvHeads, int headDim, ReadOnlySpan<int> segmentStarts = default)
    {
        Reference.CheckAttention(q.Length, k.Length, v.Length, output.Length, logSumExp.Length, batch, seqLen, heads, kvHeads, headDim);
        Reference.CheckSegmentStarts(segmentStarts, batch, seqLen);
        int[]? starts = segmentStarts.IsEmpty ? null : segmentStarts.ToArray();
        float* pq = Of(q, nameof(q)).Pointer, pk = Of(k, nameof(k)).Pointer, pv = Of(v, nameof(v)).Pointer;
        float* po = Of(output, nameof(output)).Pointer, pl = Of(logSumExp, nameof(logSumExp)).Pointer;
        int group = heads / kvHeads, d = headDim, qStride = heads * d, kvStride = kvHeads * d;
        float scale = 1f / MathF.Sqrt(d);
        int queryBlocks = (seqLen + QueryBlock - 1) / QueryBlock;
        For(batch * heads * queryBlocks, task =>
        {
            int bh = task / queryBlocks, t0 = task % queryBlocks * QueryBlock;
            int b = bh / heads, h = bh % heads, g = h / group;
            Span<float> scores = stackalloc float[KeyBlock];
            float* kBase = pk + (long)b * seqLen * kvStride + g * d, vBase = pv + (long)b * seqLen * kvStride + g * d;
            for (int t = t0; t < Math.Min(seqLen, t0 + QueryBlock); t++)
            {
                float* qPtr = pq + ((long)b * seqLen + t) * qStride + h * d, accPtr = po + ((long)b * seqLen + t) * qStride + h * d;
                var acc = new Span<float>(accPtr, d);
                acc.Clear();
                float max = float.NegativeInfinity, sum = 0f;
                for (int s0 = starts is null ? 0 : starts[b * seqLen + t]; s0 <= t; s0 += KeyBlock)
                {
                    int count = Math.Min(KeyBlock, t + 1 - s0);
                    float blockMax = float.NegativeInfinity;
                    for (int j = 0; j < count; j++)
                    {
                        scores[j] = scale * RowDot(qPtr, kBase + (long)(s0 + j) * kvStride, d);
                        blockMax = MathF.Max(blockMax, scores[j]);
                    }
                    if (blockMax > max)
                    {
                        float correction = MathF.Exp(max - blockMax); // 0 on the first block
                        sum *= correction;
                        TensorPrimitives.Multiply(acc, correction, acc);
                        max = blockMax;
                    }
                    var block = scores[..count];
                    TensorPrimitives.Subtract(block, max, block);
                    TensorPrimitives.Exp(block, block); // one vector call per block, not a scalar exp per key
                    sum += TensorPrimitives.Sum(block);
                    for (int j = 0; j < count; j++) RowAxpy(vBase + (long)(s0 + j) * kvStride, block[j], accPtr, d);
                }
                TensorPrimitives.Multiply(acc, 1f / sum, acc);
                pl[((long)b * heads + h) * seqLen + t] = max + MathF.Log(sum);
            }
        });
    }

    public void AttentionBackward(DeviceBuffer dOutput, DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, DeviceBuffer output, DeviceBuffer logSumExp,
        DeviceBuffer dq, DeviceBuffer dk, DeviceBuffer dv, int batch, int seqLen, int heads, int kvHeads, int headDim, ReadOnlySpan<int> segmentStarts = default)
    {
        Reference.CheckAttention(q.Length, k.Length, v.Length, output.Length, logSumExp.Length, batch, seqLen, heads, kvHeads, headDim);
        Reference.CheckSegmentStarts(segmentStarts, batch, seqLen);
        int[]? starts = segmentStarts.IsEmpty ? null : segmentStarts.ToArray();
        long qCount = (long)batch * seqLen * heads * headDim, kvCount = (long)batch * seqLen * kvHeads * headDim;
        Shapes.Require(dOutput.Length, qCount, nameof(dOutput), $"(B={batch},T={seqLen},H={heads},D={headDim})");
        Shapes.Require(dq.Length, qCount, nameof(dq), $"(B={batch},T={seqLen},H={heads},D={headDim})");
        Shapes.Require(dk.Length, kvCount, nameof(dk), $"(B={batch},T={seqLen},KV={kvHeads},D={headDim})");
        Shapes.Require(dv.Length, kvCount, nameof(dv), $"(B={batch},T={seqLen},KV={kvHeads},D={headDim})");
        float* pdo = Of(dOutput, nameof(dOutput)).Pointer, pq = Of(q, nameof(q)).Pointer, pk = Of(k, nameof(k)).Pointer;
        float* pv = Of(v, nameof(v)).Pointer, po = Of(output, nameof(output)).Pointer, pl = Of(logSumExp, nameof(logSumExp)).Pointer;
        float* pdq = Of(dq, nameof(dq)).Pointer, pdk = Of(dk, nameof(dk)).Pointer, pdv = Of(dv, nameof(dv)).Pointer;
        int group = heads / kvHeads, d = headDim, qStride = heads * d, kvStride = kvHeads * d;
        float scale = 1f / MathF.Sqrt(d);
        For(batch * kvHeads, task =>
        {
            int b = task / kvHeads, g = task % kvHeads;
            Span<float> probabilities = stackalloc float[KeyBlock];
            long kvRow0 = (long)b * seqLen * kvStride + g * d;
            for (int s = 0; s < seqLen; s++)
            {
                new Span<float>(pdk + kvRow0 + (long)s * kvStride, d).Clear();
                new Span<float>(pdv + kvRow0 + (long)s * kvStride, d).Clear();
            }
            for (int h = g * group; h < (g + 1) * group; h++)
                for (int t = 0; t < seqLen; t++)
                {
                    long qi = ((long)b * seqLen + t) * qStride + h * d;
                    float* qRow = pq + qi, doRow = pdo + qi, dqRow = pdq + qi;
                    new Span<float>(dqRow, d).Clear();
                    float lse = pl[((long)b * heads + h) * seqLen + t];
                    float delta = RowDot(doRow, po + qi, d);
                    for (int s0 = starts is null ? 0 : starts[b * seqLen + t]; s0 <= t; s0 += KeyBlock)
                    {
                        int count = Math.Min(KeyBlock, t + 1 - s0);
                        var block = probabilities[..count];
                        for (int j = 0; j < count; j++) block[j] = scale * RowDot(qRow, pk + kvRow0 + (long)(s0 + j) * kvStride, d) - lse;
                        TensorPrimitives.Exp(block, block); // P recomputed, one vector call per block of keys
                        for (int j = 0; j < count; j++)
                        {
                            long ki = kvRow0 + (long)(s0 + j) * kvStride;
                            float p = block[j];
                            float ds = scale * p * (RowDot(doRow, pv + ki, d) - delta);
                            RowAxpy(doRow, p, pdv + ki, d);
                            RowAxpy(pk + ki, ds, dqRow, d);
                            RowAxpy(qRow, ds, pdk + ki, d);
                        }
                    }
                }
        });
    }

    // Head rows are short (64 or 128 values): inlined vector loops instead of a TensorPrimitives call per (query, key)
    // pair, whose dispatch and tail handling cost as much as the arithmetic at that length (attention was 7–24 GFLOP/s).

    /// <summary>Σ a[i]·b[i] over one head row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float RowDot(float* a, float* b, int d)
    {
        int w = Vector<float>.Count, i = 0;
        var s0 = Vector<float>.Zero;
        var s1 = Vector<float>.Zero;
        for (; i + 2 * w <= d; i += 2 * w)
        {
            s0 = Vector.MultiplyAddEstimate(Vector.Load(a + i), Vector.Load(b + i), s0);
            s1 = Vector.MultiplyAddEstimate(Vector.Load(a + i + w), Vector.Load(b + i + w), s1);
        }
        for (; i + w <= d; i += w) s0 = Vector.MultiplyAddEstimate(Vector.Load(a + i), Vector.Load(b + i), s0);
        float sum = Vector.Sum(s0 + s1);
        for (; i < d; i++) sum += a[i] * b[i];
        return sum;
    }

    /// <summary>y[i] += alpha·x[i] over one head row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RowAxpy(float* x, float alpha, float* y, int d)
    {
        int w = Vector<float>.Count, i = 0;
        var a = new Vector<float>(alpha);
        for (; i + w <= d; i += w) Vector.MultiplyAddEstimate(Vector.Load(x + i), a, Vector.Load(y + i)).Store(y + i);
        for (; i < d; i++) y[i] += alpha * x[i];
    }
}
