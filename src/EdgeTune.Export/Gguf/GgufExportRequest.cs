using EdgeTune.Data;
using EdgeTune.Evaluation;
using EdgeTune.Evaluation.Runners;
using EdgeTune.Evaluation.Statistics;
using EdgeTune.Export.Licensing;
using EdgeTune.Profiles;
using EdgeTune.Profiles.Fit;

namespace EdgeTune.Export.Gguf;

/// <summary>Merged: the adapter merged into the weights (one file). Separate: the base quantised plus the GGUF adapter (hot-swappable).</summary>
public enum GgufExportMode { Merged, Separate }

/// <summary>What `edgetune export gguf` takes: the model, the device, the frozen test split and how it is scored, and the declared use.</summary>
public sealed record GgufExportRequest
{
    /// <summary>
    /// The GGUF candidate types of --type auto, most precise first (llama-quantize's names). A merged export adds
    /// <see cref="OnnxCandidate.Type"/> when the profile enables an ONNX Runtime.
    /// </summary>
    public static readonly IReadOnlyList<string> AutoCandidates = ["F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K"];

    /// <summary>The base model: a GGUF file (F32, F16 or quantised) or a Hugging Face folder (config.json, safetensors, tokenizer.json).</summary>
    public required string BaseModel { get; init; }
    /// <summary>Set by the exporter when <see cref="BaseModel"/> was a Hugging Face folder: that folder (BaseModel is then its float32 conversion).</summary>
    public string? HuggingFaceBase { get; init; }
    /// <summary>A LoRA adapter: a GGUF adapter or a PEFT folder; null exports the base alone.</summary>
    public string? Adapter { get; init; }
    public GgufExportMode Mode { get; init; } = GgufExportMode.Merged;
    /// <summary>"auto", "ONNX-int4" (<see cref="OnnxCandidate.Type"/>) or one of llama-quantize's names (F32, F16, Q8_0, Q4_K_M, ...).</summary>
    public string Type { get; init; } = "auto";
    public required DeviceProfile Profile { get; init; }
    /// <summary>Context the device runs at (KV cache sizing); null: FitPlanner's default.</summary>
    public int? Context { get; init; }
    public DeclaredUse Use { get; init; } = DeclaredUse.Commercial;
    /// <summary>Who accepted which terms for a licence EdgeTune does not know (written to the model card).</summary>
    public string? AcceptLicence { get; init; }
    /// <summary>The folder to write; must not exist or be empty. Written beside it and renamed into place at the end.</summary>
    public required string OutDir { get; init; }

    /// <summary>The frozen test split every candidate is scored on.</summary>
    public required string TestFile { get; init; }
    public FieldMapping Fields { get; init; } = FieldMapping.Default;
    /// <summary>A chat template overriding the model's (the recipe's [model] chat_template); written into the exported GGUF.</summary>
    public string? ChatTemplate { get; init; }
    public string? SystemPrompt { get; init; }
    public int MaxNewTokens { get; init; } = 256;
    public required ScoringOptions Scoring { get; init; }
    /// <summary>The recipe the export came from, recorded in export.json (its hash too).</summary>
    public string? RecipeFile { get; init; }
    /// <summary>llama.cpp threads (0: all cores).</summary>
    public int Threads { get; init; }
    /// <summary>Significance level of "worse than base + adapter beyond noise".</summary>
    public double Alpha { get; init; } = 0.05;
}

/// <summary>One row of the table: the type's fit on the device and, when it was scored, its metric against base + adapter.</summary>
public sealed record GgufCandidate(
    string Type,
    FitRow Fit,
    bool Fits,
    string? NotScoredBecause,
    RunnerResult? Score,
    PairedTest? VersusReference,
    bool? WorseBeyondNoise)
{
    public long TotalBytes => Fit.TotalBytes;
    /// <summary>What runs (and scored) the row: llama.cpp for GGUF types, <see cref="OnnxCandidate.Runtime"/> for the ONNX folder.</summary>
    public string Runtime { get; init; } = "llama.cpp";
}

/// <summary>What an export wrote and why it chose what it chose.</summary>
public sealed record GgufExportResult(
    string Folder,
    GgufExportMode Mode,
    string ChosenType,
    /// <summary>The shipped GGUF file, or the ONNX Runtime GenAI folder when <see cref="OnnxCandidate.Type"/> was chosen.</summary>
    string ModelFile,
    string? AdapterFile,
    /// <summary>The file's bytes, or the sum of the ONNX folder's files.</summary>
    long ModelFileBytes,
    long WeightBytes,
    string Reason,
    string PrimaryMetric,
    string ReferenceName,
    RunnerResult Reference,
    IReadOnlyList<GgufCandidate> Candidates,
    IReadOnlyList<string> Skipped,
    LicenceDecision Licence,
    int Context)
{
    /// <summary>A merged export's quantisation error against the merged float32 weights; null for F32 or a separate export.</summary>
    public RequantisationReport? Requantisation { get; init; }
}
