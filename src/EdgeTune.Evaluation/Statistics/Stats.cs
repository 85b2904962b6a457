namespace EdgeTune.Evaluation.Statistics;

/// <summary>A value with its confidence interval (NaN bounds when the sample is empty).</summary>
public readonly record struct Interval(double Value, double Low, double High)
{
    public override string ToString() => $"{Value:0.###} [{Low:0.###}, {High:0.###}]";
}

/// <summary>The outcome of a paired comparison of two runners on the same examples (A minus B).</summary>
public sealed record PairedTest(string Test, double Difference, double PValue, int Discordant = 0, int AWins = 0, int BWins = 0)
{
    public bool Significant(double alpha = 0.05) => PValue < alpha;
}

/// <summary>SplitMix64: a tiny generator that gives the same stream on every machine and .NET version.</summary>
public sealed class SeededRandom(ulong seed)
{
    private ulong _state = seed;

    public ulong NextULong() => Core.Numerics.SplitMix64.Next(ref _state);

    /// <summary>Uniform in [0, n) (multiply-shift; the bias is below 2^-32 for the sizes used here).</summary>
    public int Next(int n) => (int)((NextULong() >> 32) * (ulong)n >> 32);

    public double NextDouble() => (NextULong() >> 11) * (1.0 / (1UL << 53));

    public void Shuffle<T>(IList<T> list)
    {
        for (int i = list.Count - 1; i > 0; i--)
        {
            int j = Next(i + 1);
            (list[i], list[j]) = (list[j], list[i]);
        }
    }
}

public static class Stats
{
    public const int DefaultResamples = 2000;

    /// <summary>
    /// 95% (or <paramref name="level"/>) percentile bootstrap interval of a statistic of n examples: resample the
    /// example indices with replacement <paramref name="resamples"/> times, compute the statistic on each and take
    /// the (1−level)/2 and (1+level)/2 quantiles. The statistic takes the indices, so corpus-level figures
    /// (macro-F1, perplexity as total NLL over total tokens) are resampled correctly.
    /// </summary>
    public static Interval Bootstrap(int n, Func<IReadOnlyList<int>, double> statistic, ulong seed, int resamples = DefaultResamples, double level = 0.95)
    {
        if (n == 0) return new Interval(double.NaN, double.NaN, double.NaN);
        var all = Enumerable.Range(0, n).ToArray();
        double value = statistic(all);
        var rng = new SeededRandom(seed);
        var values = new double[resamples];
        var idx = new int[n];
        for (int b = 0; b < resamples; b++)
        {
            for (int i = 0; i < n; i++) idx[i] = rng.Next(n);
            values[b] = statistic(idx);
        }
        var finite = values.Where(double.IsFinite).Order().ToArray();
        if (finite.Length == 0) return new Interval(value, double.NaN, double.NaN);
        return new Interval(value, Quantile(finite, (1 - level) / 2), Quantile(finite, (1 + level) / 2));
    }

    /// <summary>Mean of <paramref name="values"/> with its percentile bootstrap interval.</summary>
    public static Interval BootstrapMean(IReadOnlyList<double> values, ulong seed, int resamples = DefaultResamples) =>
        Bootstrap(values.Count, idx => Mean(values, idx), seed, resamples);

    public static double Mean(IReadOnlyList<double> values, IReadOnlyList<int> idx)
    {
        double s = 0;
        foreach (int i in idx) s += values[i];
        return s / idx.Count;
    }

    /// <summary>Linear interpolation between order statistics (type 7, as R's default and numpy's).</summary>
    public static double Quantile(double[] sorted, double p)
    {
        double h = (sorted.Length - 1) * p;
        int lo = (int)Math.Floor(h);
        int hi = Math.Min(lo + 1, sorted.Length - 1);
        return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
    }

    /// <summary>
    /// McNemar's test on paired binary outcomes. b = A right and B wrong, c = A wrong and B right. With fewer
    /// than 25 discordant pairs the exact two-sided binomial test (p = min(1, 2·P(X ≤ min(b,c))), X ~ Bin(b+c, ½));
    /// otherwise the chi-square statistic with continuity correction (|b−c|−1)²/(b+c) on one degree of freedom.
    /// </summary>
    public static PairedTest McNemar(IReadOnlyList<bool> a, IReadOnlyList<bool> b)
    {
        if (a.Count != b.Count) throw new ArgumentException("the two runners answered different numbers of examples");
        int aOnly = 0, bOnly = 0;
        for (int i = 0; i < a.Count; i++)
        {
            if (a[i] && !b[i]) aOnly++;
            else if (!a[i] && b[i]) bOnly++;
        }
        double diff = a.Count == 0 ? 0 : (double)(aOnly - bOnly) / a.Count;
        var (test, p) = McNemar(aOnly, bOnly);
        return new PairedTest(test, diff, p, aOnly + bOnly, aOnly, bOnly);
    }

    public static (string Test, double P) McNemar(int b, int c)
    {
        int n = b + c;
        if (n == 0) return ("mcnemar-exact", 1.0);
        if (n < 25)
        {
            int k = Math.Min(b, c);
            double tail = 0;
            for (int i = 0; i <= k; i++) tail += Math.Exp(LogChoose(n, i) - n * Math.Log(2));
            return ("mcnemar-exact", Math.Min(1, 2 * tail));
        }
        double chi = Math.Pow(Math.Max(0, Math.Abs(b - c) - 1), 2) / n;
        return ("mcnemar-chi2-cc", ChiSquare1Upper(chi));
    }

    /// <summary>
    /// Paired bootstrap test of a difference in a statistic (A − B) on the same examples: resample example indices,
    /// recompute both statistics on the same indices; the two-sided p-value is twice the smaller share of resampled
    /// differences on either side of zero, with the +1 correction ((k+1)/(B+1)) so it is never exactly 0.
    /// </summary>
    public static PairedTest PairedBootstrap(int n, Func<IReadOnlyList<int>, double> a, Func<IReadOnlyList<int>, double> b, ulong seed, int resamples = DefaultResamples)
    {
        if (n == 0) return new PairedTest("paired-bootstrap", 0, 1);
        var all = Enumerable.Range(0, n).ToArray();
        double observed = a(all) - b(all);
        var rng = new SeededRandom(seed);
        var idx = new int[n];
        int atOrBelow = 0, atOrAbove = 0;
        for (int r = 0; r < resamples; r++)
        {
            for (int i = 0; i < n; i++) idx[i] = rng.Next(n);
            double d = a(idx) - b(idx);
            if (d <= 0) atOrBelow++;
            if (d >= 0) atOrAbove++;
        }
        double p = Math.Min(1, 2.0 * (Math.Min(atOrBelow, atOrAbove) + 1) / (resamples + 1));
        return new PairedTest("paired-bootstrap", observed, p);
    }

    /// <summary>Wilson score interval of a proportion k/n.</summary>
    public static Interval Wilson(int k, int n, double z = 1.959963984540054)
    {
        if (n == 0) return new Interval(double.NaN, double.NaN, double.NaN);
        double p = (double)k / n, z2 = z * z;
        double centre = (p + z2 / (2 * n)) / (1 + z2 / n);
        double half = z / (1 + z2 / n) * Math.Sqrt(p * (1 - p) / n + z2 / (4.0 * n * n));
        return new Interval(p, Math.Max(0, centre - half), Math.Min(1, centre + half));
    }

    /// <summary>
    /// Sample size for estimating a proportion within ±<paramref name="margin"/>: n₀ = z²·p(1−p)/e², with the finite
    /// population correction n = n₀ / (1 + (n₀ − 1)/N), rounded up and capped at N.
    /// </summary>
    public static int SampleSize(double margin, int population, double p = 0.5, double z = 1.959963984540054)
    {
        if (!(margin > 0 && margin < 1)) throw new ArgumentOutOfRangeException(nameof(margin), "the margin of error is in (0, 1)");
        double n0 = z * z * p * (1 - p) / (margin * margin);
        double n = population > 0 ? n0 / (1 + (n0 - 1) / population) : n0;
        return (int)Math.Min(population, Math.Ceiling(n - 1e-9));
    }

    /// <summary>Cohen's kappa of two raters over the same items (categories are any strings).</summary>
    public static double CohenKappa(IReadOnlyList<string> r1, IReadOnlyList<string> r2)
    {
        if (r1.Count != r2.Count || r1.Count == 0) throw new ArgumentException("the raters must rate the same, non-empty set of items");
        int n = r1.Count;
        double po = Enumerable.Range(0, n).Count(i => r1[i] == r2[i]) / (double)n;
        var cats = r1.Concat(r2).Distinct().ToList();
        double pe = cats.Sum(c => r1.Count(x => x == c) / (double)n * (r2.Count(x => x == c) / (double)n));
        return pe >= 1 ? 1 : (po - pe) / (1 - pe);
    }

    /// <summary>
    /// Fleiss' kappa: <paramref name="counts"/>[item][category] is how many raters put the item in the category;
    /// every item has the same number of raters (at least two).
    /// </summary>
    public static double FleissKappa(int[][] counts)
    {
        int items = counts.Length;
        if (items == 0) throw new ArgumentException("no items");
        int raters = counts[0].Sum();
        if (raters < 2 || counts.Any(r => r.Sum() != raters)) throw new ArgumentException("every item needs the same number (≥ 2) of ratings");
        int k = counts[0].Length;
        double pBar = counts.Average(row => (row.Sum(x => (double)x * x) - raters) / (raters * (raters - 1.0)));
        double pe = Enumerable.Range(0, k).Sum(j => Math.Pow(counts.Sum(row => row[j]) / (double)(items * raters), 2));
        return pe >= 1 ? 1 : (pBar - pe) / (1 - pe);
    }

    /// <summary>P(X &gt; x) for X ~ χ²(1): erfc(√(x/2)).</summary>
    public static double ChiSquare1Upper(double x) => x <= 0 ? 1 : Erfc(Math.Sqrt(x / 2));

    /// <summary>Complementary error function (Numerical Recipes' Chebyshev fit erfcc, fractional error below 1.2e-7 everywhere).</summary>
    public static double Erfc(double x)
    {
        double z = Math.Abs(x);
        double t = 1 / (1 + 0.5 * z);
        double r = t * Math.Exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
                   t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
        return x >= 0 ? r : 2 - r;
    }

    public static double LogChoose(int n, int k) => LogFactorial(n) - LogFactorial(k) - LogFactorial(n - k);

    private static double LogFactorial(int n)
    {
        double s = 0;
        for (int i = 2; i <= n; i++) s += Math.Log(i);
        return s;
    }
}
