namespace EdgeTune.Core.Drift;

/// <summary>When the monitor raises its warning state ([drift] in agent.toml).</summary>
public sealed record DriftThresholds
{
    /// <summary>Completions in the sliding window.</summary>
    public int Window { get; init; } = 200;
    /// <summary>No warning before this many completions are in the window (small samples are noisy).</summary>
    public int MinSamples { get; init; } = 50;
    /// <summary>Prompt-length PSI above this warns (0.25: the usual "significant shift").</summary>
    public double PromptLengthPsi { get; init; } = 0.25;
    /// <summary>Token-distribution Jensen–Shannon divergence (bits) above this warns.</summary>
    public double TokenJs { get; init; } = 0.15;
    /// <summary>Share of answers with the training answers' keys below this warns (structured tasks).</summary>
    public double FormatValidity { get; init; } = 0.9;
    /// <summary>Mean feedback rating below this warns, once <see cref="MinRatings"/> ratings are in the window.</summary>
    public double MeanRating { get; init; } = 0;
    public int MinRatings { get; init; } = 10;
}

/// <summary>The monitor's figures at one moment; null where there is nothing to measure yet.</summary>
public sealed record DriftSnapshot(
    int Samples, double? PromptLengthPsi, double? TokenJs, double? FormatValidity, double? FeedbackRate, double? MeanRating,
    bool Warning, IReadOnlyList<string> Reasons);

/// <summary>
/// Live traffic against the training set's fingerprint over a sliding window of completions: prompt-length PSI,
/// token-distribution Jensen–Shannon divergence, the share of answers in the training answers' format, and the
/// feedback rate and mean rating. Thread-safe; each observation costs O(prompt tokens).
/// </summary>
public sealed class DriftMonitor(DriftFingerprint fingerprint, DriftThresholds thresholds)
{
    private sealed record Observation(string Id, int LengthBin, int[] Buckets, bool? Valid);

    private static readonly System.Globalization.CultureInfo C = System.Globalization.CultureInfo.InvariantCulture;
    private readonly Lock _lock = new();
    private readonly Queue<Observation> _window = new();
    private readonly Dictionary<string, int> _ratings = new(StringComparer.Ordinal);
    private readonly long[] _lengths = new long[fingerprint.PromptLengths.Count];
    private readonly long[] _tokens = new long[fingerprint.TokenBuckets];
    private long _tokenTotal;
    private int _valid, _validTotal;

    public DriftFingerprint Fingerprint => fingerprint;
    public DriftThresholds Thresholds => thresholds;

    /// <summary>One completion: its prompt (non-assistant messages, in the model's tokens) and its answer.</summary>
    public void Observe(string completionId, IReadOnlyList<int> promptTokens, string answer)
    {
        var buckets = new int[promptTokens.Count];
        for (int i = 0; i < buckets.Length; i++) buckets[i] = DriftFingerprint.Bucket(promptTokens[i], fingerprint.TokenBuckets);
        bool? valid = fingerprint.AnswerKeys is { } keys ? DriftFingerprint.ObjectKeys(answer) is { } got && keys.All(got.Contains) : null;
        var o = new Observation(completionId, DriftFingerprint.Bin(fingerprint.LengthBounds, promptTokens.Count), buckets, valid);
        lock (_lock)
        {
            _window.Enqueue(o);
            Apply(o, +1);
            while (_window.Count > thresholds.Window)
            {
                var old = _window.Dequeue();
                Apply(old, -1);
                _ratings.Remove(old.Id);
            }
        }
    }

    /// <summary>A rating of a completion still in the window (later ratings of the same one replace earlier).</summary>
    public void Feedback(string completionId, int rating)
    {
        lock (_lock)
        {
            if (_window.Any(o => o.Id == completionId)) _ratings[completionId] = rating;
        }
    }

    private void Apply(Observation o, int sign)
    {
        _lengths[o.LengthBin] += sign;
        foreach (int b in o.Buckets) _tokens[b] += sign;
        _tokenTotal += sign * o.Buckets.Length;
        if (o.Valid is { } v)
        {
            _validTotal += sign;
            if (v) _valid += sign;
        }
    }

    public DriftSnapshot Snapshot()
    {
        lock (_lock)
        {
            int n = _window.Count;
            if (n == 0) return new DriftSnapshot(0, null, null, null, null, null, false, []);
            double psi = Divergence.Psi(fingerprint.PromptLengths, _lengths.Select(c => (double)c / n).ToArray());
            double? js = _tokenTotal == 0 ? null : Divergence.JensenShannon(fingerprint.TokenDistribution, _tokens.Select(c => (double)c / _tokenTotal).ToArray());
            double? validity = _validTotal == 0 ? null : (double)_valid / _validTotal;
            double rate = (double)_ratings.Count / n;
            double? mean = _ratings.Count == 0 ? null : _ratings.Values.Average();
            var reasons = new List<string>();
            if (n >= thresholds.MinSamples)
            {
                if (psi > thresholds.PromptLengthPsi) reasons.Add(string.Create(C, $"prompt-length PSI {psi:0.###} > {thresholds.PromptLengthPsi}"));
                if (js > thresholds.TokenJs) reasons.Add(string.Create(C, $"token JS divergence {js:0.###} > {thresholds.TokenJs}"));
                if (validity < thresholds.FormatValidity) reasons.Add(string.Create(C, $"format validity {validity:0.###} < {thresholds.FormatValidity}"));
            }
            if (_ratings.Count >= thresholds.MinRatings && mean < thresholds.MeanRating) reasons.Add(string.Create(C, $"mean rating {mean:0.###} < {thresholds.MeanRating}"));
            return new DriftSnapshot(n, psi, js, validity, rate, mean, reasons.Count > 0, reasons);
        }
    }
}
