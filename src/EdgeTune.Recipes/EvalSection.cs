using EdgeTune.Profiles.Toml;

namespace EdgeTune.Recipes;

/// <summary>
/// [eval]: how the held-out test split is judged (read by `edgetune baseline` and `edgetune eval`).
/// </summary>
public sealed record EvalSection
{
    /// <summary>The test split; defaults to [data].test.</summary>
    public string? Test { get; init; }
    /// <summary>exact | classification | extraction | free_text.</summary>
    public string Task { get; init; } = "exact";
    /// <summary>Metric names; empty takes the task's defaults.</summary>
    public IReadOnlyList<string> Metrics { get; init; } = [];
    public string? SystemPrompt { get; init; }
    /// <summary>Few-shot examples drawn from the training split for the prompt baseline.</summary>
    public int FewShot { get; init; } = 3;
    public int MaxNewTokens { get; init; } = 256;
    /// <summary>The metric and value the product needs (baseline says whether tuning looks warranted).</summary>
    public string? TargetMetric { get; init; }
    public double? TargetValue { get; init; }
    /// <summary>The metric the verdict is about; default: the first quality metric of the list.</summary>
    public string? PrimaryMetric { get; init; }
    /// <summary>The JSON field of an answer holding its label (classification); default: the whole answer.</summary>
    public string? LabelField { get; init; }
    /// <summary>Answer normalisation before exact match and label comparison.</summary>
    public bool Trim { get; init; } = true;
    public bool IgnoreCase { get; init; }
    public bool CollapseWhitespace { get; init; } = true;
    public bool JsonCanonical { get; init; }
    /// <summary>A JSON schema (the supported subset) that extraction answers must satisfy.</summary>
    public string? JsonSchema { get; init; }
    /// <summary>General text for the forgetting check; default: the text EdgeTune ships.</summary>
    public string? GeneralText { get; init; }
    /// <summary>Seed of the few-shot draw and of the bootstrap.</summary>
    public ulong Seed { get; init; } = 1;
    public int BootstrapResamples { get; init; } = 2000;

    /// <summary>The raw table, for keys a later reader adds.</summary>
    public TomlSection Section { get; init; } = new("eval", null, default);

    /// <summary>The metric names evaluation computes (EdgeTune.Evaluation.Scoring.Known).</summary>
    public static readonly string[] KnownMetrics =
        ["exact_match", "accuracy", "macro_f1", "json_valid", "schema_valid", "field_accuracy", "token_f1", "rouge_l", "nll", "perplexity", "latency_s", "tokens_per_s"];

    internal static EvalSection Read(TomlSection s, Func<string, string> resolve)
    {
        s.RefuseUnknown(["test", "task", "metrics", "system_prompt", "few_shot", "max_new_tokens", "target_metric", "target_value",
            "primary_metric", "label_field", "trim", "ignore_case", "collapse_whitespace", "json_canonical", "json_schema", "general_text",
            "seed", "bootstrap_resamples"]);
        var d = new EvalSection();
        foreach (var m in s.Strings("metrics") ?? [])
            if (!KnownMetrics.Contains(m)) throw s.Error("metrics", $"'{m}' is not a metric (choose among {string.Join(", ", KnownMetrics)})");
        foreach (var key in new[] { "primary_metric", "target_metric" })
            if (s.String(key) is { } m && !KnownMetrics.Contains(m)) throw s.Error(key, $"'{m}' is not a metric (choose among {string.Join(", ", KnownMetrics)})");
        return new EvalSection
        {
            Test = s.String("test") is { Length: > 0 } t ? resolve(t) : null,
            Task = s.Choice("task", "exact", "classification", "extraction", "free_text") ?? d.Task,
            Metrics = s.Strings("metrics") ?? [],
            SystemPrompt = s.String("system_prompt"),
            FewShot = s.Int("few_shot", 0, 1000) ?? d.FewShot,
            MaxNewTokens = s.Int("max_new_tokens", 1, 1 << 20) ?? d.MaxNewTokens,
            TargetMetric = s.String("target_metric"),
            TargetValue = s.Number("target_value", double.MinValue, double.MaxValue),
            PrimaryMetric = s.String("primary_metric"),
            LabelField = s.String("label_field"),
            Trim = s.Bool("trim") ?? d.Trim,
            IgnoreCase = s.Bool("ignore_case") ?? false,
            CollapseWhitespace = s.Bool("collapse_whitespace") ?? d.CollapseWhitespace,
            JsonCanonical = s.Bool("json_canonical") ?? false,
            JsonSchema = s.String("json_schema") is { Length: > 0 } j ? resolve(j) : null,
            GeneralText = s.String("general_text") is { Length: > 0 } g ? resolve(g) : null,
            Seed = (ulong)(s.Integer("seed", 0, long.MaxValue) ?? 1),
            BootstrapResamples = s.Int("bootstrap_resamples", 100, 1_000_000) ?? d.BootstrapResamples,
            Section = s,
        };
    }
}
