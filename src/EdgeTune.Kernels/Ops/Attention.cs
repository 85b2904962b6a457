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
public static partial class Reference
{
    public static void AttentionForward<T>(ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v, Span<T> output, Span<T> logSumExp,
        int batch, int seqLen, int heads, int kvHeads, int headDim) where T : IFloatingPointIeee754<T>
    {
        CheckAttention(q.Length, k.Length, v.Length, output.Length, logSumExp.Length, batch, seqLen, heads, kvHeads, headDim);
        int group = heads / kvHeads;
        T scale = T.One / T.Sqrt(T.CreateChecked(headDim));
        var scores = new T[seqLen];
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
                for (int t = 0; t < seqLen; t++)
                {
                    int qi = QIndex(b, t, h, seqLen, heads, headDim);
                    T max = T.NegativeInfinity;
                    for (int s = 0; s <= t; s++)
                    {
                        int ki = QIndex(b, s, h / group, seqLen, kvHeads, headDim);
                        T dot = T.Zero;
                        for (int d = 0; d < headDim; d++) dot += q[qi + d] * k[ki + d];
                        scores[s] = dot * scale;
                        max = T.Max(max, scores[s]);
                    }
                    T sum = T.Zero;
                    for (int s = 0; s <= t; s++) sum += T.Exp(scores[s] - max);
                    T lse = max + T.Log(sum);
                    logSumExp[(b * heads + h) * seqLen + t] = lse;
                    for (int d = 0; d < headDim; d++) output[qi + d] = T.Zero;
                    for (int s = 0; s <= t; s++)
                    {
                        T p = T.Exp(scores[s] - lse);
                        int vi = QIndex(b, s, h / group, seqLen, kvHeads, headDim);
                        for (int d = 0; d < headDim; d++) output[qi + d] += p * v[vi + d];
                    }
                }
    }

    public static void AttentionBackward<T>(ReadOnlySpan<T> dOutput, ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v,
        ReadOnlySpan<T> output, ReadOnlySpan<T> logSumExp, Span<T> dq, Span<T> dk, Span<T> dv,
        int batch, int seqLen, int heads, int kvHeads, int headDim) where T : IFloatingPointIeee754<T>
    {
        CheckAttention(q.Length, k.Length, v.Length, output.Length, logSumExp.Length, batch, seqLen, heads, kvHeads, headDim);
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
                    for (int s = 0; s <= t; s++)
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
