using System.Numerics;

namespace EdgeTune.Kernels;

// Causal grouped-query self-attention over each sequence of a batch.
//   q, output, dq: (B,T,H,D)  k, v, dk, dv: (B,T,KV,D)  logSumExp: (B,H,T)
//   query head h reads key/value head g = h / (H/KV); scale = 1/√D
//   forward   S[t,s] = scale·q[t]·k[s] (s ≤ t);  lse[t] = log Σ_s e^S[t,s];  P = e^(S − lse)
//             output[t] = Σ_s P[t,s]·v[s]
//   backward  (FlashAttention-2, Dao 2023, algorithm 2: P is recomputed from lse, nothing T×T is stored)
//             dv[s] += P[t,s]·dO[t];  dP[t,s] = dO[t]·v[s];  Δ[t] = dO[t]·O[t] (= Σ_s P·dP)
//             dS = P·(dP − Δ);  dq[t] = scale·Σ_s dS[t,s]·k[s];  dk[s] += scale·dS[t,s]·q[t]
//             dq, dk, dv are overwritten; dk, dv sum over the H/KV query heads that share them.
//   packing   segmentStarts: (B,T) or empty. Row (b,t) belongs to the example that starts at position
//             segmentStarts[b,t] of its sequence and attends only to keys s in [segmentStarts[b,t], t]
//             (block-diagonal causal attention: several examples share a sequence, none sees another).
//             Empty: one example per sequence (every start 0).
public static partial class Reference
{
    public static void AttentionForward<T>(ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v, Span<T> output, Span<T> logSumExp,
        int batch, int seqLen, int heads, int kvHeads, int headDim, ReadOnlySpan<int> segmentStarts = default) where T : IFloatingPointIeee754<T>
    {
        CheckAttention(q.Length, k.Length, v.Length, output.Length, logSumExp.Length, batch, seqLen, heads, kvHeads, headDim);
        CheckSegmentStarts(segmentStarts, batch, seqLen);
        int group = heads / kvHeads;
        T scale = T.One / T.Sqrt(T.CreateChecked(headDim));
        var scores = new T[seqLen];
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
                for (int t = 0; t < seqLen; t++)
                {
                    int qi = QIndex(b, t, h, seqLen, heads, headDim);
                    int first = segmentStarts.IsEmpty ? 0 : segmentStarts[b * seqLen + t];
                    T max = T.NegativeInfinity;
                    for (int s = first; s <= t; s++)
                    {
                        int ki = QIndex(b, s, h / group, seqLen, kvHeads, headDim);
                        T dot = T.Zero;
                        for (int d = 0; d < headDim; d++) dot += q[qi + d] * k[ki + d];
                        scores[s] = dot * scale;
                        max = T.Max(max, scores[s]);
                    }
                    T sum = T.Zero;
                    for (int s = first; s <= t; s++) sum += T.Exp(scores[s] - max);
                    T lse = max + T.Log(sum);
                    logSumExp[(b * heads + h) * seqLen + t] = lse;
                    for (int d = 0; d < headDim; d++) output[qi + d] = T.Zero;
                    for (int s = first; s <= t; s++)
                    {
                        T p = T.Exp(scores[s] - lse);
                        int vi = QIndex(b, s, h / group, seqLen, kvHeads, headDim);
                        for (int d = 0; d < headDim; d++) output[qi + d] += p * v[vi + d];
                    }
                }
    }

    public static void AttentionBackward<T>(ReadOnlySpan<T> dOutput, ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v,
        ReadOnlySpan<T> output, ReadOnlySpan<T> logSumExp, Span<T> dq, Span<T> dk, Span<T> dv,
        int batch, int seqLen, int heads, int kvHeads, int headDim, ReadOnlySpan<int> segmentStarts = default) where T : IFloatingPointIeee754<T>
    {
        CheckAttention(q.Length, k.Length, v.Length, output.Length, logSumExp.Length, batch, seqLen, heads, kvHeads, headDim);
        CheckSegmentStarts(segmentStarts, batch, seqLen);
        long qCount = (long)batch * seqLen * heads * headDim, kvCount = (long)batch * seqLen * kvHeads * headDim;
        Shapes.Require(dOutput.Length, qCount, nameof(dOutput), $"(B={batch},T={seqLen},H={heads},D={headDim})");
        Shapes.Require(dq.Length, qCount, nameof(dq), $"(B={batch},T={seqLen},H={heads},D={headDim})");
        Shapes.Require(dk.Length, kvCount, nameof(dk), $"(B={batch},T={seqLen},KV={kvHeads},D={headDim})");
        Shapes.Require(dv.Length, kvCount, nameof(dv), $"(B={batch},T={seqLen},KV={kvHeads},D={headDim})");
        dq[..(int)qCount].Clear();
        dk[..(int)kvCount].Clear();
        dv[..(int)kvCount].Clear();
        int group = heads / kvHeads;
        T scale = T.One / T.Sqrt(T.CreateChecked(headDim));
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
                for (int t = 0; t < seqLen; t++)
                {
                    int qi = QIndex(b, t, h, seqLen, heads, headDim);
                    T lse = logSumExp[(b * heads + h) * seqLen + t];
                    T delta = T.Zero;
                    for (int d = 0; d < headDim; d++) delta += dOutput[qi + d] * output[qi + d];
                    int first = segmentStarts.IsEmpty ? 0 : segmentStarts[b * seqLen + t];
                    for (int s = first; s <= t; s++)
                    {
                        int ki = QIndex(b, s, h / group, seqLen, kvHeads, headDim);
                        T dot = T.Zero, dp = T.Zero;
                        for (int d = 0; d < headDim; d++)
                        {
                            dot += q[qi + d] * k[ki + d];
                            dp += dOutput[qi + d] * v[ki + d];
                        }
                        T p = T.Exp(dot * scale - lse);
                        T ds = p * (dp - delta);
                        for (int d = 0; d < headDim; d++)
                        {
                            dv[ki + d] += p * dOutput[qi + d];
                            dq[qi + d] += scale * ds * k[ki + d];
                            dk[ki + d] += scale * ds * q[qi + d];
                        }
                    }
                }
    }

    /// <summary>Offset of head <paramref name="h"/> at row (b, t) of a (B,T,heads,D) tensor.</summary>
    internal static int QIndex(int b, int t, int h, int seqLen, int heads, int headDim) => ((b * seqLen + t) * heads + h) * headDim;

    /// <summary>
    /// Segment starts are (B,T) or empty, and each sequence is cut into contiguous examples: row t starts an example
    /// (start t) or continues the one of row t − 1 (the same start). Checked at every backend's boundary: a start
    /// outside [0, t] would read keys of another sequence or the future.
    /// </summary>
    public static void CheckSegmentStarts(ReadOnlySpan<int> segmentStarts, int batch, int seqLen)
    {
        if (segmentStarts.IsEmpty) return;
        Shapes.Require(segmentStarts.Length, (long)batch * seqLen, nameof(segmentStarts), $"(B={batch},T={seqLen})");
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < seqLen; t++)
            {
                int start = segmentStarts[b * seqLen + t];
                if (start != t && (t == 0 || start != segmentStarts[b * seqLen + t - 1]))
                    throw new ArgumentException($"segmentStarts[{b},{t}] = {start}: a row starts its example ({t}) or continues the previous row's ({(t == 0 ? "none" : segmentStarts[b * seqLen + t - 1])})", nameof(segmentStarts));
            }
    }

    internal static void CheckAttention(long q, long k, long v, long output, long logSumExp,
        int batch, int seqLen, int heads, int kvHeads, int headDim)
    {
        Shapes.NonNegative(batch, nameof(batch));
        Shapes.NonNegative(seqLen, nameof(seqLen));
        Shapes.Heads(heads, kvHeads, headDim);
        long qCount = (long)batch * seqLen * heads * headDim, kvCount = (long)batch * seqLen * kvHeads * headDim;
        Shapes.Require(q, qCount, nameof(q), $"(B={batch},T={seqLen},H={heads},D={headDim})");
        Shapes.Require(k, kvCount, nameof(k), $"(B={batch},T={seqLen},KV={kvHeads},D={headDim})");
        Shapes.Require(v, kvCount, nameof(v), $"(B={batch},T={seqLen},KV={kvHeads},D={headDim})");
        Shapes.Require(output, qCount, nameof(output), $"(B={batch},T={seqLen},H={heads},D={headDim})");
        Shapes.Require(logSumExp, (long)batch * heads * seqLen, nameof(logSumExp), $"(B={batch},H={heads},T={seqLen})");
    }
}
