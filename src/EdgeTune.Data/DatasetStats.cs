using System.Globalization;
using System.Text;

namespace EdgeTune.Data;

/// <summary>
/// Counts for a dataset card: examples per part (split or file), token-length percentiles (with a token
/// counter), labels, sources (the provenance "source" key; "synthetic" when marked so) and the check summary.
/// Streams the rows; keeps one integer per example for the percentiles.
/// </summary>
public sealed record DatasetStats(
    IReadOnlyDictionary<string, long> Parts,
    IReadOnlyDictionary<string, int>? Tokens,
    IReadOnlyDictionary<string, long> Labels,
    IReadOnlyDictionary<string, long> Sources,
    CheckReport Check)
{
    /// <summary>Stats of a split folder (train/eval/test.jsonl) or of files.</summary>
    public static DatasetStats Compute(IReadOnlyList<string> paths, Func<DatasetExample, int>? tokenCount, ReadOptions? read = null)
    {
        var parts = new List<(string Name, string File)>();
        foreach (var p in paths)
        {
            if (Directory.Exists(p))
                parts.AddRange(DatasetSplitter.Splits.Select(s => (s, Path.Combine(p, s + ".jsonl"))).Where(x => File.Exists(x.Item2)));
            else parts.Add((Path.GetFileName(p), p));
        }
        if (parts.Count == 0) throw new Core.EdgeTuneException($"{string.Join(", ", paths)}: no train/eval/test.jsonl and no data files");

        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        var labels = new SortedDictionary<string, long>(StringComparer.Ordinal);
        var sources = new SortedDictionary<string, long>(StringComparer.Ordinal);
        var tokens = new List<int>();
        var checker = new DataChecker(new CheckOptions { TokenCount = tokenCount, MaxTokens = int.MaxValue });
        foreach (var (name, file) in parts)
        {
            counts.TryAdd(name, 0);
            foreach (var item in DatasetReader.Read(file, read))
            {
                checker.Add(item);
                if (item.Example is not { } e) continue;
                counts[name]++;
                if (e.Label is not null) labels[e.Label] = labels.GetValueOrDefault(e.Label) + 1;
                string source = e.Provenance.TryGetValue("synthetic", out var syn) && syn is "true" or "1" ? "synthetic"
                    : e.Provenance.GetValueOrDefault("source") ?? "unstated";
                sources[source] = sources.GetValueOrDefault(source) + 1;
                if (tokenCount is not null) tokens.Add(tokenCount(e));
            }
        }
        Dictionary<string, int>? pct = null;
        if (tokens.Count > 0)
        {
            tokens.Sort();
            int P(double q) => tokens[Math.Min(tokens.Count - 1, (int)(q * tokens.Count))];
            pct = new() { ["min"] = tokens[0], ["p50"] = P(0.5), ["p90"] = P(0.9), ["p99"] = P(0.99), ["max"] = tokens[^1] };
        }
        return new(counts, pct, labels, sources, checker.Finish());
    }

    public string ToMarkdown(string title)
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(c, $"# Dataset card: {title}").AppendLine();
        sb.AppendLine("## Examples").AppendLine().AppendLine("| part | examples |").AppendLine("|---|---:|");
        foreach (var (k, v) in Parts) sb.AppendLine(c, $"| {k} | {v} |");
        sb.AppendLine(c, $"| **total** | **{Parts.Values.Sum()}** |").AppendLine();
        if (Tokens is not null)
        {
            sb.AppendLine("## Length in tokens (templated)").AppendLine().AppendLine("| min | p50 | p90 | p99 | max |").AppendLine("|---:|---:|---:|---:|---:|");
            sb.AppendLine(c, $"| {Tokens["min"]} | {Tokens["p50"]} | {Tokens["p90"]} | {Tokens["p99"]} | {Tokens["max"]} |").AppendLine();
        }
        if (Labels.Count > 0)
        {
            sb.AppendLine("## Labels").AppendLine().AppendLine("| label | examples |").AppendLine("|---|---:|");
            foreach (var (k, v) in Labels) sb.AppendLine(c, $"| {k} | {v} |");
            sb.AppendLine();
        }
        sb.AppendLine("## Sources").AppendLine().AppendLine("| source | examples |").AppendLine("|---|---:|");
        foreach (var (k, v) in Sources) sb.AppendLine(c, $"| {k} | {v} |");
        sb.AppendLine().AppendLine("## Quality check").AppendLine();
        sb.AppendLine(c, $"{Check.Errors} error(s), {Check.Warnings} warning(s); size: {Check.Summary["size_guidance"]}.").AppendLine();
        var kinds = (IReadOnlyDictionary<string, int>)Check.Summary["kinds"];
        if (kinds.Count > 0)
        {
            sb.AppendLine("| finding | count |").AppendLine("|---|---:|");
            foreach (var (k, v) in kinds) sb.AppendLine(c, $"| {k} | {v} |");
        }
        return sb.ToString();
    }
}
