using EdgeTune.Evaluation.Statistics;

namespace EdgeTune.Evaluation.Tests;

public class StatsTests
{
    [Fact]
    public void McNemarExactMatchesTheBinomial()
    {
        // Wikipedia's McNemar example: b = 6, c = 16; exact two-sided p = 2·Σ_{i≤6} C(22,i)/2²² = 0.0524788 (n < 25: exact).
        var (test, p) = Stats.McNemar(6, 16);
        Assert.Equal("mcnemar-exact", test);
        Assert.Equal(0.052478790283203125, p, 9);
        Assert.Equal(1.0, Stats.McNemar(0, 0).P);
        Assert.Equal(1.0, Stats.McNemar(5, 5).P, 12);
        Assert.Equal(2.0 / 1024, Stats.McNemar(0, 10).P, 12);
    }

    [Fact]
    public void McNemarChiSquareWithContinuityCorrection()
    {
        // Agresti's presidential approval table: b = 150, c = 86; χ² = (|150−86|−1)²/236 = 16.818, p = 4.11e-5
        // (math.erfc(sqrt(16.818/2)) in Python gives 4.1145622813e-05).
        var (test, p) = Stats.McNemar(150, 86);
        Assert.Equal("mcnemar-chi2-cc", test);
        Assert.Equal(4.1145622813459415e-05, p, 1e-8);
        Assert.Equal(0.05500883362926577, Stats.ChiSquare1Upper(81.0 / 22), 6);
    }

    [Fact]
    public void McNemarOnOutcomes()
    {
        bool[] a = [true, true, true, false, true, false];
        bool[] b = [true, false, false, false, true, true];
        var t = Stats.McNemar(a, b);
        Assert.Equal(2, t.AWins);
        Assert.Equal(1, t.BWins);
        Assert.Equal(1.0 / 6, t.Difference, 12);
        Assert.Equal(1.0, t.PValue, 12); // 2·P(X ≤ 1 | n=3) = 2·4/8
    }

    [Fact]
    public void ErfcAgreesWithKnownValues()
    {
        Assert.Equal(0.15729920705028513, Stats.Erfc(1), 6);
        Assert.Equal(0.6713732405408726, Stats.Erfc(0.3), 6);
        Assert.Equal(1.5204998778130465, Stats.Erfc(-0.5), 6);
    }

    [Fact]
    public void WilsonInterval()
    {
        var w = Stats.Wilson(8, 10);
        Assert.Equal(0.8, w.Value);
        Assert.Equal(0.4901624715366418, w.Low, 9);
        Assert.Equal(0.9433178485456248, w.High, 9);
        Assert.Equal(0, Stats.Wilson(0, 5).Low);
        Assert.True(double.IsNaN(Stats.Wilson(0, 0).Value));
    }

    [Fact]
    public void SampleSizeFromTheMarginOfError()
    {
        Assert.Equal(385, Stats.SampleSize(0.05, int.MaxValue)); // 1.96²·0.25/0.05² = 384.15
        Assert.Equal(278, Stats.SampleSize(0.05, 1000));         // 384.15/(1 + 383.15/1000) = 277.7
        Assert.Equal(20, Stats.SampleSize(0.05, 20));
        Assert.Equal(97, Stats.SampleSize(0.1, int.MaxValue));
    }

    [Fact]
    public void CohenKappaOfTheWikipediaExample()
    {
        // 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15: p_o = 0.7, p_e = 0.5, κ = 0.4.
        var r1 = new List<string>();
        var r2 = new List<string>();
        void Add(int n, string a, string b) { for (int i = 0; i < n; i++) { r1.Add(a); r2.Add(b); } }
        Add(20, "yes", "yes"); Add(5, "yes", "no"); Add(10, "no", "yes"); Add(15, "no", "no");
        Assert.Equal(0.4, Stats.CohenKappa(r1, r2), 12);
    }

    [Fact]
    public void FleissKappaOfTheWikipediaExample()
    {
        int[][] counts =
        [
            [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
        ];
        Assert.Equal(0.210, Stats.FleissKappa(counts), 3);
    }

    [Fact]
    public void BootstrapIsSeededAndBracketsTheEstimate()
    {
        double[] values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        var a = Stats.BootstrapMean(values, 7);
        var b = Stats.BootstrapMean(values, 7);
        Assert.Equal(a, b);
        Assert.Equal(5.5, a.Value);
        Assert.True(a.Low < 5.5 && a.High > 5.5);
        Assert.True(a.Low > 3 && a.High < 8);
        Assert.NotEqual(a, Stats.BootstrapMean(values, 8));
    }

    [Theory]
    [InlineData(0.3, 100)]
    [InlineData(0.8, 60)]
    public void BootstrapIntervalsCoverTheTruthAtAboutTheNominalRate(double p, int n)
    {
        // 300 simulated test sets of n Bernoulli(p) outcomes; the 95% percentile interval should hold p about 95% of
        // the time (percentile intervals run a little under nominal for small n; SE of the rate here is ~1.3%).
        var rng = new SeededRandom(2026);
        int covered = 0;
        const int trials = 300;
        for (int t = 0; t < trials; t++)
        {
            var sample = Enumerable.Range(0, n).Select(_ => rng.NextDouble() < p ? 1.0 : 0.0).ToArray();
            var ci = Stats.BootstrapMean(sample, (ulong)t, resamples: 400);
            if (ci.Low <= p && p <= ci.High) covered++;
        }
        double rate = covered / (double)trials;
        Assert.InRange(rate, 0.89, 0.99);
    }

    [Fact]
    public void BootstrapOfANormalMeanCoversAtAboutTheNominalRate()
    {
        var rng = new SeededRandom(11);
        double Normal() => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
        int covered = 0;
        for (int t = 0; t < 300; t++)
        {
            var sample = Enumerable.Range(0, 50).Select(_ => 3 + 2 * Normal()).ToArray();
            var ci = Stats.BootstrapMean(sample, (ulong)t, resamples: 400);
            if (ci.Low <= 3 && 3 <= ci.High) covered++;
        }
        Assert.InRange(covered / 300.0, 0.89, 0.99);
    }

    [Fact]
    public void PairedBootstrapTellsARealDifferenceFromNoise()
    {
        var rng = new SeededRandom(3);
        var b = Enumerable.Range(0, 80).Select(_ => rng.NextDouble()).ToArray();
        var better = b.Select(x => x + 0.2 + 0.05 * rng.NextDouble()).ToArray();
        var same = b.ToArray();
        var real = Stats.PairedBootstrap(80, idx => Stats.Mean(better, idx), idx => Stats.Mean(b, idx), 5);
        Assert.True(real.PValue < 0.01);
        Assert.True(real.Difference > 0.2);
        var none = Stats.PairedBootstrap(80, idx => Stats.Mean(same, idx), idx => Stats.Mean(b, idx), 5);
        Assert.Equal(1.0, none.PValue);
        Assert.Equal(0, none.Difference);
    }
}
