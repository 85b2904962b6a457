using EdgeTune.Core.Drift;

namespace EdgeTune.Core.Tests;

public class DriftMathTests
{
    [Fact]
    public void Psi_and_jensen_shannon_match_hand_computed_values()
    {
        // (0.25 − 0.5)·ln(0.5) + (0.75 − 0.5)·ln(1.5)
        Assert.Equal(0.25 * Math.Log(2) + 0.25 * Math.Log(1.5), Divergence.Psi([0.5, 0.5], [0.25, 0.75]), 12);
        Assert.Equal(0, Divergence.Psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]), 12);
        Assert.Equal(0, Divergence.JensenShannon([0.2, 0.8], [0.2, 0.8]), 12);
        Assert.Equal(1, Divergence.JensenShannon([1, 0], [0, 1]), 12);
        // p = (½, ½), q = (1, 0), m = (¾, ¼): ½[½·log2(⅔) + ½·log2(2)] + ½[log2(4/3)] = 0.311278...
        Assert.Equal(0.5 * (0.5 * Math.Log2(2.0 / 3) + 0.5) + 0.5 * Math.Log2(4.0 / 3), Divergence.JensenShannon([0.5, 0.5], [1, 0]), 12);
    }

    [Fact]
    public void The_window_forgets_old_traffic_and_counts_format_and_feedback()
    {
        var rng = new Random(3);
        IReadOnlyList<int> Prompt(int from) => Enumerable.Range(0, 10 + rng.Next(5)).Select(_ => from + rng.Next(50)).ToArray();
        var fp = DriftFingerprint.Compute(Enumerable.Range(0, 500).Select(_ => (Prompt(0), "{\"a\": 1, \"b\": 2}")), "train", tokenBuckets: 256);
        Assert.Equal(["a", "b"], fp.AnswerKeys);
        var monitor = new DriftMonitor(fp, new DriftThresholds { Window = 50, MinSamples = 20, MinRatings = 5 });
        Assert.Equal(0, monitor.Snapshot().Samples);

        for (int i = 0; i < 50; i++) monitor.Observe($"in{i}", Prompt(0), i % 10 == 0 ? "not json" : "{\"b\": 0, \"a\": 0, \"c\": 1}");
        var calm = monitor.Snapshot();
        Assert.Equal(50, calm.Samples);
        Assert.Equal(0.9, calm.FormatValidity!.Value, 12);
        Assert.True(calm.TokenJs < 0.1, $"JS {calm.TokenJs}");
        Assert.False(calm.Warning);

        for (int i = 0; i < 6; i++) monitor.Feedback($"in{40 + i}", -1);
        monitor.Feedback("gone", 1); // not in the window: ignored
        var rated = monitor.Snapshot();
        Assert.Equal(6.0 / 50, rated.FeedbackRate!.Value, 12);
        Assert.Equal(-1, rated.MeanRating!.Value, 12);
        Assert.True(rated.Warning);
        Assert.Contains("mean rating -1 < 0", rated.Reasons);

        for (int i = 0; i < 50; i++) monitor.Observe($"out{i}", Prompt(128), "{\"a\": 1}");
        var shifted = monitor.Snapshot();
        Assert.Equal(50, shifted.Samples);
        Assert.Null(shifted.MeanRating); // the rated completions left the window
        Assert.Equal(0, shifted.FormatValidity!.Value, 12);
        Assert.True(shifted.TokenJs > 0.9, $"JS {shifted.TokenJs}");
        Assert.True(shifted.Warning);
        Assert.Equal(2, shifted.Reasons.Count);
    }

    [Fact]
    public void A_fingerprint_round_trips_and_a_bad_one_names_the_key()
    {
        var fp = DriftFingerprint.Compute([([1, 2, 3], "free text"), ([4, 5], "more")], "train.jsonl", tokenBuckets: 8);
        Assert.Null(fp.AnswerKeys);
        string path = Path.Combine(Path.GetTempPath(), $"fp-{Guid.NewGuid():N}.json");
        try
        {
            fp.Write(path);
            var back = DriftFingerprint.Read(path);
            Assert.Equal(fp.TokenDistribution, back.TokenDistribution);
            Assert.Equal(fp.PromptLengths, back.PromptLengths);
            File.WriteAllText(path, File.ReadAllText(path).Replace("\"version\": 1", "\"version\": 7", StringComparison.Ordinal));
            var e = Assert.Throws<EdgeTuneException>(() => DriftFingerprint.Read(path));
            Assert.Equal($"{path}: version: 7 is not 1", e.Message);
            File.WriteAllText(path, "{\"version\": 1,");
            Assert.Contains("not a drift fingerprint (invalid JSON", Assert.Throws<EdgeTuneException>(() => DriftFingerprint.Read(path)).Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
