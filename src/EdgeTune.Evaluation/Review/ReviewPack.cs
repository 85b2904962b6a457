using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Evaluation.Runners;
using EdgeTune.Evaluation.Statistics;

namespace EdgeTune.Evaluation.Review;

/// <summary>One blinded item: the prompt and two answers; which model wrote which side is in the key only.</summary>
public sealed record ReviewItem(string Item, string ExampleId, string Source, string Prompt, string Reference, string AnswerA, string AnswerB, string Stratum);

public sealed record ReviewKeyEntry(string Item, string ExampleId, string A, string B);

public sealed record ReviewKey(string ModelX, string ModelY, ulong Seed, IReadOnlyList<ReviewKeyEntry> Items);

public sealed record ReviewExport(string Html, string Csv, string Key, int Size, int Population, IReadOnlyDictionary<string, int> Strata);

/// <summary>
/// The human review pack: a stratified, seeded sample of paired answers (strata: label × reference length
/// tercile), each shown blinded with the sides randomised, as a self-contained HTML page and a CSV sheet; the key
/// (which side is which model) goes to a separate file.
/// </summary>
public static class ReviewPack
{
    private static readonly JsonSerializerOptions JsonOut = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static ReviewExport Export(string modelX, IReadOnlyList<RunnerAnswer> x, string modelY, IReadOnlyList<RunnerAnswer> y,
        string outDir, string keyFile, int? size, double margin, ulong seed)
    {
        var byId = y.GroupBy(a => a.Id).ToDictionary(g => g.Key, g => g.Last());
        var pairs = x.GroupBy(a => a.Id).Select(g => g.Last()).Where(a => byId.ContainsKey(a.Id)).Select(a => (X: a, Y: byId[a.Id])).ToList();
        if (pairs.Count == 0) throw new EdgeTuneException($"the answers of {modelX} and {modelY} share no example ids; they are not answers to the same test split");
        int n = Math.Min(pairs.Count, size ?? Stats.SampleSize(margin, pairs.Count));
        if (n < 1) throw new EdgeTuneException("--size must be 1 or more");

        // Strata: label (or "-") × length tercile of the reference answer.
        var lengths = pairs.Select(p => (double)p.X.Reference.Length).Order().ToArray();
        double t1 = Stats.Quantile(lengths, 1.0 / 3), t2 = Stats.Quantile(lengths, 2.0 / 3);
        string Stratum((RunnerAnswer X, RunnerAnswer Y) p) =>
            $"{p.X.Label ?? "-"}/{(p.X.Reference.Length <= t1 ? "short" : p.X.Reference.Length <= t2 ? "medium" : "long")}";
        var rng = new SeededRandom(seed);
        var strata = pairs.GroupBy(Stratum).OrderBy(g => g.Key, StringComparer.Ordinal).Select(g =>
        {
            var list = g.OrderBy(p => p.X.Id, StringComparer.Ordinal).ToList();
            rng.Shuffle(list);
            return (g.Key, List: list);
        }).ToList();
        // Proportional allocation, largest remainders first (ties by stratum name), so the sample mirrors the test split.
        var quotas = strata.Select(s => (s.Key, Exact: (double)n * s.List.Count / pairs.Count)).ToList();
        var take = quotas.ToDictionary(q => q.Key, q => (int)Math.Floor(q.Exact));
        foreach (var q in quotas.OrderByDescending(q => q.Exact - Math.Floor(q.Exact)).ThenBy(q => q.Key, StringComparer.Ordinal))
        {
            if (take.Values.Sum() >= n) break;
            take[q.Key]++;
        }
        var sample = strata.SelectMany(s => s.List.Take(take[s.Key]).Select(p => (s.Key, p))).ToList();
        rng.Shuffle(sample);

        var items = new List<ReviewItem>();
        var key = new List<ReviewKeyEntry>();
        for (int i = 0; i < sample.Count; i++)
        {
            var (stratum, (a, b)) = sample[i];
            bool swap = rng.Next(2) == 1;
            string item = $"item-{i + 1:000}";
            items.Add(new ReviewItem(item, a.Id, a.Source, PromptText(a), a.Reference, swap ? b.Text : a.Text, swap ? a.Text : b.Text, stratum));
            key.Add(new ReviewKeyEntry(item, a.Id, swap ? modelY : modelX, swap ? modelX : modelY));
        }

        Directory.CreateDirectory(outDir);
        string html = Path.Combine(outDir, "review.html"), csv = Path.Combine(outDir, "review.csv");
        File.WriteAllText(html, Page(items));
        File.WriteAllText(csv, Sheet(items));
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(keyFile))!);
        File.WriteAllText(keyFile, JsonSerializer.Serialize(new ReviewKey(modelX, modelY, seed, key), JsonOut));
        return new ReviewExport(html, csv, keyFile, items.Count, pairs.Count,
            sample.GroupBy(s => s.Key).OrderBy(g => g.Key, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count()));
    }

    /// <summary>What the reviewer reads as the question: the last user turn (the rendered prompt when the answers file lacks it).</summary>
    private static string PromptText(RunnerAnswer a) => a.Question.Length > 0 ? a.Question : a.Prompt;

    public static string Sheet(IReadOnlyList<ReviewItem> items)
    {
        var sb = new StringBuilder("item,prompt,reference,answer_a,answer_b,verdict,comment\n");
        foreach (var i in items)
            sb.AppendJoin(',', new[] { i.Item, i.Prompt, i.Reference, i.AnswerA, i.AnswerB, "", "" }.Select(Csv.Quote)).Append('\n');
        return sb.ToString();
    }

    public static string Page(IReadOnlyList<ReviewItem> items)
    {
        using var stream = typeof(ReviewPack).Assembly.GetManifestResourceStream("EdgeTune.Evaluation.review.html")
                           ?? throw new InvalidOperationException("the embedded review page is missing");
        using var reader = new StreamReader(stream);
        string template = reader.ReadToEnd();
        var data = items.Select(i => new { item = i.Item, prompt = i.Prompt, reference = i.Reference, a = i.AnswerA, b = i.AnswerB });
        // Inside <script>: escape '<' so no answer can close the script element.
        string json = JsonSerializer.Serialize(data).Replace("<", "\\u003c", StringComparison.Ordinal);
        return template.Replace("/*ITEMS*/[]", json, StringComparison.Ordinal);
    }
}

/// <summary>RFC 4180 CSV: quoting, and a reader that handles quoted commas, quotes and line breaks.</summary>
public static class Csv
{
    public static string Quote(string s) =>
        s.IndexOfAny([',', '"', '\n', '\r']) >= 0 || s.StartsWith(' ') || s.EndsWith(' ') ? "\"" + s.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"" : s;

    /// <summary>Rows with the 1-based line each starts on.</summary>
    public static List<(int Line, List<string> Fields)> Read(string text)
    {
        var rows = new List<(int, List<string>)>();
        var field = new StringBuilder();
        var row = new List<string>();
        int line = 1, start = 1;
        bool quoted = false, any = false;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (quoted)
            {
                if (c == '"' && i + 1 < text.Length && text[i + 1] == '"') { field.Append('"'); i++; }
                else if (c == '"') quoted = false;
                else { if (c == '\n') line++; field.Append(c); }
                continue;
            }
            switch (c)
            {
                case '"': quoted = true; any = true; break;
                case ',': row.Add(field.ToString()); field.Clear(); any = true; break;
                case '\r': break;
                case '\n':
                    row.Add(field.ToString()); field.Clear();
                    if (any || row.Count > 1 || row[0].Length > 0) rows.Add((start, row));
                    row = []; any = false; line++; start = line;
                    break;
                default: field.Append(c); any = true; break;
            }
        }
        if (any || field.Length > 0) { row.Add(field.ToString()); rows.Add((start, row)); }
        return rows;
    }
}

public sealed record PreferenceRate(string Outcome, int Count, Interval Rate);

public sealed record ReviewSummary(string ModelX, string ModelY, int Verdicts, int Reviewers, IReadOnlyList<PreferenceRate> Rates,
    string? AgreementStatistic, double? Agreement, int AgreementItems);

/// <summary>Reads reviewers' verdict CSVs back, unblinds them with the key and summarises preferences and agreement.</summary>
public static class ReviewImport
{
    public static ReviewSummary Summarise(IReadOnlyList<string> verdictFiles, string keyFile)
    {
        if (!File.Exists(keyFile)) throw new EdgeTuneException($"{keyFile}: no such key file");
        ReviewKey key;
        try
        {
            key = JsonSerializer.Deserialize<ReviewKey>(File.ReadAllText(keyFile)) ?? throw new JsonException("empty");
        }
        catch (JsonException e)
        {
            throw new EdgeTuneException($"{keyFile}:{(e.LineNumber ?? 0) + 1}: not a review key ({e.Message})");
        }
        var sides = key.Items.ToDictionary(i => i.Item);
        // reviewer → item → outcome (model name or "tie")
        var byReviewer = new Dictionary<string, Dictionary<string, string>>(StringComparer.Ordinal);
        foreach (var file in verdictFiles)
        {
            if (!File.Exists(file)) throw new EdgeTuneException($"{file}: no such verdicts file");
            var rows = Csv.Read(File.ReadAllText(file));
            if (rows.Count == 0) throw new EdgeTuneException($"{file}:1: empty; expected a header item,verdict[,comment][,reviewer]");
            var header = rows[0].Fields.Select(h => h.Trim().ToLowerInvariant()).ToList();
            int iItem = header.IndexOf("item"), iVerdict = header.IndexOf("verdict"), iReviewer = header.IndexOf("reviewer");
            if (iItem < 0 || iVerdict < 0) throw new EdgeTuneException($"{file}:1: the header needs the columns item and verdict");
            foreach (var (line, f) in rows.Skip(1))
            {
                string item = Get(f, iItem), verdict = Get(f, iVerdict).Trim().ToUpperInvariant();
                string reviewer = iReviewer >= 0 && Get(f, iReviewer).Trim() is { Length: > 0 } name ? name.Trim() : Path.GetFileNameWithoutExtension(file);
                if (verdict.Length == 0) continue; // not reviewed yet
                if (!sides.TryGetValue(item, out var side)) throw new EdgeTuneException($"{file}:{line}: item '{item}' is not in the key {keyFile}");
                string outcome = verdict switch
                {
                    "A" => side.A,
                    "B" => side.B,
                    "TIE" => "tie",
                    _ => throw new EdgeTuneException($"{file}:{line}: verdict '{Get(f, iVerdict)}' is not A, B or tie"),
                };
                if (!byReviewer.TryGetValue(reviewer, out var map)) byReviewer[reviewer] = map = new Dictionary<string, string>(StringComparer.Ordinal);
                map[item] = outcome;
            }
        }
        var all = byReviewer.Values.SelectMany(m => m.Values).ToList();
        if (all.Count == 0) throw new EdgeTuneException($"{string.Join(", ", verdictFiles)}: no verdicts (fill the verdict column with A, B or tie)");
        var rates = new[] { key.ModelX, key.ModelY, "tie" }
            .Select(o => new PreferenceRate(o, all.Count(v => v == o), Stats.Wilson(all.Count(v => v == o), all.Count))).ToList();

        string? statistic = null;
        double? agreement = null;
        int shared = 0;
        if (byReviewer.Count >= 2)
        {
            var reviewers = byReviewer.Keys.Order(StringComparer.Ordinal).ToList();
            var common = reviewers.Select(r => (IEnumerable<string>)byReviewer[r].Keys).Aggregate((a, b) => a.Intersect(b)).Order(StringComparer.Ordinal).ToList();
            shared = common.Count;
            if (common.Count > 0)
            {
                if (reviewers.Count == 2)
                {
                    statistic = "cohen_kappa";
                    agreement = Stats.CohenKappa(common.Select(i => byReviewer[reviewers[0]][i]).ToList(), common.Select(i => byReviewer[reviewers[1]][i]).ToList());
                }
                else
                {
                    statistic = "fleiss_kappa";
                    string[] cats = [key.ModelX, key.ModelY, "tie"];
                    agreement = Stats.FleissKappa(common.Select(i => cats.Select(c => reviewers.Count(r => byReviewer[r][i] == c)).ToArray()).ToArray());
                }
            }
        }
        return new ReviewSummary(key.ModelX, key.ModelY, all.Count, byReviewer.Count, rates, statistic, agreement, shared);
    }

    private static string Get(List<string> f, int i) => i < f.Count ? f[i] : "";

    public static string Format(ReviewSummary s)
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(c, $"{s.Verdicts} verdicts from {s.Reviewers} reviewer{(s.Reviewers == 1 ? "" : "s")}: {s.ModelX} vs {s.ModelY}");
        foreach (var r in s.Rates)
            sb.AppendLine(c, $"  {(r.Outcome == "tie" ? "tie" : r.Outcome + " preferred"),-24} {r.Count,5}  {r.Rate.Value * 100,5:0.0}%  95% CI [{r.Rate.Low * 100:0.0}%, {r.Rate.High * 100:0.0}%] (Wilson)");
        if (s.AgreementStatistic is not null)
            sb.AppendLine(c, $"  agreement: {s.AgreementStatistic} = {s.Agreement:0.###} over {s.AgreementItems} items every reviewer judged");
        else if (s.Reviewers >= 2) sb.AppendLine("  agreement: the reviewers judged no item in common");
        return sb.ToString();
    }
}
