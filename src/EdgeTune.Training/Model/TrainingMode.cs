using EdgeTune.Recipes;

namespace EdgeTune.Training.Model;

/// <summary>What is trained and how the frozen base is stored.</summary>
public sealed record TrainingSetup
{
    public TuningMethod Method { get; init; } = TuningMethod.Lora;
    public int Rank { get; init; } = 16;
    public double Alpha { get; init; } = 32;
    public bool RsLora { get; init; }
    public double Dropout { get; init; }
    /// <summary>Short target names: q k v o gate up down.</summary>
    public IReadOnlyList<string> Targets { get; init; } = AdapterSection.AllTargets;
    /// <summary>QLoRA's base storage: nf4, q8_0, q4_0 or q4_k.</summary>
    public string BaseQuant { get; init; } = "nf4";
    public ulong Seed { get; init; } = 42;
    public bool ActivationCheckpointing { get; init; }
    /// <summary>Rows at the end of the vocabulary added by [model] add_tokens: trained under LoRA/QLoRA too.</summary>
    public int AddedTokens { get; init; }

    public double Scale => RsLora ? Alpha / Math.Sqrt(Rank) : Alpha / Rank;

    public static TrainingSetup From(Recipe r) => new()
    {
        Method = r.Adapter.Method,
        Rank = r.Adapter.Rank,
        Alpha = r.Adapter.Alpha,
        RsLora = r.Adapter.RsLora,
        Dropout = r.Adapter.Dropout,
        Targets = r.Adapter.Targets,
        BaseQuant = r.Adapter.BaseQuant,
        Seed = r.Train.Seed,
        ActivationCheckpointing = r.Train.ActivationCheckpointing,
    };

    /// <summary>Short target name → GGUF tensor stem.</summary>
    public static readonly IReadOnlyDictionary<string, string> Stems = new Dictionary<string, string>
    {
        ["q"] = "attn_q", ["k"] = "attn_k", ["v"] = "attn_v", ["o"] = "attn_output",
        ["gate"] = "ffn_gate", ["up"] = "ffn_up", ["down"] = "ffn_down",
    };
}
