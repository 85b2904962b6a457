using System.Text.Json;
using System.Text.RegularExpressions;

namespace EdgeTune.Data;

/// <summary>Options of <see cref="DataChecker"/>.</summary>
public sealed record CheckOptions
{
    /// <summary>Tokens of an example once templated (with --model); null skips the length check.</summary>
    public Func<DatasetExample, int>? TokenCount { get; init; }
    public int MaxTokens { get; init; } = 4096;
    /// <summary>Below this many examples, a size warning (a few hundred shift a narrow task).</summary>
    public int MinExamples { get; init; } = 100;
}

/// <summary>The result of a check: findings in file and line order, and the totals.</summary>
public sealed record CheckReport(IReadOnlyList<DataFinding> Findings, IReadOnlyDictionary<string, object> Summary)
{
    public int Errors => Findings.Count(f => f.Severity == Severity.Error);
    public int Warnings => Findings.Count(f => f.Severity == Severity.Warning);
}

/// <summary>
/// The quality check. Examples stream through <see cref="Add"/>; what is kept per example is small (hashes,
/// a MinHash signature, a format signature), so millions of rows fit. Findings that need the majority
/// (format, labels) are decided in <see cref="Finish"/>.
/// </summary>
public sealed partial class DataChecker(CheckOptions? options = null)
{
    private readonly CheckOptions _options = options ?? new CheckOptions();
    private readonly List<DataFinding> _findings = [];
    // Per distinct example (its id is its position in the near-duplicate index) only numbers are kept: its
    // line, the hash of its answer and the index of its answer's format among the distinct formats; the file
    // is kept once per run of examples from it. Exact duplicates and conflicts are found through hashes.
    private readonly LongIntMap _exact = new();   // hash of the normalised example → id of its first copy
    private readonly LongIntMap _inputs = new();  // hash of the normalised input → id of the first example with it
    private readonly NearDuplicateIndex _near = new();
    private readonly List<long> _lines = [];
    private readonly List<ulong> _answers = [];
    private readonly List<int> _formatOf = [];    // -1: no answer to judge
    private readonly List<(int FirstId, string File)> _fileRuns = [];
    private readonly List<Format> _formatTable = [];
    private readonly Dictionary<Format, int> _formatIds = [];
    private readonly Dictionary<string, int> _labels = new(StringComparer.Ordinal);
    private readonly List<int> _tokenCounts = [];
    private readonly HashSet<string> _files = [];
    private long _examples, _unlabelled;

    private readonly record struct Format(string Kind, string? Keys, bool TrailingSpace, char Casing);

    /// <summary>
    /// Names a file being checked before its rows come: a file with no rows at all (empty, or blank lines only) is
    /// then still counted and named by the dataset-level findings.
    /// </summary>
    public void AddFile(string file) => _files.Add(file);

    public void Add(ReadItem item)
    {
        if (item.Finding is { } finding) { _findings.Add(finding); _files.Add(finding.File); return; }
        var e = item.Example!;
        _files.Add(e.File);
        _examples++;
        if (string.IsNullOrWhiteSpace(e.Answer))
            Report("empty-answer", Severity.Error, e, "the answer is empty or whitespace");

        ulong hash = e.Hash;
        if (_exact.TryGetValue(hash, out int first))
        {
            Report("duplicate", Severity.Warning, e, $"same example as {Place(first)}");
            return; // a duplicate adds nothing new to check: its problems are its first copy's
        }

        var (id, matches) = _near.Add(NearDuplicateIndex.Signature(string.Join(' ', e.Messages.Select(m => m.Content))));
        _exact.TryAdd(hash, id);
        if (_fileRuns.Count == 0 || !string.Equals(_fileRuns[^1].File, e.File, StringComparison.Ordinal)) _fileRuns.Add((id, e.File));
        _lines.Add(e.Line);

        ulong input = TextHash.Of(e.NormalisedInput), answer = TextHash.Of(Normaliser.Normalise(e.Answer));
        _answers.Add(answer);
        if (_inputs.TryGetValue(input, out int earlier))
        {
            if (_answers[earlier] != answer) Report("conflict", Severity.Error, e, $"same input as {Place(earlier)} with a different answer");
        }
        else _inputs.TryAdd(input, id);

        if (matches.Count > 0) Report("near-duplicate", Severity.Warning, e, $"nearly the same example as {Place(matches[0])}");

        int format = -1;
        if (!string.IsNullOrWhiteSpace(e.Answer))
        {
            var f = FormatOf(e.Answer);
            if (!_formatIds.TryGetValue(f, out format)) { format = _formatTable.Count; _formatIds[f] = format; _formatTable.Add(f); }
        }
        _formatOf.Add(format);
        if (e.Label is null) _unlabelled++;
        else _labels[e.Label] = _labels.GetValueOrDefault(e.Label) + 1;

        foreach (var m in e.Messages) CheckPii(e, m.Content);

        if (_options.TokenCount is { } count)
        {
            int tokens = count(e);
            _tokenCounts.Add(tokens);
            if (tokens > _options.MaxTokens) Report("over-length", Severity.Warning, e, $"{tokens} tokens once templated, over the limit of {_options.MaxTokens} (it would be dropped or its prompt cut)");
        }
    }

    public CheckReport Finish()
    {
        CheckFormats();
        CheckLabels();
        string firstFile = _files.FirstOrDefault() ?? "";
        string guidance = _examples switch
        {
            < 100 => "very small: a few hundred examples shift a narrow task",
            < 1000 => "enough to shift a narrow task; a few thousand for production quality",
            _ => "production-sized (a few thousand or more)",
        };
        if (_examples < _options.MinExamples)
            _findings.Add(new("size", Severity.Warning, firstFile, 0, $"{_examples} examples: {guidance}"));

        var findings = _findings.OrderBy(f => f.File, StringComparer.Ordinal).ThenBy(f => f.Line).ToList();
        var summary = new Dictionary<string, object>
        {
            ["files"] = _files.Count,
            ["examples"] = _examples,
            ["errors"] = findings.Count(f => f.Severity == Severity.Error),
            ["warnings"] = findings.Count(f => f.Severity == Severity.Warning),
            ["kinds"] = findings.GroupBy(f => f.Kind).OrderBy(g => g.Key, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count()),
            ["labels"] = _labels.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToDictionary(kv => kv.Key, kv => kv.Value),
            ["size_guidance"] = guidance,
        };
        if (_tokenCounts.Count > 0)
        {
            var sorted = _tokenCounts.Order().ToArray();
            int P(double q) => sorted[Math.Min(sorted.Length - 1, (int)(q * sorted.Length))];
            summary["tokens"] = new Dictionary<string, int> { ["p50"] = P(0.5), ["p90"] = P(0.9), ["p99"] = P(0.99), ["max"] = sorted[^1], ["limit"] = _options.MaxTokens };
        }
        return new(findings, summary);
    }

    /// <summary>Answers unlike the majority: prose among JSON, other JSON key sets, other casing or trailing space.</summary>
    private void CheckFormats()
    {
        Minority(_ => true, f => f.Kind, (kind, major) => $"the answer is {kind} but {major.Share:P0} of answers are {major.Value}");
        Minority(f => f.Kind == "JSON object", f => f.Keys!, (keys, major) => $"the JSON answer has keys {{{keys}}} but {major.Share:P0} have {{{major.Value}}}");
        Minority(f => f.Kind == "prose", f => f.TrailingSpace ? "with" : "without",
            (v, major) => $"the answer ends {v} trailing whitespace, unlike {major.Share:P0} of answers");
        Minority(f => f.Kind == "prose" && f.Casing != ' ', f => f.Casing == 'U' ? "an upper-case letter" : "a lower-case letter",
            (v, major) => $"the answer starts with {v}, unlike {major.Share:P0} of answers");
    }

    /// <summary>
    /// Reports each row (among those <paramref name="include"/> accepts) whose value differs from a clear majority
    /// (at least 75% of at least 4 rows). Among equally large groups the one seen first is the majority.
    /// </summary>
    private void Minority(Func<Format, bool> include, Func<Format, string> key, Func<string, (string Value, double Share), string> message)
    {
        var keys = _formatTable.Select(f => include(f) ? key(f) : null).ToArray();
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        var order = new List<string>();
        int total = 0;
        foreach (int f in _formatOf)
        {
            if (f < 0 || keys[f] is not { } k) continue;
            total++;
            if (!counts.TryGetValue(k, out int c)) order.Add(k);
            counts[k] = c + 1;
        }
        if (total < 4) return;
        string top = order[0];
        foreach (var k in order) if (counts[k] > counts[top]) top = k;
        double share = counts[top] / (double)total;
        if (share < 0.75 || share == 1) return;
        for (int id = 0; id < _formatOf.Count; id++)
        {
            int f = _formatOf[id];
            if (f < 0 || keys[f] is not { } k || k == top) continue;
            _findings.Add(new("format", Severity.Warning, FileOf(id), _lines[id], message(k, (top, share))));
        }
    }

    private void CheckLabels()
    {
        if (_labels.Count == 0) return;
        string file = _files.First();
        if (_unlabelled > 0) _findings.Add(new("label-balance", Severity.Warning, file, 0, $"{_unlabelled} examples have no label while {_examples - _unlabelled} do"));
        if (_labels.Count < 2) return;
        var most = _labels.MaxBy(kv => kv.Value);
        var least = _labels.MinBy(kv => kv.Value);
        if (most.Value >= 5 * least.Value)
            _findings.Add(new("label-balance", Severity.Warning, file, 0,
                $"label '{least.Key}' has {least.Value} examples, '{most.Key}' has {most.Value}: the model will lean to '{most.Key}' (add or weight '{least.Key}')"));
    }

    private static Format FormatOf(string answer)
    {
        string t = answer.Trim();
        bool trailing = answer.Length > 0 && char.IsWhiteSpace(answer[^1]);
        if (t.Length > 0 && (t[0] == '{' || t[0] == '['))
        {
            try
            {
                using var doc = JsonDocument.Parse(t);
                if (doc.RootElement.ValueKind == JsonValueKind.Object)
                    return new("JSON object", string.Join(",", doc.RootElement.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal)), trailing, ' ');
                return new("JSON", null, trailing, ' ');
            }
            catch (JsonException) { }
        }
        char first = t.FirstOrDefault(char.IsLetter);
        char casing = first == default ? ' ' : char.IsUpper(first) ? 'U' : 'l';
        return new("prose", null, trailing, casing);
    }

    private void CheckPii(DatasetExample e, string text)
    {
        if (Email().IsMatch(text)) Report("pii", Severity.Warning, e, "contains an e-mail address");
        foreach (Match m in Digits().Matches(text))
        {
            string digits = new(m.Value.Where(char.IsDigit).ToArray());
            if (digits.Length is >= 13 and <= 19 && Luhn(digits)) { Report("pii", Severity.Warning, e, "contains a payment card number (passes the Luhn check)"); return; }
            if (digits.Length is >= 9 and <= 15 && Phone().IsMatch(m.Value)) { Report("pii", Severity.Warning, e, "contains a phone number"); return; }
        }
    }

    internal static bool Luhn(string digits)
    {
        int sum = 0;
        for (int i = 0; i < digits.Length; i++)
        {
            int d = digits[digits.Length - 1 - i] - '0';
            if (i % 2 == 1) { d *= 2; if (d > 9) d -= 9; }
            sum += d;
        }
        return sum % 10 == 0;
    }

    [GeneratedRegex(@"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")]
    private static partial Regex Email();

    /// <summary>Digit runs with the separators people type inside phone and card numbers.</summary>
    [GeneratedRegex(@"\+?\(?\d[\d \-().]{7,}\d")]
    private static partial Regex Digits();

    /// <summary>A phone number: an international prefix, or grouped digits (separators), not a bare id.</summary>
    [GeneratedRegex(@"^(\+\d|\(?\d{2,4}\)?[ \-.]\d)")]
    private static partial Regex Phone();

    private void Report(string kind, Severity severity, DatasetExample e, string message) => _findings.Add(new(kind, severity, e.File, e.Line, message));

    private string Place(int id) => $"{Path.GetFileName(FileOf(id))}:{_lines[id]}";

    /// <summary>The file of an example: the last run of examples that starts at or before it.</summary>
    private string FileOf(int id)
    {
        int lo = 0, hi = _fileRuns.Count - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) / 2;
            if (_fileRuns[mid].FirstId <= id) lo = mid; else hi = mid - 1;
        }
        return _fileRuns[lo].File;
    }
}
