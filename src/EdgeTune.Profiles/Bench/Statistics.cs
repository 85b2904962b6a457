namespace EdgeTune.Profiles.Bench;

/// <summary>
/// Count, mean, sample standard deviation, range and percentiles of a set of measurements. Percentiles
/// interpolate linearly between order statistics (numpy's default, Hyndman and Fan type 7); the 95%
/// confidence half-width of the mean uses Student's t.
/// </summary>
public sealed record Summary
{
    public required int Count { get; init; }
    public required double Mean { get; init; }
    public required double StandardDeviation { get; init; }
    public required double Min { get; init; }
    public required double Max { get; init; }
    public required double P50 { get; init; }
    public required double P95 { get; init; }
    public required double P99 { get; init; }

    /// <summary>Half-width of the 95% confidence interval of the mean (0 for fewer than two values).</summary>
    public required double Ci95 { get; init; }

    /// <summary>Coefficient of variation: the run-to-run spread as a percentage of the mean.</summary>
    public double CvPercent => Mean == 0 ? 0 : 100 * StandardDeviation / Mean;

    public static Summary Of(IEnumerable<double> values)
    {
        var sorted = values.Where(double.IsFinite).Order().ToArray();
        if (sorted.Length == 0) throw new ArgumentException("no finite values to summarise", nameof(values));
        int n = sorted.Length;
        double mean = sorted.Average();
        double sd = n < 2 ? 0 : Math.Sqrt(sorted.Sum(v => (v - mean) * (v - mean)) / (n - 1));
        return new Summary
        {
            Count = n,
            Mean = mean,
            StandardDeviation = sd,
            Min = sorted[0],
            Max = sorted[^1],
            P50 = Percentile(sorted, 50),
            P95 = Percentile(sorted, 95),
            P99 = Percentile(sorted, 99),
            Ci95 = n < 2 ? 0 : StudentT975(n - 1) * sd / Math.Sqrt(n),
        };
    }

    /// <summary>The <paramref name="p"/>-th percentile of ascending <paramref name="sorted"/> values (type 7).</summary>
    public static double Percentile(IReadOnlyList<double> sorted, double p)
    {
        if (sorted.Count == 0) throw new ArgumentException("no values", nameof(sorted));
        double h = (sorted.Count - 1) * p / 100.0;
        int lo = (int)Math.Floor(h);
        int hi = Math.Min(lo + 1, sorted.Count - 1);
        return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
    }

    // Two-sided 95% quantiles of Student's t by degrees of freedom (1..30), then the normal 1.96.
    private static readonly double[] T975 =
    [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];

    internal static double StudentT975(int degreesOfFreedom) =>
        degreesOfFreedom < 1 ? double.NaN : degreesOfFreedom <= T975.Length ? T975[degreesOfFreedom - 1] : 1.96;
}
