using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using EdgeTune.Evaluation.Metrics;
using ScottPlot;

namespace EdgeTune.Evaluation.Reports;

/// <summary>
/// The evaluation report in the run folder: report.md (tables) and report.html (self-contained: plots as inline
/// base64 PNG, no external resources), with metric bars and their 95% intervals, the confusion matrix and the
/// training loss curve when the run folder has a metrics.jsonl of {"step", "loss"} / {"step", "eval_loss"} lines.
/// </summary>
public static class EvalReportWriter
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    public static (string Markdown, string Html) Write(EvalOutcome o, string runDir, string title)
    {
        Directory.CreateDirectory(runDir);
        var loss = ReadLoss(Path.Combine(runDir, "metrics.jsonl"));
        string md = Path.Combine(runDir, "report.md"), html = Path.Combine(runDir, "report.html");
        File.WriteAllText(md, Markdown(o, title, loss.Count > 0));
        File.WriteAllText(html, Html(o, title, loss));
        return (md, html);
    }

    private static string F(double v) => double.IsFinite(v) ? v.ToString("0.####", C) : "n/a";

    public static string Markdown(EvalOutcome o, string title, bool hasLoss)
    {
        var sb = new StringBuilder();
        sb.AppendLine(C, $"# {title}").AppendLine();
        if (o.Verdict is { TunedValue: not null } v)
            sb.AppendLine(C, $"**Verdict:** {(v.TunedBetterThanBaselines ? "fine-tuning helped" : "no evidence that fine-tuning helped")}: {v.Summary}.").AppendLine();
        sb.AppendLine("Metrics with 95% percentile-bootstrap intervals (seeded; examples resampled):").AppendLine();
        var names = o.Runners.SelectMany(r => r.Metrics.Select(m => m.Name)).Distinct().ToList();
        sb.AppendLine("| runner | " + string.Join(" | ", names) + " |");
        sb.AppendLine("|---|" + string.Concat(names.Select(_ => "---|")));
        foreach (var r in o.Runners)
            sb.AppendLine($"| {r.Runner} ({r.Description}, n={r.Examples}) | " +
                          string.Join(" | ", names.Select(n => r.Metric(n) is { } m ? $"{F(m.Value.Value)} [{F(m.Value.Low)}, {F(m.Value.High)}]" : "–")) + " |");
        if (o.Comparisons.Count > 0)
        {
            sb.AppendLine().AppendLine("Paired tests (difference A − B; McNemar for right/wrong metrics, paired bootstrap otherwise):").AppendLine();
            sb.AppendLine("| A | B | metric | difference | p | test |").AppendLine("|---|---|---|---|---|---|");
            foreach (var c in o.Comparisons)
                sb.AppendLine($"| {c.A} | {c.B} | {c.Metric} | {F(c.Test.Difference)} | {F(c.Test.PValue)} | {c.Test.Test} |");
        }
        if (o.Forgetting is { } f)
            sb.AppendLine().AppendLine(C, $"Forgetting check ({f.TextSource}, {f.Tokens} tokens): perplexity base {F(f.BasePerplexity)}, tuned {F(f.TunedPerplexity)} " +
                                          $"({f.RelativeChange * 100:+0.#;-0.#;0}%){(f.Flagged ? " — **the tuned model lost general ability (perplexity up more than 10%)**" : "")}.");
        foreach (var r in o.Runners.Where(r => r.Confusion is not null))
        {
            var m = r.Confusion!;
            sb.AppendLine().AppendLine($"Confusion matrix of {r.Runner} (rows: reference, columns: predicted):").AppendLine();
            sb.AppendLine("| | " + string.Join(" | ", m.Labels.Select(Label)) + " |").AppendLine("|---|" + string.Concat(m.Labels.Select(_ => "---|")));
            for (int i = 0; i < m.Labels.Count; i++) sb.AppendLine($"| {Label(m.Labels[i])} | " + string.Join(" | ", m.Rows[i]) + " |");
        }
        foreach (var r in o.Runners.Where(r => r.FieldAccuracy is { Count: > 0 }))
            sb.AppendLine().AppendLine($"Per-field accuracy of {r.Runner}: " + string.Join(", ", r.FieldAccuracy!.Select(kv => $"{kv.Key} {F(kv.Value)}")));
        if (hasLoss) sb.AppendLine().AppendLine("The training loss curve is in report.html.");
        return sb.ToString();
    }

    private static string Label(string l) => l.Length == 0 ? "(none)" : l.Replace("|", "\\|", StringComparison.Ordinal);

    public static string Html(EvalOutcome o, string title, IReadOnlyList<(double Step, double? Loss, double? EvalLoss)> loss)
    {
        var sb = new StringBuilder();
        sb.Append("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>").Append(WebUtility.HtmlEncode(title))
          .Append("</title><style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}table{border-collapse:collapse;margin:1em 0}" +
                  "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th:first-child,td:first-child{text-align:left}.verdict{font-size:1.2em;padding:.6em;border-radius:6px}" +
                  ".yes{background:#e3f6e3}.no{background:#fbeaea}img{max-width:100%}</style></head><body>");
        sb.Append("<h1>").Append(WebUtility.HtmlEncode(title)).Append("</h1>");
        if (o.Verdict is { TunedValue: not null } v)
            sb.Append("<p class=\"verdict ").Append(v.TunedBetterThanBaselines ? "yes" : "no").Append("\">")
              .Append(v.TunedBetterThanBaselines ? "Fine-tuning helped: " : "No evidence that fine-tuning helped: ").Append(WebUtility.HtmlEncode(v.Summary)).Append(".</p>");
        var md = Markdown(o, title, false);
        sb.Append("<h2>Metrics</h2>").Append(TablesAsHtml(o));
        foreach (var metric in o.Runners.SelectMany(r => r.Metrics.Select(m => m.Name)).Distinct())
            sb.Append("<img alt=\"").Append(metric).Append("\" src=\"data:image/png;base64,").Append(Convert.ToBase64String(MetricBars(o, metric))).Append("\">");
        foreach (var r in o.Runners.Where(r => r.Confusion is not null))
            sb.Append("<h2>Confusion matrix: ").Append(WebUtility.HtmlEncode(r.Runner)).Append("</h2><img alt=\"confusion ").Append(r.Runner)
              .Append("\" src=\"data:image/png;base64,").Append(Convert.ToBase64String(ConfusionPng(r.Confusion!, r.Runner))).Append("\">");
        if (loss.Count > 0)
            sb.Append("<h2>Training loss</h2><img alt=\"loss\" src=\"data:image/png;base64,").Append(Convert.ToBase64String(LossPng(loss))).Append("\">");
        sb.Append("<h2>Details</h2><pre>").Append(WebUtility.HtmlEncode(md)).Append("</pre></body></html>");
        return sb.ToString();
    }

    private static string TablesAsHtml(EvalOutcome o)
    {
        var names = o.Runners.SelectMany(r => r.Metrics.Select(m => m.Name)).Distinct().ToList();
        var sb = new StringBuilder("<table><tr><th>runner</th>");
        foreach (var n in names) sb.Append("<th>").Append(n).Append("</th>");
        sb.Append("</tr>");
        foreach (var r in o.Runners)
        {
            sb.Append("<tr><td>").Append(WebUtility.HtmlEncode($"{r.Runner} ({r.Description}, n={r.Examples})")).Append("</td>");
            foreach (var n in names)
                sb.Append("<td>").Append(r.Metric(n) is { } m ? $"{F(m.Value.Value)} [{F(m.Value.Low)}, {F(m.Value.High)}]" : "–").Append("</td>");
            sb.Append("</tr>");
        }
        sb.Append("</table>");
        if (o.Comparisons.Count > 0)
        {
            sb.Append("<table><tr><th>A</th><th>B</th><th>metric</th><th>difference</th><th>p</th><th>test</th></tr>");
            foreach (var c in o.Comparisons)
                sb.Append(C, $"<tr><td>{c.A}</td><td>{c.B}</td><td>{c.Metric}</td><td>{F(c.Test.Difference)}</td><td>{F(c.Test.PValue)}</td><td>{c.Test.Test}</td></tr>");
            sb.Append("</table>");
        }
        if (o.Forgetting is { } f)
            sb.Append(C, $"<p>Forgetting check: perplexity on general text, base {F(f.BasePerplexity)}, tuned {F(f.TunedPerplexity)}{(f.Flagged ? " (<b>lost general ability</b>)" : "")}.</p>");
        return sb.ToString();
    }

    /// <summary>One bar per runner with its 95% interval as a whisker.</summary>
    public static byte[] MetricBars(EvalOutcome o, string metric)
    {
        var plot = new Plot();
        var rows = o.Runners.Select(r => (r.Runner, M: r.Metric(metric))).Where(x => x.M is not null && double.IsFinite(x.M.Value.Value)).ToList();
        var bars = rows.Select((x, i) => new Bar { Position = i, Value = x.M!.Value.Value, FillColor = Colors.SteelBlue }).ToList();
        plot.Add.Bars(bars);
        for (int i = 0; i < rows.Count; i++)
        {
            var ci = rows[i].M!.Value;
            if (!double.IsFinite(ci.Low) || !double.IsFinite(ci.High)) continue;
            plot.Add.Line(i, ci.Low, i, ci.High).Color = Colors.Black;
            plot.Add.Line(i - 0.1, ci.Low, i + 0.1, ci.Low).Color = Colors.Black;
            plot.Add.Line(i - 0.1, ci.High, i + 0.1, ci.High).Color = Colors.Black;
        }
        plot.Axes.Bottom.SetTicks(Enumerable.Range(0, rows.Count).Select(i => (double)i).ToArray(), rows.Select(r => r.Runner).ToArray());
        plot.Axes.Margins(bottom: 0);
        plot.Title($"{metric} (95% bootstrap interval)");
        return plot.GetImageBytes(520, 320, ImageFormat.Png);
    }

    public static byte[] ConfusionPng(ConfusionMatrix m, string runner)
    {
        var plot = new Plot();
        int n = m.Labels.Count;
        var data = new double[n, n];
        for (int r = 0; r < n; r++) for (int c = 0; c < n; c++) data[r, c] = m.Counts[r, c];
        var heat = plot.Add.Heatmap(data);
        heat.Colormap = new ScottPlot.Colormaps.Blues();
        for (int r = 0; r < n; r++)
            for (int c = 0; c < n; c++)
            {
                var text = plot.Add.Text(m.Counts[r, c].ToString(C), c, n - 1 - r);
                text.LabelFontColor = Colors.Black;
                text.LabelBackgroundColor = Colors.White; // readable on dark and light cells alike
                text.LabelAlignment = Alignment.MiddleCenter;
            }
        var ticks = Enumerable.Range(0, n).Select(i => (double)i).ToArray();
        var names = m.Labels.Select(l => l.Length == 0 ? "(none)" : l.Length > 16 ? l[..16] + "…" : l).ToArray();
        plot.Axes.Bottom.SetTicks(ticks, names);
        plot.Axes.Left.SetTicks(ticks, names.Reverse().ToArray());
        plot.XLabel("predicted");
        plot.YLabel("reference");
        plot.Title($"confusion matrix: {runner}");
        return plot.GetImageBytes(520, 480, ImageFormat.Png);
    }

    public static byte[] LossPng(IReadOnlyList<(double Step, double? Loss, double? EvalLoss)> loss)
    {
        var plot = new Plot();
        var train = loss.Where(l => l.Loss is not null).ToList();
        var eval = loss.Where(l => l.EvalLoss is not null).ToList();
        if (train.Count > 0) plot.Add.ScatterLine(train.Select(l => l.Step).ToArray(), train.Select(l => l.Loss!.Value).ToArray()).LegendText = "training loss";
        if (eval.Count > 0) plot.Add.Scatter(eval.Select(l => l.Step).ToArray(), eval.Select(l => l.EvalLoss!.Value).ToArray()).LegendText = "eval loss";
        plot.XLabel("step");
        plot.YLabel("loss");
        plot.ShowLegend(Alignment.UpperRight);
        return plot.GetImageBytes(720, 360, ImageFormat.Png);
    }

    /// <summary>Reads {"step", "loss"} and {"step", "eval_loss"} lines; other lines and keys are ignored.</summary>
    public static List<(double Step, double? Loss, double? EvalLoss)> ReadLoss(string file)
    {
        var result = new List<(double, double?, double?)>();
        if (!File.Exists(file)) return result;
        foreach (var line in File.ReadLines(file))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                using var doc = JsonDocument.Parse(line);
                var root = doc.RootElement;
                if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("step", out var step) || !step.TryGetDouble(out double s)) continue;
                double? Get(string k) => root.TryGetProperty(k, out var v) && v.TryGetDouble(out double d) ? d : null;
                var (l, e) = (Get("loss"), Get("eval_loss"));
                if (l is not null || e is not null) result.Add((s, l, e));
            }
            catch (JsonException)
            {
                // a partial last line of a running trainer
            }
        }
        return result;
    }
}
