using System.Globalization;
using System.Text;
using EdgeTune.Profiles.Schema;

namespace EdgeTune.Profiles.Bench;

/// <summary>The Markdown summary of a benchmark: what ran, every figure against its budget and bound, the spread.</summary>
public static class BenchMarkdown
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    public static string Write(BenchReport r)
    {
        var s = new StringBuilder();
        var res = r.Results;
        s.AppendLine(C, $"# edgetune bench: {r.Model.Name ?? Path.GetFileName(r.Model.Path)} on {r.Profile.Name}");
        s.AppendLine();
        s.AppendLine("| | |");
        s.AppendLine("|---|---|");
        s.AppendLine(C, $"| Model | `{r.Model.Path}`: {r.Model.Architecture}, {r.Model.Type}, {Count(r.Model.Parameters)} parameters, {Units.FormatBytes(r.Model.WeightBytes)} of weights |");
        if (r.Model.Adapter is { } a) s.AppendLine(C, $"| Adapter | `{a}`: {Units.FormatBytes(r.Model.AdapterBytes ?? 0)} |");
        s.AppendLine(C, $"| Profile | {r.Profile.DisplayName} (`{r.Profile.Name}`), {Units.Format(Dimension.Bandwidth, r.Profile.BandwidthBytesPerSecond)}{(r.Profile.PowerMode is { } pm ? $", power mode {pm}" : "")} |");
        s.AppendLine(C, $"| Runtime | {r.Runtime.Description}, {r.Runtime.Threads} threads, {r.Runtime.GpuLayers} GPU layers, context {r.Runtime.ContextSize}, KV cache {r.Runtime.KvType} |");
        s.AppendLine(C, $"| Host | {r.Host.Machine}: {r.Host.Os}, {r.Host.Architecture}, {r.Host.LogicalCores} logical cores{(r.Host.MemoryTotalBytes is { } mt ? $", {Units.FormatBytes(mt)} memory" : "")}{(r.Host.BoardModel is { } bm ? $", {bm}" : "")} |");
        s.AppendLine(C, $"| Run | prompt {r.Settings.PromptTokens} tokens, generate {r.Settings.GenTokens}, {r.Settings.Repetitions} repetitions after {r.Settings.Warmup} warm-up, {r.Created:yyyy-MM-dd HH:mm} UTC |");
        s.AppendLine();

        s.AppendLine("## Results");
        s.AppendLine();
        s.AppendLine("| Figure | Measured | Budget | Verdict | Against the bandwidth bound |");
        s.AppendLine("|---|---|---|---|---|");
        string Budget(string name) => r.Budgets.FirstOrDefault(b => b.Name == name) is { } b ? $"{(b.Name.StartsWith("min", StringComparison.Ordinal) ? "≥" : "≤")} {FormatValue(b.Limit, b.Unit)}" : "";
        string Verdict(string name) => r.Budgets.FirstOrDefault(b => b.Name == name) is { } b ? b.Status + (b.Marginal ? " (marginal)" : "") : "";
        s.AppendLine(C, $"| Prompt processing | {MeanSd(res.PromptTokensPerSecond, "tokens/s")} | | | |");
        s.AppendLine(C, $"| Generation | {MeanSd(res.GenTokensPerSecond, "tokens/s")} | {Budget("min_decode_tokens_per_s")} | {Verdict("min_decode_tokens_per_s")} | {r.Bound.GenPercentOfBound:0.#}% of {r.Bound.GenTokensPerSecondBound:0.#} tokens/s |");
        s.AppendLine(C, $"| Time to first token p50 / p95 / p99 | {res.TtftMs.P50:0.##} / {res.TtftMs.P95:0.##} / {res.TtftMs.P99:0.##} ms | {Budget("max_ttft_p95")} | {Verdict("max_ttft_p95")} | |");
        s.AppendLine(C, $"| Token latency p50 / p95 / p99 | {res.TokenLatencyMs.P50:0.###} / {res.TokenLatencyMs.P95:0.###} / {res.TokenLatencyMs.P99:0.###} ms | | | bound {r.Bound.TokenLatencyBoundMs:0.###} ms |");
        s.AppendLine(C, $"| Peak memory | {Units.FormatBytes(res.PeakMemoryBytes)} | {Budget("max_model_memory")} | {Verdict("max_model_memory")} | |");
        if (res.Power is { } p)
        {
            s.AppendLine(C, $"| Average power | {p.AverageWatts:0.##} W | {Budget("max_watts")} | {Verdict("max_watts")} | |");
            s.AppendLine(C, $"| Energy per generated token | {p.GenJoulesPerToken:0.####} J | | | |");
            if (p.PromptJoulesPerToken is { } pj) s.AppendLine(C, $"| Energy per prompt token | {pj:0.#####} J | | | |");
        }
        else s.AppendLine(C, $"| Average power | not measured: {Absent(r, "power")} | {Budget("max_watts")} | {Verdict("max_watts")} | |");
        if (res.TemperaturesC is { Count: > 0 } t)
            s.AppendLine(C, $"| Temperatures (max) | {string.Join(", ", t.Select(kv => $"{kv.Key} {kv.Value.Max:0.#} °C"))} | | | |");
        else s.AppendLine(C, $"| Temperatures | not measured: {Absent(r, "temperatures")} | | | |");
        if (res.GpuLoadPercent is { } g) s.AppendLine(C, $"| GPU load | {g:0.#}% | | | |");
        string throttle = res.Throttling.Noticed ? "**noticed**: " + string.Join("; ", res.Throttling.Events)
            : res.Throttling.Checked.Count > 0 ? "none noticed (checked " + string.Join("; ", res.Throttling.Checked) + ")"
            : "cannot be observed here (no thermal sensors)";
        s.AppendLine(C, $"| Throttling | {throttle}; generation drift first → last repetition {res.Throttling.GenDriftPercent:+0.#;-0.#;0}% | | | |");
        if (res.RuntimeReported is { } rr)
            s.AppendLine(C, $"| Runtime's own count | prompt {rr.PromptTokensPerSecond:0.#} tokens/s, generation {rr.GenTokensPerSecond:0.#} tokens/s | | | |");
        s.AppendLine();
        s.AppendLine(C, $"Bandwidth bound: {r.Bound.Basis}.");
        s.AppendLine();

        s.AppendLine("## Run-to-run spread");
        s.AppendLine();
        s.AppendLine(r.Spread.Verdict + ".");
        s.AppendLine();
        s.AppendLine("| Repetition | Prompt (ms) | TTFT (ms) | Generation (ms) | Prompt tokens/s | Generation tokens/s |");
        s.AppendLine("|---|---|---|---|---|---|");
        foreach (var rep in r.Repetitions)
            s.AppendLine(C, $"| {rep.Index + 1} | {rep.PromptMs:0.##} | {rep.TtftMs:0.##} | {rep.GenMs:0.##} | {rep.PromptTokensPerSecond:0.#} | {rep.GenTokensPerSecond:0.#} |");
        if (r.Notes.Count > 0)
        {
            s.AppendLine();
            s.AppendLine("## Notes");
            s.AppendLine();
            foreach (var n in r.Notes) s.AppendLine(C, $"- {n}");
        }
        if (r.Host.Sensors.Count > 0)
        {
            s.AppendLine();
            s.AppendLine("## Sensors");
            s.AppendLine();
            foreach (var n in r.Host.Sensors) s.AppendLine(C, $"- {n}");
        }
        return s.ToString();
    }

    public static string MeanSd(Summary x, string unit) => string.Create(C, $"{x.Mean:0.##} ± {x.StandardDeviation:0.##} {unit}");

    public static string FormatValue(double value, string unit) => unit switch
    {
        "bytes" => Units.FormatBytes(value),
        _ => value.ToString("0.##", C) + " " + unit,
    };

    private static string Absent(BenchReport r, string what) =>
        r.Host.Sensors.FirstOrDefault(s => s.StartsWith(what + ":", StringComparison.Ordinal)) is { } line ? line[(what.Length + 1)..].Trim() : "no sensor";

    internal static string Count(long n) => n switch
    {
        >= 1_000_000_000 => (n / 1e9).ToString("0.##", C) + " B",
        >= 1_000_000 => (n / 1e6).ToString("0.##", C) + " M",
        >= 1_000 => (n / 1e3).ToString("0.##", C) + " K",
        _ => n.ToString(C),
    };
}
