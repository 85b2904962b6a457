using System.Text.Json;
using System.Text.Json.Serialization;

namespace EdgeTune.Core.Drift;

/// <summary>
/// What the training set looked like, in the shape the device can compare live traffic against: the prompt-length
/// histogram (prompt = the non-assistant messages, in the model's tokens), the token distribution hashed into a fixed
/// number of buckets, and — when every answer is a JSON object — the keys every answer has. Written by
/// `edgetune data fingerprint`, shipped in a bundle (drift/fingerprint.json), read by the agent's [drift] monitor.
/// </summary>
public sealed record DriftFingerprint
{
    public const int CurrentVersion = 1;
    /// <summary>Upper bounds (exclusive) of the prompt-length bins in tokens; a last, open bin follows.</summary>
    public static readonly int[] DefaultLengthBounds = [8, 16, 32, 64, 128, 256, 512, 1024, 2048];
    public const int DefaultTokenBuckets = 1024;

    public int Version { get; init; } = CurrentVersion;
    /// <summary>Where it came from (file name and SHA-256 of the training split, the model), for people.</summary>
    public string Source { get; init; } = "";
    public int Examples { get; init; }
    public IReadOnlyList<int> LengthBounds { get; init; } = DefaultLengthBounds;
    /// <summary>Share of prompts per length bin (LengthBounds.Count + 1 values).</summary>
    public IReadOnlyList<double> PromptLengths { get; init; } = [];
    /// <summary>Share of prompt tokens per bucket (token id mod TokenBuckets).</summary>
    public int TokenBuckets { get; init; } = DefaultTokenBuckets;
    public IReadOnlyList<double> TokenDistribution { get; init; } = [];
    /// <summary>Keys every training answer has, when all answers are JSON objects; null for free-text tasks.</summary>
    public IReadOnlyList<string>? AnswerKeys { get; init; }

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>The fingerprint of prompts (token ids) and answers (text).</summary>
    public static DriftFingerprint Compute(IEnumerable<(IReadOnlyList<int> PromptTokens, string Answer)> examples, string source,
        int tokenBuckets = DefaultTokenBuckets, IReadOnlyList<int>? lengthBounds = null)
    {
        var bounds = lengthBounds ?? DefaultLengthBounds;
        var lengths = new double[bounds.Count + 1];
        var tokens = new double[tokenBuckets];
        HashSet<string>? keys = null;
        bool allObjects = true;
        int n = 0;
        foreach (var (prompt, answer) in examples)
        {
            n++;
            lengths[Bin(bounds, prompt.Count)]++;
            foreach (int t in prompt) tokens[Bucket(t, tokenBuckets)]++;
            if (!allObjects) continue;
            var answerKeys = ObjectKeys(answer);
            if (answerKeys is null) { allObjects = false; keys = null; continue; }
            if (keys is null) keys = [.. answerKeys];
            else keys.IntersectWith(answerKeys);
        }
        if (n == 0) throw new EdgeTuneException($"{source}: no examples to fingerprint");
        return new DriftFingerprint
        {
            Source = source,
            Examples = n,
            LengthBounds = bounds,
            PromptLengths = Normalise(lengths),
            TokenBuckets = tokenBuckets,
            TokenDistribution = Normalise(tokens),
            AnswerKeys = allObjects && keys is { Count: > 0 } ? keys.Order(StringComparer.Ordinal).ToList() : null,
        };
    }

    public static int Bin(IReadOnlyList<int> bounds, int length)
    {
        for (int i = 0; i < bounds.Count; i++) if (length < bounds[i]) return i;
        return bounds.Count;
    }

    public static int Bucket(int token, int buckets) => (int)((uint)token % (uint)buckets);

    /// <summary>The top-level keys of a JSON object answer, or null when the answer is not one.</summary>
    public static IReadOnlyList<string>? ObjectKeys(string answer)
    {
        string text = answer.Trim();
        if (text.Length < 2 || text[0] != '{') return null;
        try
        {
            using var doc = JsonDocument.Parse(text);
            return doc.RootElement.ValueKind == JsonValueKind.Object ? doc.RootElement.EnumerateObject().Select(p => p.Name).ToList() : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static double[] Normalise(double[] counts)
    {
        double sum = counts.Sum();
        return sum == 0 ? counts : Array.ConvertAll(counts, c => c / sum);
    }

    public void Write(string path) => IO.DurableFiles.WriteAllText(path, JsonSerializer.Serialize(this, Json));

    /// <summary>Reads and checks a fingerprint; a bad one is one line naming the file and the key.</summary>
    public static DriftFingerprint Read(string path)
    {
        if (!File.Exists(path)) throw new EdgeTuneException($"{path}: no such drift fingerprint (write one with `edgetune data fingerprint`)");
        DriftFingerprint? f;
        try
        {
            f = JsonSerializer.Deserialize<DriftFingerprint>(File.ReadAllBytes(path), Json);
        }
        catch (JsonException e)
        {
            throw new EdgeTuneException($"{path}: not a drift fingerprint (invalid JSON at line {e.LineNumber + 1})");
        }
        if (f is null) throw new EdgeTuneException($"{path}: not a drift fingerprint (null)");
        if (f.Version != CurrentVersion) throw new EdgeTuneException($"{path}: version: {f.Version} is not {CurrentVersion}");
        if (f.TokenBuckets is < 1 or > 1 << 20) throw new EdgeTuneException($"{path}: token_buckets: {f.TokenBuckets} is out of range 1..{1 << 20}");
        if (f.TokenDistribution.Count != f.TokenBuckets) throw new EdgeTuneException($"{path}: token_distribution: {f.TokenDistribution.Count} values for {f.TokenBuckets} buckets");
        if (f.PromptLengths.Count != f.LengthBounds.Count + 1) throw new EdgeTuneException($"{path}: prompt_lengths: {f.PromptLengths.Count} values for {f.LengthBounds.Count + 1} bins");
        if (f.PromptLengths.Concat(f.TokenDistribution).Any(v => !double.IsFinite(v) || v < 0)) throw new EdgeTuneException($"{path}: a share is negative or not a number");
        return f;
    }
}

/// <summary>Divergences between a reference distribution and an observed one.</summary>
public static class Divergence
{
    /// <summary>
    /// Population stability index Σ (a − e)·ln(a/e), each share floored at <paramref name="floor"/> so an empty bin
    /// counts as rare, not infinite. Rule of thumb: below 0.1 stable, 0.1–0.25 moderate shift, above 0.25 a shift.
    /// </summary>
    public static double Psi(IReadOnlyList<double> expected, IReadOnlyList<double> actual, double floor = 1e-4)
    {
        if (expected.Count != actual.Count) throw new ArgumentException("the distributions have different lengths");
        double sum = 0;
        for (int i = 0; i < expected.Count; i++)
        {
            double e = Math.Max(expected[i], floor), a = Math.Max(actual[i], floor);
            sum += (a - e) * Math.Log(a / e);
        }
        return sum;
    }

    /// <summary>Jensen–Shannon divergence in bits (0 for equal distributions, 1 for disjoint ones).</summary>
    public static double JensenShannon(IReadOnlyList<double> p, IReadOnlyList<double> q)
    {
        if (p.Count != q.Count) throw new ArgumentException("the distributions have different lengths");
        double sum = 0;
        for (int i = 0; i < p.Count; i++)
        {
            double m = (p[i] + q[i]) / 2;
            if (p[i] > 0) sum += p[i] * Math.Log2(p[i] / m);
            if (q[i] > 0) sum += q[i] * Math.Log2(q[i] / m);
        }
        return Math.Clamp(sum / 2, 0, 1);
    }
}
