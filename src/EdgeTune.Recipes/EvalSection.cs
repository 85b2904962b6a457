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

    /// <summary>The raw table, for keys a later reader adds.</summary>
    public TomlSection Section { get; init; } = new("eval", null, default);

    internal static EvalSection Read(TomlSection s, Func<string, string> resolve)
    {
        s.RefuseUnknown(["test", "task", "metrics", "system_prompt", "few_shot", "max_new_tokens", "target_metric", "target_value"]);
        var d = new EvalSection();
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
            Section = s,
        };
    }
}
