using EdgeTune.Core;
using EdgeTune.Evaluation.Metrics;
using EdgeTune.Evaluation.Runners;
using EdgeTune.Evaluation.Statistics;

namespace EdgeTune.Evaluation;

/// <summary>What the test split is judged on (from the recipe's [eval] table).</summary>
public sealed record ScoringOptions
{
    /// <summary>exact | classification | extraction | free_text.</summary>
    public string Task { get; init; } = "exact";
    /// <summary>Metric names; empty takes the task's defaults (<see cref="Scoring.Defaults"/>).</summary>
    public IReadOnlyList<string> Metrics { get; init; } = [];
    /// <summary>The metric the verdict is about; null: the first quality metric.</summary>
    public string? Primary { get; init; }
    public NormaliseOptions Normalise { get; init; } = NormaliseOptions.Default;
    /// <summary>The JSON field holding the label of an answer; null: the whole answer is the label.</summary>
    public string? LabelField { get; init; }
    public JsonSchemaSubset? Schema { get; init; }
    public ulong Seed { get; init; } = 1;
    public int Resamples { get; init; } = Stats.DefaultResamples;
}

public sealed record MetricResult(string Name, Interval Value, bool HigherIsBetter);

public sealed record RunnerResult(string Runner, string Description, int Examples, IReadOnlyList<MetricResult> Metrics,
    ConfusionMatrix? Confusion, IReadOnlyDictionary<string, double>? FieldAccuracy)
{
    public MetricResult? Metric(string name) => Metrics.FirstOrDefault(m => m.Name == name);
}

/// <summary>One metric as a function of example indices (so it can be bootstrapped), and per-example outcomes when binary.</summary>
public sealed record MetricSeries(string Name, bool HigherIsBetter, Func<IReadOnlyList<int>, double> Statistic, bool[]? Correct);

/// <summary>Computes the metrics of one runner's answers.</summary>
public static class Scoring
{
    public static readonly string[] Known =
        ["exact_match", "accuracy", "macro_f1", "json_valid", "schema_valid", "field_accuracy", "token_f1", "rouge_l", "nll", "perplexity", "latency_s", "tokens_per_s"];

    public static IReadOnlyList<string> Defaults(string task, bool schema) => task switch
    {
        "classification" => ["accuracy", "macro_f1", "nll"],
        "extraction" => schema ? ["json_valid", "schema_valid", "field_accuracy", "exact_match", "nll"] : ["json_valid", "field_accuracy", "exact_match", "nll"],
        "free_text" => ["rouge_l", "token_f1", "nll"],
        _ => ["exact_match", "token_f1", "nll"],
    };

    public static IReadOnlyList<string> MetricNames(ScoringOptions o)
    {
        var names = (o.Metrics.Count > 0 ? o.Metrics : Defaults(o.Task, o.Schema is not null)).ToList();
        foreach (var n in names)
            if (!Known.Contains(n)) throw new EdgeTuneException($"[eval] metrics: '{n}' is not a metric (choose among {string.Join(", ", Known)})");
        if (names.Contains("schema_valid") && o.Schema is null) throw new EdgeTuneException("[eval] metrics: schema_valid needs [eval] json_schema");
        return names;
    }

    public static string PrimaryMetric(ScoringOptions o) =>
        o.Primary ?? MetricNames(o).First(n => n is not ("nll" or "perplexity" or "latency_s" or "tokens_per_s"));

    public static string GoldLabel(RunnerAnswer a, ScoringOptions o) =>
        a.Label is { } l ? TextMetrics.Normalise(l, o.Normalise) : LabelMetrics.LabelOf(a.Reference, o.LabelField, o.Normalise);

    /// <summary>Every series of <paramref name="answers"/>: the requested metrics plus latency and tokens/s.</summary>
    public static List<MetricSeries> Series(IReadOnlyList<RunnerAnswer> answers, ScoringOptions o)
    {
        var names = MetricNames(o).ToList();
        foreach (var extra in new[] { "latency_s", "tokens_per_s" }) if (!names.Contains(extra)) names.Add(extra);
        var series = new List<MetricSeries>();
        foreach (var name in names)
        {
            switch (name)
            {
                case "exact_match":
                    series.Add(Binary(name, answers.Select(a => TextMetrics.ExactMatch(a.Text, a.Reference, o.Normalise)).ToArray()));
                    break;
                case "accuracy":
                    series.Add(Binary(name, answers.Select(a => LabelMetrics.LabelOf(a.Text, o.LabelField, o.Normalise) == GoldLabel(a, o)).ToArray()));
                    break;
                case "macro_f1":
                {
                    var pred = answers.Select(a => LabelMetrics.LabelOf(a.Text, o.LabelField, o.Normalise)).ToArray();
                    var gold = answers.Select(a => GoldLabel(a, o)).ToArray();
                    series.Add(new MetricSeries(name, true, idx => LabelMetrics.MacroF1(idx.Select(i => pred[i]).ToList(), idx.Select(i => gold[i]).ToList()), null));
                    break;
                }
                case "json_valid":
                    series.Add(Binary(name, answers.Select(a => Json.IsValid(a.Text)).ToArray()));
                    break;
                case "schema_valid":
                    series.Add(Binary(name, answers.Select(a => o.Schema!.IsValid(a.Text)).ToArray()));
                    break;
                case "field_accuracy":
                {
                    var fields = answers.Select(a => FieldMetrics.Fields(a.Text, a.Reference, o.Normalise)).ToArray();
                    series.Add(new MetricSeries(name, true, idx =>
                    {
                        int right = 0, all = 0;
                        foreach (int i in idx) { all += fields[i].Count; right += fields[i].Count(f => f.Correct); }
                        return all == 0 ? double.NaN : (double)right / all;
                    }, null));
                    break;
                }
                case "token_f1":
                    series.Add(Continuous(name, true, answers.Select(a => TextMetrics.TokenF1(a.Text, a.Reference)).ToArray()));
                    break;
                case "rouge_l":
                    series.Add(Continuous(name, true, answers.Select(a => TextMetrics.RougeL(a.Text, a.Reference)).ToArray()));
                    break;
                case "nll":
                case "perplexity":
                {
                    if (answers.Any(a => a.ReferenceNll is null)) break; // not scored (reference over the context): left out, not guessed
                    var nll = answers.Select(a => a.ReferenceNll!.Value).ToArray();
                    var tokens = answers.Select(a => a.ReferenceTokens).ToArray();
                    double PerToken(IReadOnlyList<int> idx) => idx.Sum(i => nll[i]) / idx.Sum(i => tokens[i]);
                    series.Add(name == "nll" ? new MetricSeries(name, false, PerToken, null) : new MetricSeries(name, false, idx => Math.Exp(PerToken(idx)), null));
                    break;
                }
                case "latency_s":
                    series.Add(Continuous(name, false, answers.Select(a => a.Seconds).ToArray()));
                    break;
                case "tokens_per_s":
                {
                    var gen = answers.Select(a => (double)a.GeneratedTokens).ToArray();
                    var sec = answers.Select(a => a.Seconds).ToArray();
                    series.Add(new MetricSeries(name, true, idx => idx.Sum(i => gen[i]) / Math.Max(1e-9, idx.Sum(i => sec[i])), null));
                    break;
                }
            }
        }
        return series;
    }

    private static MetricSeries Binary(string name, bool[] correct) =>
        new(name, true, idx => idx.Count(i => correct[i]) / (double)idx.Count, correct);

    private static MetricSeries Continuous(string name, bool higher, double[] values) =>
        new(name, higher, idx => Stats.Mean(values, idx), null);

    public static RunnerResult Score(string runner, string description, IReadOnlyList<RunnerAnswer> answers, ScoringOptions o)
    {
        var metrics = Series(answers, o).Select((s, k) =>
            new MetricResult(s.Name, Stats.Bootstrap(answers.Count, s.Statistic, o.Seed + (ulong)k, o.Resamples), s.HigherIsBetter)).ToList();
        ConfusionMatrix? confusion = null;
        if (o.Task == "classification" && answers.Count > 0)
            confusion = LabelMetrics.Confusion(answers.Select(a => LabelMetrics.LabelOf(a.Text, o.LabelField, o.Normalise)).ToList(),
                answers.Select(a => GoldLabel(a, o)).ToList());
        Dictionary<string, double>? perField = null;
        if (o.Task == "extraction")
        {
            perField = answers.SelectMany(a => FieldMetrics.Fields(a.Text, a.Reference, o.Normalise))
                .GroupBy(f => f.Field).OrderBy(g => g.Key, StringComparer.Ordinal)
                .ToDictionary(g => g.Key, g => g.Count(f => f.Correct) / (double)g.Count());
        }
        return new RunnerResult(runner, description, answers.Count, metrics, confusion, perField);
    }
}
