using System.Numerics;
using System.Runtime.CompilerServices;

namespace EdgeTune.Kernels;

/// <summary>
/// The dropout mask, defined once for every backend: element <c>index</c> under <c>seed</c> draws
/// u = top 24 bits of SplitMix64(seed + (index + 1)·0x9E3779B97F4A7C15) · 2⁻²⁴ ∈ [0, 1), which is the
/// (index+1)-th output of a SplitMix64 generator started at <c>seed</c> (Steele, Lea and Flood, 2014), and keeps
/// the element when u ≥ p. Counter-based: no state, any element can be drawn alone, so the backward
/// recomputes the mask instead of storing it. Only integer arithmetic, so a GPU kernel gets identical bits.
/// </summary>
public static class DropoutMask
{
    public const ulong Golden = 0x9E3779B97F4A7C15UL;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Hash(ulong seed, long index)
    {
        ulong z = seed + unchecked((ulong)(index + 1) * Golden);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>u ∈ [0, 1) on a grid of 2⁻²⁴, exact in float32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Uniform(ulong seed, long index) => (Hash(seed, index) >> 40) * (1f / 16777216f);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Keep(ulong seed, long index, float probability) => Uniform(seed, index) >= probability;

    /// <summary>The factor kept elements are multiplied by: 1/(1−p), and 0 when p ≥ 1 (everything dropped).</summary>
    public static float KeepScale(float probability) => probability >= 1f ? 0f : 1f / (1f - probability);
}

// Inverted dropout. x, y: (count)   y[i] = Keep(seed, i, p) ? x[i]/(1−p) : 0
// The backward is the same call on the output gradient with the same seed (the mask is recomputed).
public static partial class Reference
{
    public static void Dropout<T>(ReadOnlySpan<T> x, Span<T> y, long count, float probability, ulong seed)
        where T : IFloatingPointIeee754<T>
    {
        CheckDropout(x.Length, y.Length, count, probability);
        T scale = T.CreateChecked(DropoutMask.KeepScale(probability));
        for (int i = 0; i < count; i++)
            y[i] = DropoutMask.Keep(seed, i, probability) ? x[i] * scale : T.Zero;
    }

    internal static void CheckDropout(long x, long y, long count, float probability)
    {
        Shapes.NonNegative(count, nameof(count));
        if (!(probability >= 0f && probability <= 1f))
            throw new ArgumentOutOfRangeException(nameof(probability), probability, "dropout probability must lie in [0, 1]");
        Shapes.Require(x, count, nameof(x), $"(count={count})");
        Shapes.Require(y, count, nameof(y), $"(count={count})");
    }
}
