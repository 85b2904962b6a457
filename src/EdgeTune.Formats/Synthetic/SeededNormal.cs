namespace EdgeTune.Formats.Synthetic;

/// <summary>Seeded Gaussian draws for synthetic weights, reproducible across processes and machines.</summary>
public static class SeededNormal
{
    /// <summary>A generator for one tensor: the same (seed, name) always gives the same values.</summary>
    public static Random ForTensor(int seed, string name) => new(unchecked(seed * 1_000_003 + StableHash(name)));

    /// <summary>A standard normal draw (Box–Muller).</summary>
    public static double Next(Random rng)
    {
        double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }

    // FNV-1a: string.GetHashCode and HashCode.Combine are randomised per process, so they cannot seed files.
    private static int StableHash(string s)
    {
        unchecked
        {
            int h = (int)2166136261;
            foreach (char ch in s) h = (h ^ ch) * 16777619;
            return h;
        }
    }
}
