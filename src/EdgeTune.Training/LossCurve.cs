using System.Text.Json;
using ScottPlot;

namespace EdgeTune.Training;

/// <summary>The PNG of metrics.jsonl: training loss per step and eval loss where measured.</summary>
public static class LossCurve
{
    public static string? TryWrite(string metricsPath, string pngPath, int width = 900, int height = 500)
    {
        var train = new List<(double Step, double Loss)>();
        var eval = new List<(double Step, double Loss)>();
        foreach (var line in File.ReadLines(metricsPath))
        {
            using var doc = JsonDocument.Parse(line);
            var e = doc.RootElement;
            double step = e.GetProperty("step").GetDouble();
            if (e.TryGetProperty("loss", out var l)) train.Add((step, l.GetDouble()));
            if (e.TryGetProperty("eval_loss", out var el)) eval.Add((step, el.GetDouble()));
        }
        if (train.Count == 0) return null;
        var plot = new Plot();
        var t = plot.Add.ScatterLine(train.Select(p => p.Step).ToArray(), train.Select(p => p.Loss).ToArray());
        t.LegendText = "train loss";
        if (eval.Count > 0)
        {
            var ev = plot.Add.Scatter(eval.Select(p => p.Step).ToArray(), eval.Select(p => p.Loss).ToArray());
            ev.LegendText = "eval loss";
        }
        plot.XLabel("optimizer step");
        plot.YLabel("mean cross-entropy per trained token (nats)");
        plot.ShowLegend();
        plot.SavePng(pngPath, width, height);
        return pngPath;
    }
}
