using System.Numerics;

namespace EdgeTune.Kernels;

// Rotary position embedding, in place.
//   x: (B,T,heads,D)  invFreq: (D/2)
//   The row (b,t) sits at position t. Pair j of each head, (a, b) = x[i_a], x[i_b] with
//   Half: i_a = j, i_b = j + D/2;  Interleaved: i_a = 2j, i_b = 2j + 1; rotates by θ = t·invFreq[j]:
//     (a, b) → (a·cos θ − b·sin θ, a·sin θ + b·cos θ)
//   The backward is the transpose of the rotation, i.e. the rotation by −θ (inverse = true).
//   Packing: with segmentStarts (B,T) the row (b,t) sits at position t − segmentStarts[b,t], so positions restart
//   at 0 with each example of a packed sequence (see Reference.AttentionForward).
public static partial class Reference
{
    public static void Rope<T>(Span<T> x, ReadOnlySpan<T> invFreq, int batch, int seqLen, int heads, int headDim, RopeLayout layout, bool inverse,
        ReadOnlySpan<int> segmentStarts = default) where T : IFloatingPointIeee754<T>
    {
        CheckRope(x.Length, invFreq.Length, batch, seqLen, heads, headDim);
        CheckSegmentStarts(segmentStarts, batch, seqLen);
        int half = headDim / 2;
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < seqLen; t++)
                for (int h = 0; h < heads; h++)
                {
                    int head = ((b * seqLen + t) * heads + h) * headDim;
                    int position = segmentStarts.IsEmpty ? t : t - segmentStarts[b * seqLen + t];
                    for (int j = 0; j < half; j++)
                    {
                        T angle = T.CreateChecked(position) * invFreq[j];
                        T cos = T.Cos(angle), sin = inverse ? -T.Sin(angle) : T.Sin(angle);
                        int ia = head + (layout == RopeLayout.Half ? j : 2 * j);
                        int ib = head + (layout == RopeLayout.Half ? j + half : 2 * j + 1);
                        T va = x[ia], vb = x[ib];
                        x[ia] = va * cos - vb * sin;
                        x[ib] = va * sin + vb * cos;
                    }
                }
    }

    internal static void CheckRope(long x, long invFreq, int batch, int seqLen, int heads, int headDim)
    {
        Shapes.NonNegative(batch, nameof(batch));
        Shapes.NonNegative(seqLen, nameof(seqLen));
        Shapes.Positive(heads, nameof(heads));
        Shapes.Positive(headDim, nameof(headDim));
        if (headDim % 2 != 0) throw new ArgumentException($"rope needs an even head size, got D={headDim}", nameof(headDim));
        Shapes.Require(x, (long)batch * seqLen * heads * headDim, nameof(x), $"(B={batch},T={seqLen},heads={heads},D={headDim})");
        Shapes.Require(invFreq, headDim / 2, nameof(invFreq), $"(D/2={headDim / 2})");
    }
}
