using System.Globalization;
using System.Text;
using System.Text.Json;
using EdgeTune.Profiles.Schema;

namespace EdgeTune.Profiles.Bench;

/// <summary>
/// Several bench results side by side (two boards, two quantisation types, before and after). Each
/// numeric row shows the change against the first result, and whether that change is larger than the
/// two runs' own noise (the 95% confidence intervals of the means, combined).
/// </summary>
public static class BenchComparison
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    public sealed record Row(string Figure, IReadOnlyList<string> Cells);

    public static IReadOnlyList<Row> Rows(IReadOnlyList<BenchReport> reports)
    {
        if (reports.Count == 0) throw new ArgumentException("nothing to compare", nameof(reports));
        var rows = new List<Row>
        {
            new("profile", reports.Select(r => r.Profile.Name).ToList()),
            new("model", reports.Select(r => $"{r.Model.Name ?? Path.GetFileName(r.Model.Path)} ({r.Model.Type})").ToList()),
            new("runtime", reports.Select(r => $"{r.Runtime.Key}, {r.Runtime.Threads} threads").ToList()),
            new("run", reports.Select(r => $"pp{r.Settings.PromptTokens} tg{r.Settings.GenTokens} x{r.Settings.Repetitions}").ToList()),
            Numeric("prompt tokens/s", reports, r => r.Results.PromptTokensPerSecond, higherIsBetter: true),
            Numeric("generation tokens/s", reports, r => r.Results.GenTokensPerSecond, higherIsBetter: true),
            Plain("  % of bandwidth bound", reports, r => r.Bound.GenPercentOfBound, "0.#", "%"),
            Plain("TTFT p95 (ms)", reports, r => r.Results.TtftMs.P95, "0.##", ""),
            Plain("token latency p50 (ms)", reports, r => r.Results.TokenLatencyMs.P50, "0.###", ""),
            Plain("token latency p99 (ms)", reports, r => r.Results.TokenLatencyMs.P99, "0.###", ""),
            new("peak memory", reports.Select(r => Units.FormatBytes(r.Results.PeakMemoryBytes)).ToList()),
            new("average power", reports.Select(r => r.Results.Power is { } p ? p.AverageWatts.ToString("0.## W", C) : "not measured").ToList()),
            new("J per generated token", reports.Select(r => r.Results.Power is { } p ? p.GenJoulesPerToken.ToString("0.####", C) : "not measured").ToList()),
            new("throttling", reports.Select(r => r.Results.Throttling.Noticed ? "noticed" : r.Results.Throttling.Checked.Count > 0 ? "none" : "not observable").ToList()),
            new("spread (gen CV)", reports.Select(r => r.Spread.GenCvPercent.ToString("0.#", C) + "%" + (r.Spread.Stable ? "" : " noisy")).ToList()),
            new("budgets passed", reports.Select(r => $"{r.Budgets.Count(b => b.Status == "pass")}/{r.Budgets.Count}" + (r.Budgets.Any(b => b.Status == "fail") ? " (fail: " + string.Join(", ", r.Budgets.Where(b => b.Status == "fail").Select(b => b.Name)) + ")" : "")).ToList()),
        };
        return rows;
    }

    private static Row Numeric(string name, IReadOnlyList<BenchReport> reports, Func<BenchReport, Summary> pick, bool higherIsBetter)
    {
        var first = pick(reports[0]);
        var cells = new List<string>();
        for (int i = 0; i < reports.Count; i++)
        {
            var x = pick(reports[i]);
            string cell = string.Create(C, $"{x.Mean:0.##} ± {x.StandardDeviation:0.##}");
            if (i > 0 && first.Mean != 0)
            {
                double change = 100 * (x.Mean - first.Mean) / first.Mean;
                double noise = Math.Sqrt(first.Ci95 * first.Ci95 + x.Ci95 * x.Ci95);
                string meaning = Math.Abs(x.Mean - first.Mean) <= noise ? "within noise" : (change > 0) == higherIsBetter ? "better" : "worse";
                cell += string.Create(C, $" ({change:+0.#;-0.#;0}%, {meaning})");
            }
            cells.Add(cell);
        }
        return new Row(name, cells);
    }

    private static Row Plain(string name, IReadOnlyList<BenchReport> reports, Func<BenchReport, double> pick, string format, string suffix)
    {
        double first = pick(reports[0]);
        return new Row(name, reports.Select((r, i) =>
        {
            double v = pick(r);
            string cell = v.ToString(format, C) + suffix;
            if (i > 0 && first != 0) cell += string.Create(C, $" ({100 * (v - first) / first:+0.#;-0.#;0}%)");
            return cell;
        }).ToList());
    }

    public static string Text(IReadOnlyList<string> labels, IReadOnlyList<BenchReport> reports)
    {
        var rows = Rows(reports);
        var header = new[] { "" }.Concat(labels).ToList();
        var table = new List<IReadOnlyList<string>> { header };
        table.AddRange(rows.Select(r => (IReadOnlyList<string>)new[] { r.Figure }.Concat(r.Cells).ToList()));
        var widths = Enumerable.Range(0, header.Count).Select(c => table.Max(row => row[c].Length)).ToArray();
        var s = new StringBuilder();
        foreach (var row in table)
            s.AppendLine(string.Join("  ", row.Select((cell, c) => cell.PadRight(widths[c]))).TrimEnd());
        s.AppendLine("Changes are against the first result; 'within noise' means inside the two runs' combined 95% confidence intervals.");
        return s.ToString();
    }

    public static string Markdown(IReadOnlyList<string> labels, IReadOnlyList<BenchReport> reports)
    {
        var s = new StringBuilder();
        s.AppendLine("| | " + string.Join(" | ", labels) + " |");
        s.AppendLine("|---|" + string.Concat(labels.Select(_ => "---|")));
        foreach (var row in Rows(reports)) s.AppendLine($"| {row.Figure.Trim()} | {string.Join(" | ", row.Cells)} |");
        return s.ToString();
    }

    public static string Json(IReadOnlyList<string> labels, IReadOnlyList<BenchReport> reports)
    {
        var rows = Rows(reports);
        var doc = new
        {
            results = labels,
            rows = rows.Select(r => new { figure = r.Figure.Trim(), cells = r.Cells }),
            gen_tokens_per_s = reports.Select(r => r.Results.GenTokensPerSecond.Mean),
            prompt_tokens_per_s = reports.Select(r => r.Results.PromptTokensPerSecond.Mean),
        };
        return JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true });
    }
}
