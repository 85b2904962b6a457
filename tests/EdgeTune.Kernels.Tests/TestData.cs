namespace EdgeTune.Kernels.Tests;

/// <summary>Seeded random tensors and the comparisons the kernel tests share.</summary>
internal static class TestData
{
    public static double[] Uniform(int count, int seed, double scale = 1)
    {
        var random = new Random(seed);
        var values = new double[count];
        for (int i = 0; i < count; i++) values[i] = (random.NextDouble() * 2 - 1) * scale;
        return values;
    }

    /// <summary>
    /// Segment starts of packed sequences: each sequence cut into examples of seeded lengths 1, 2, 63, 64, 65 or
    /// anything up to 80 (at most half the sequence, so that each holds several), so edges fall on and off 64-key blocks.
    /// </summary>
    public static int[] PackedStarts(int batch, int seqLen, int seed)
    {
        var rng = new Random(seed);
        int[] lengths = [1, 2, 63, 64, 65];
        var starts = new int[batch * seqLen];
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < seqLen;)
            {
                int length = Math.Min(Math.Max(1, seqLen / 2), rng.Next(2) == 0 ? lengths[rng.Next(lengths.Length)] : 1 + rng.Next(80));
                for (int i = t; i < Math.Min(seqLen, t + length); i++) starts[b * seqLen + i] = t;
                t += length;
            }
        return starts;
    }

    public static float[] UniformF(int count, int seed, float scale = 1) => [.. Uniform(count, seed, scale).Select(v => (float)v)];

    public static float[] Gaussian(int count, int seed, float sigma = 1)
    {
        var random = new Random(seed);
        var values = new float[count];
        for (int i = 0; i < count; i++)
        {
            double u1 = 1 - random.NextDouble(), u2 = random.NextDouble();
            values[i] = (float)(sigma * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return values;
    }

    public static int[] Tokens(int count, int vocab, int seed)
    {
        var random = new Random(seed);
        var tokens = new int[count];
        for (int i = 0; i < count; i++) tokens[i] = random.Next(vocab);
        return tokens;
    }

    public static double[] ToDouble(float[] values) => [.. values.Select(v => (double)v)];

    public static double Dot(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++) sum += a[i] * b[i];
        return sum;
    }

    /// <summary>
    /// Central differences of <paramref name="loss"/> in every element of <paramref name="x"/> (perturbed in place and
    /// restored) against <paramref name="analytic"/>: |a − n| ≤ tolerance·(|a| + |n|) + 1e-9.
    /// </summary>
    public static void CheckGradient(string name, double[] x, ReadOnlySpan<double> analytic, Func<double> loss, double tolerance = 1e-6, double h = 1e-5)
    {
        Assert.Equal(x.Length, analytic.Length);
        for (int i = 0; i < x.Length; i++)
        {
            double saved = x[i];
            x[i] = saved + h;
            double plus = loss();
            x[i] = saved - h;
            double minus = loss();
            x[i] = saved;
            double numeric = (plus - minus) / (2 * h), a = analytic[i];
            if (Math.Abs(a - numeric) > tolerance * (Math.Abs(a) + Math.Abs(numeric)) + 1e-9)
                Assert.Fail($"∂L/∂{name}[{i}]: analytic {a:R}, central difference {numeric:R}");
        }
    }

    /// <summary>|actual − expected| ≤ relative·max(|expected|, floor) per element, floor = the rms of expected.</summary>
    public static void Close(string name, ReadOnlySpan<double> expected, ReadOnlySpan<float> actual, double relative)
    {
        Assert.True(actual.Length >= expected.Length, $"{name}: {actual.Length} values, {expected.Length} expected");
        double rms = 0;
        foreach (double e in expected) rms += e * e;
        rms = expected.Length == 0 ? 0 : Math.Sqrt(rms / expected.Length);
        double floor = Math.Max(rms, 1e-30);
        for (int i = 0; i < expected.Length; i++)
            if (!(Math.Abs(actual[i] - expected[i]) <= relative * Math.Max(Math.Abs(expected[i]), floor)))
                Assert.Fail($"{name}[{i}]: {actual[i]:R}, expected {expected[i]:R} (tolerance {relative} relative, floor {floor:G3})");
    }
}
