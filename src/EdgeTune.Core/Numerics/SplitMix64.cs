namespace EdgeTune.Core.Numerics;

/// <summary>
/// SplitMix64 (Steele, Lea and Flood 2014): a tiny generator and mixer, fully specified, so seeded runs give the
/// same numbers on every machine and .NET version. (The dropout mask keeps its own copy: it runs inside GPU kernels.)
/// </summary>
public static class SplitMix64
{
    public const ulong Golden = 0x9E3779B97F4A7C15UL;

    /// <summary>The finaliser: spreads the bits of <paramref name="z"/> over all 64.</summary>
    public static ulong Finalize(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>The next value of the stream whose state is <paramref name="state"/>.</summary>
    public static ulong Next(ref ulong state) => Finalize(state += Golden);

    /// <summary>53 random bits → [0, 1).</summary>
    public static double NextDouble(ref ulong state) => (Next(ref state) >> 11) * (1.0 / (1UL << 53));
}
