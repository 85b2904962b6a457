using System.Globalization;
using EdgeTune.Profiles.Bench;
using ScottPlot;

namespace EdgeTune.Cli.Commands;

/// <summary>
/// The PNG of a benchmark: per-token decode latency over the steps of every repetition, against the
/// bandwidth bound and the decode budget; below it generation speed per repetition, so the spread shows.
/// </summary>
internal static class BenchChart
{
    public static void Write(BenchReport r, string path, int width = 1000, int height = 900)
    {
        var c = CultureInfo.InvariantCulture;
        var multiplot = new Multiplot();
        multiplot.AddPlots(2);
        multiplot.Layout = new ScottPlot.MultiplotLayouts.Rows();

        var latency = multiplot.GetPlot(0);
        foreach (var rep in r.Repetitions)
        {
            var xs = Enumerable.Range(1, rep.TokenLatenciesMs.Count).Select(i => (double)i).ToArray();
            var line = latency.Add.ScatterLine(xs, rep.TokenLatenciesMs.ToArray());
            line.LegendText = $"repetition {rep.Index + 1}";
        }
        var bound = latency.Add.HorizontalLine(r.Bound.TokenLatencyBoundMs);
        bound.LinePattern = LinePattern.Dashed;
        bound.LegendText = string.Create(c, $"bandwidth bound {r.Bound.TokenLatencyBoundMs:0.###} ms");
        // Scale to the measurements (a slow step can be 10x the median); the budget line shows when it is near them.
        double top = Math.Max(r.Results.TokenLatencyMs.P99 * 1.3, r.Bound.TokenLatencyBoundMs * 1.2);
        string offScale = "";
        if (r.Budgets.FirstOrDefault(b => b.Name == "min_decode_tokens_per_s") is { } budget)
        {
            double budgetMs = 1e3 / budget.Limit;
            if (budgetMs <= 3 * top)
            {
                var limit = latency.Add.HorizontalLine(budgetMs);
                limit.LinePattern = LinePattern.Dotted;
                limit.LegendText = string.Create(c, $"budget {budgetMs:0.##} ms ({budget.Limit:0.#} tokens/s)");
                top = Math.Max(top, budgetMs * 1.1);
            }
            else offScale = string.Create(c, $" (budget {budgetMs:0.#} ms per token, off the scale)");
        }
        latency.Axes.SetLimitsY(0, top);
        latency.Title($"{r.Model.Name ?? Path.GetFileName(r.Model.Path)} ({r.Model.Type}) on {r.Profile.Name}: decode latency per token{offScale}");
        latency.XLabel("decode step");
        latency.YLabel("ms per token");
        latency.ShowLegend(Alignment.UpperRight);

        var speed = multiplot.GetPlot(1);
        var values = r.Repetitions.Select(x => x.GenTokensPerSecond).ToArray();
        speed.Add.Bars(values);
        var mean = speed.Add.HorizontalLine(r.Results.GenTokensPerSecond.Mean);
        mean.LegendText = string.Create(c, $"mean {r.Results.GenTokensPerSecond.Mean:0.#} ± {r.Results.GenTokensPerSecond.StandardDeviation:0.#} tokens/s");
        if (r.Budgets.FirstOrDefault(b => b.Name == "min_decode_tokens_per_s") is { } b2)
        {
            var limit = speed.Add.HorizontalLine(b2.Limit);
            limit.LinePattern = LinePattern.Dotted;
            limit.LegendText = string.Create(c, $"budget {b2.Limit:0.#} tokens/s");
        }
        speed.Axes.Bottom.SetTicks(
            Enumerable.Range(0, values.Length).Select(i => (double)i).ToArray(),
            r.Repetitions.Select(x => $"rep {x.Index + 1}").ToArray());
        speed.Axes.SetLimitsY(0, Math.Max(values.DefaultIfEmpty(1).Max(), BudgetLimit(r)) * 1.15);
        speed.Title(string.Create(c, $"generation tokens/s per repetition: spread {r.Spread.GenCvPercent:0.#}% (CV), {r.Bound.GenPercentOfBound:0.#}% of the {r.Bound.GenTokensPerSecondBound:0} tokens/s bound"));
        speed.YLabel("tokens/s");
        speed.ShowLegend(Alignment.LowerRight);

        multiplot.SavePng(path, width, height);
    }

    private static double BudgetLimit(BenchReport r) =>
        r.Budgets.FirstOrDefault(b => b.Name == "min_decode_tokens_per_s")?.Limit ?? 0;
}
