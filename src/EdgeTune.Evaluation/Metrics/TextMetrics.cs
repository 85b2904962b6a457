using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace EdgeTune.Evaluation.Metrics;

/// <summary>How answers are normalised before exact match (and label comparison).</summary>
public sealed record NormaliseOptions
{
    /// <summary>Remove leading and trailing white space.</summary>
    public bool Trim { get; init; } = true;
    /// <summary>Compare case-insensitively (invariant lower case).</summary>
    public bool IgnoreCase { get; init; }
    /// <summary>Runs of white space count as one space.</summary>
    public bool CollapseWhitespace { get; init; } = true;
    /// <summary>An answer that parses as JSON is compared in canonical form (object keys sorted, no insignificant space, numbers as parsed).</summary>
    public bool JsonCanonical { get; init; }

    public static readonly NormaliseOptions Default = new();
    public static readonly NormaliseOptions None = new() { Trim = false, CollapseWhitespace = false };
}

/// <summary>Per-example text metrics. Every function is pure; corpus figures are means over examples unless stated.</summary>
public static class TextMetrics
{
    public static string Normalise(string text, NormaliseOptions options)
    {
        if (options.JsonCanonical && Json.Canonical(text) is { } canonical) return canonical;
        string s = text;
        if (options.CollapseWhitespace)
        {
            var sb = new StringBuilder(s.Length);
            bool space = false;
            foreach (char c in s)
            {
                if (char.IsWhiteSpace(c)) { space = true; continue; }
                if (space) sb.Append(' ');
                space = false;
                sb.Append(c);
            }
            if (space) sb.Append(' ');
            s = sb.ToString();
        }
        if (options.Trim) s = s.Trim();
        if (options.IgnoreCase) s = s.ToLowerInvariant();
        // No Unicode normalisation (NFC): the project runs with invariant globalization, where string.Normalize does
        // nothing, so a composed and a decomposed é are different answers (code points are compared).
        return s;
    }

    public static bool ExactMatch(string prediction, string reference, NormaliseOptions options) =>
        string.Equals(Normalise(prediction, options), Normalise(reference, options), StringComparison.Ordinal);

    /// <summary>
    /// SQuAD's answer normalisation: lower case, punctuation removed (Unicode punctuation and symbols), the
    /// English articles a/an/the removed, white space collapsed; the result split on white space.
    /// </summary>
    public static List<string> SquadTokens(string text)
    {
        var sb = new StringBuilder(text.Length);
        foreach (char c in text.ToLowerInvariant())
        {
            var cat = char.GetUnicodeCategory(c);
            bool punct = cat is UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation or UnicodeCategory.OpenPunctuation
                or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation or UnicodeCategory.FinalQuotePunctuation
                or UnicodeCategory.OtherPunctuation or UnicodeCategory.MathSymbol or UnicodeCategory.CurrencySymbol
                or UnicodeCategory.ModifierSymbol;
            if (!punct) sb.Append(c);
        }
        return sb.ToString().Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)
            .Where(w => w is not ("a" or "an" or "the")).ToList();
    }

    /// <summary>SQuAD token F1: overlap counted as a multiset; both empty is 1, one empty is 0.</summary>
    public static double TokenF1(string prediction, string reference)
    {
        var p = SquadTokens(prediction);
        var r = SquadTokens(reference);
        if (p.Count == 0 || r.Count == 0) return p.Count == r.Count ? 1 : 0;
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var t in r) counts[t] = counts.GetValueOrDefault(t) + 1;
        int common = 0;
        foreach (var t in p)
            if (counts.TryGetValue(t, out int n) && n > 0) { common++; counts[t] = n - 1; }
        if (common == 0) return 0;
        double precision = (double)common / p.Count, recall = (double)common / r.Count;
        return 2 * precision * recall / (precision + recall);
    }

    /// <summary>
    /// ROUGE-L F1: longest common subsequence of the tokens (lower case, split on anything that is not a letter or
    /// digit), P = LCS/|prediction|, R = LCS/|reference|, F = 2PR/(P+R). Both empty is 1, one empty is 0.
    /// </summary>
    public static double RougeL(string prediction, string reference)
    {
        var p = Words(prediction);
        var r = Words(reference);
        if (p.Count == 0 || r.Count == 0) return p.Count == r.Count ? 1 : 0;
        int lcs = Lcs(p, r);
        if (lcs == 0) return 0;
        double precision = (double)lcs / p.Count, recall = (double)lcs / r.Count;
        return 2 * precision * recall / (precision + recall);
    }

    public static List<string> Words(string text)
    {
        var words = new List<string>();
        var sb = new StringBuilder();
        foreach (char c in text)
        {
            if (char.IsLetterOrDigit(c) || char.IsSurrogate(c) || char.GetUnicodeCategory(c) is UnicodeCategory.NonSpacingMark) sb.Append(char.ToLowerInvariant(c));
            else if (sb.Length > 0) { words.Add(sb.ToString()); sb.Clear(); }
        }
        if (sb.Length > 0) words.Add(sb.ToString());
        return words;
    }

    /// <summary>Length of the longest common subsequence (two-row dynamic programme).</summary>
    public static int Lcs(IReadOnlyList<string> a, IReadOnlyList<string> b)
    {
        var prev = new int[b.Count + 1];
        var cur = new int[b.Count + 1];
        for (int i = 1; i <= a.Count; i++)
        {
            for (int j = 1; j <= b.Count; j++)
                cur[j] = string.Equals(a[i - 1], b[j - 1], StringComparison.Ordinal) ? prev[j - 1] + 1 : Math.Max(prev[j], cur[j - 1]);
            (prev, cur) = (cur, prev);
        }
        return prev[b.Count];
    }
}

/// <summary>JSON helpers: validity, canonical form, field access.</summary>
public static class Json
{
    private static readonly JsonSerializerOptions Compact = new() { WriteIndented = false, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>The answer parsed as one JSON value (surrounding white space allowed), or null when it is not JSON.</summary>
    public static JsonNode? Parse(string text, out bool valid)
    {
        valid = false;
        if (string.IsNullOrWhiteSpace(text)) return null;
        try
        {
            var node = JsonNode.Parse(text, documentOptions: new JsonDocumentOptions { AllowTrailingCommas = false, CommentHandling = JsonCommentHandling.Disallow });
            valid = true;
            return node;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    public static bool IsValid(string text)
    {
        Parse(text, out bool valid);
        return valid;
    }

    /// <summary>Canonical text of a JSON answer (keys sorted by ordinal, numbers by value), or null when it is not JSON.</summary>
    public static string? Canonical(string text)
    {
        var node = Parse(text, out bool valid);
        return valid ? Canonical(node) : null;
    }

    public static string Canonical(JsonNode? node) => Canonicalise(node)?.ToJsonString(Compact) ?? "null";

    private static JsonNode? Canonicalise(JsonNode? node) => node switch
    {
        null => null,
        JsonObject o => new JsonObject(o.OrderBy(p => p.Key, StringComparer.Ordinal)
            .Select(p => KeyValuePair.Create(p.Key, Canonicalise(p.Value)))),
        JsonArray a => new JsonArray(a.Select(Canonicalise).ToArray()),
        JsonValue v when v.GetValueKind() == JsonValueKind.Number => JsonValue.Create(double.Parse(v.ToJsonString(), CultureInfo.InvariantCulture)),
        _ => JsonNode.Parse(node.ToJsonString()),
    };

    /// <summary>A top-level field of a JSON object answer as text (strings unquoted, other values canonical), or null.</summary>
    public static string? Field(string text, string field)
    {
        if (Parse(text, out bool valid) is JsonObject o && valid && o.TryGetPropertyValue(field, out var value))
            return value is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : Canonical(value);
        return null;
    }
}
