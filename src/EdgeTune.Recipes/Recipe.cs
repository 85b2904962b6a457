using EdgeTune.Core;
using EdgeTune.Profiles.Toml;

namespace EdgeTune.Recipes;

/// <summary>
/// A training recipe: what to tune (model), on what (data), how (adapter, train), where the run goes (output)
/// and how it is judged (eval). Only what differs from the defaults needs writing; the defaults per method
/// are documented on each section. Relative paths are relative to the recipe's folder.
/// </summary>
public sealed record Recipe
{
    public required string File { get; init; }
    public required ModelSection Model { get; init; }
    public required DataSection Data { get; init; }
    public required AdapterSection Adapter { get; init; }
    public required TrainSection Train { get; init; }
    public required OutputSection Output { get; init; }
    public required EvalSection Eval { get; init; }
    public BaselineSection Baseline { get; init; } = new();
    public ExportSection Export { get; init; } = new();
    /// <summary>[distill]: a teacher to distil from; null trains on the labels alone.</summary>
    public DistillSection? Distill { get; init; }

    private static readonly string[] Sections = ["model", "data", "adapter", "train", "output", "eval", "baseline", "export", "distill"];

    /// <summary>
    /// The base the run's adapter belongs to: with [model] add_tokens the run writes its own base.gguf (the vocabulary
    /// grown and the new rows trained); otherwise [model] base.
    /// </summary>
    public string AdapterBase => Model.AddTokens.Count > 0 ? Path.Combine(Output.Dir, AddedTokensBaseFile) : Model.Base;

    /// <summary>The file name of that base in the run folder.</summary>
    public const string AddedTokensBaseFile = "base.gguf";

    public static Recipe Load(string file)
    {
        if (!System.IO.File.Exists(file)) throw new EdgeTuneException($"{file}: no such recipe file");
        return Parse(System.IO.File.ReadAllText(file), file);
    }

    public static Recipe Parse(string text, string file)
    {
        var diagnostics = new List<ProfileDiagnostic>();
        var root = TomlDocument.Parse(text, file, diagnostics);
        if (diagnostics.Count > 0) throw new TomlConfigException(diagnostics[0].ToString());
        var top = new TomlSection("", root, SourceLocation.StartOf(file));
        top.RefuseUnknown(Sections);
        foreach (var (key, node) in root.Items)
            if (node is not TomlTableNode) throw TomlConfigException.At(node, key, $"expected a table [{key}], found {node.Describe()}");

        string dir = Path.GetDirectoryName(Path.GetFullPath(file))!;
        string Resolve(string p) => Path.GetFullPath(Path.Combine(dir, p));

        var adapter = AdapterSection.Read(top.Sub("adapter"));
        var output = OutputSection.Read(top.Sub("output"), Resolve, file);
        var distill = root.Items.Any(i => i.Key == "distill") ? DistillSection.Read(top.Sub("distill"), Resolve) : null;
        if (distill is { Logits: "" }) distill = distill with { Logits = Path.Combine(output.Dir, DistillSection.DefaultLogitsFile) };
        return new Recipe
        {
            File = file,
            Model = ModelSection.Read(top.Sub("model"), Resolve),
            Data = DataSection.Read(top.Sub("data"), Resolve),
            Adapter = adapter,
            Train = TrainSection.Read(top.Sub("train"), adapter.Method),
            Output = output,
            Eval = EvalSection.Read(top.Sub("eval"), Resolve),
            Distill = distill,
            Baseline = BaselineSection.Read(top.Sub("baseline"), Resolve),
            Export = ExportSection.Read(top.Sub("export")),
        };
    }
}

/// <summary>[model]: the base to tune.</summary>
public sealed record ModelSection
{
    /// <summary>A GGUF file or a Hugging Face folder (config.json, safetensors, tokenizer.json).</summary>
    public required string Base { get; init; }
    /// <summary>A chat template (Jinja text) overriding the model's own; null uses the model's.</summary>
    public string? ChatTemplate { get; init; }
    /// <summary>
    /// Special tokens added to the vocabulary (the chat template's markers when the base has them only as text):
    /// the embedding and output rows grow, the new rows are trained (LoRA too), and the run writes the resized base
    /// the adapter belongs to, with the markers as control tokens llama.cpp ends generation at.
    /// </summary>
    public IReadOnlyList<string> AddTokens { get; init; } = [];

    internal static ModelSection Read(TomlSection s, Func<string, string> resolve)
    {
        s.RefuseUnknown(["base", "chat_template", "add_tokens"]);
        var add = s.Strings("add_tokens") ?? [];
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var token in add)
        {
            if (token.Length == 0 || token.Any(char.IsWhiteSpace))
                throw s.Error("add_tokens", $"\"{token}\" cannot be a special token (empty or containing whitespace)");
            if (!seen.Add(token)) throw s.Error("add_tokens", $"\"{token}\" is listed twice");
        }
        return new ModelSection
        {
            Base = resolve(s.RequiredString("base", "a GGUF file or a Hugging Face folder")),
            ChatTemplate = s.String("chat_template"),
            AddTokens = add,
        };
    }
}

/// <summary>[data]: JSONL in any format the data pipeline reads (Alpaca, chat messages, prompt/response or prompt/completion).</summary>
public sealed record DataSection
{
    public required string Train { get; init; }
    public string? Eval { get; init; }
    public string? Test { get; init; }
    /// <summary>Field mapping for other names, "target=source" as `data check --map` takes it.</summary>
    public IReadOnlyList<string> Map { get; init; } = [];
    /// <summary>Train on prompt tokens too (default: responses only, end-of-turn included).</summary>
    public bool TrainOnInputs { get; init; }

    internal static DataSection Read(TomlSection s, Func<string, string> resolve)
    {
        s.RefuseUnknown(["train", "eval", "test", "map", "train_on_inputs"]);
        return new DataSection
        {
            Train = resolve(s.RequiredString("train", "the training JSONL")),
            Eval = s.String("eval") is { Length: > 0 } e ? resolve(e) : null,
            Test = s.String("test") is { Length: > 0 } t ? resolve(t) : null,
            Map = s.Strings("map") ?? [],
            TrainOnInputs = s.Bool("train_on_inputs") ?? false,
        };
    }
}

public enum TuningMethod { Lora, Qlora, Full }

/// <summary>
/// [adapter]: method and LoRA shape. Defaults follow PEFT/QLoRA practice: rank 16, alpha 32 (scale 2),
/// dropout 0.05, all seven linear targets (QLoRA's finding: adapting every linear layer is what matches full
/// fine-tuning), NF4 base with double quantisation for qlora.
/// </summary>
public sealed record AdapterSection
{
    public static readonly string[] AllTargets = ["q", "k", "v", "o", "gate", "up", "down"];

    public TuningMethod Method { get; init; } = TuningMethod.Lora;
    public int Rank { get; init; } = 16;
    public double Alpha { get; init; } = 32;
    public double Dropout { get; init; } = 0.05;
    public IReadOnlyList<string> Targets { get; init; } = AllTargets;
    /// <summary>rsLoRA: scale alpha/√rank instead of alpha/rank.</summary>
    public bool RsLora { get; init; }
    /// <summary>QLoRA's frozen base: nf4 (QLoRA) or a GGUF type as it will ship (q8_0, q4_0, q4_k).</summary>
    public string BaseQuant { get; init; } = "nf4";

    public double Scale => RsLora ? Alpha / Math.Sqrt(Rank) : Alpha / Rank;

    internal static AdapterSection Read(TomlSection s)
    {
        s.RefuseUnknown(["method", "rank", "alpha", "dropout", "targets", "rslora", "base_quant"]);
        var d = new AdapterSection();
        var method = s.Choice("method", "lora", "qlora", "full") switch
        {
            "qlora" => TuningMethod.Qlora,
            "full" => TuningMethod.Full,
            _ => TuningMethod.Lora,
        };
        int rank = s.Int("rank", 1, 4096) ?? d.Rank;
        var targets = s.Strings("targets") ?? d.Targets;
        foreach (var t in targets)
            if (!AllTargets.Contains(t)) throw s.Error("targets", $"'{t}' is not a target (choose among {string.Join(", ", AllTargets)})");
        if (targets.Count == 0 && method != TuningMethod.Full) throw s.Error("targets", "at least one target is needed");
        return new AdapterSection
        {
            Method = method,
            Rank = rank,
            Alpha = s.Number("alpha", 1e-6, 1e6) ?? 2.0 * rank,
            Dropout = s.Number("dropout", 0, 0.9) ?? d.Dropout,
            Targets = targets.Distinct().ToList(),
            RsLora = s.Bool("rslora") ?? false,
            BaseQuant = s.Choice("base_quant", "nf4", "q8_0", "q4_0", "q4_k") ?? d.BaseQuant,
        };
    }
}

public enum LrSchedule { Cosine, Linear, Constant }

/// <summary>
/// [train]: the optimisation. Defaults per method: lr 2e-4 for lora/qlora (PEFT and QLoRA practice), 2e-5 for
/// full fine-tuning; warm-up 3% of the steps then cosine decay to 0; AdamW β=(0.9, 0.999), ε=1e-8, weight decay
/// 0; gradient clipping at norm 1.0 (0.3 for qlora, as the QLoRA paper used).
/// </summary>
public sealed record TrainSection
{
    public double LearningRate { get; init; }
    public int Epochs { get; init; } = 3;
    /// <summary>Optimizer steps; when given it overrides epochs.</summary>
    public int? MaxSteps { get; init; }
    public int BatchSize { get; init; } = 4;
    public int GradientAccumulation { get; init; } = 1;
    public int MaxSeqLen { get; init; } = 512;
    public ulong Seed { get; init; } = 42;
    public double WarmupRatio { get; init; } = 0.03;
    public int? WarmupSteps { get; init; }
    public LrSchedule Schedule { get; init; } = LrSchedule.Cosine;
    public double WeightDecay { get; init; }
    public double MaxGradNorm { get; init; } = 1.0;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.999;
    public double AdamEpsilon { get; init; } = 1e-8;
    /// <summary>Save a resumable checkpoint every N optimizer steps (0: only at the end).</summary>
    public int CheckpointEvery { get; init; } = 100;
    /// <summary>Evaluate on [data].eval every N steps (0: once per epoch).</summary>
    public int EvalEvery { get; init; }
    /// <summary>Stop after this many evaluations without improvement (0: off).</summary>
    public int EarlyStoppingPatience { get; init; }
    /// <summary>auto (CUDA when present, else CPU), cuda or cpu.</summary>
    public string Device { get; init; } = "auto";
    /// <summary>CPU threads (0: all cores).</summary>
    public int Threads { get; init; }
    /// <summary>Recompute each block's activations in backward instead of keeping them.</summary>
    public bool ActivationCheckpointing { get; init; }
    /// <summary>A loss above this multiple of the running mean (after the first steps) stops the run.</summary>
    public double ExplodeFactor { get; init; } = 10;
    /// <summary>
    /// Sequence packing: each micro-batch's examples share sequences of up to <see cref="PackedLength"/> tokens,
    /// attention never crossing an example and positions restarting per example; the same examples and steps as
    /// without it, without the padding.
    /// </summary>
    public bool Packing { get; init; }
    /// <summary>
    /// The longest packed sequence; null: batch_size × max_seq_len, so a micro-batch's examples go back to back in one
    /// sequence (attention cost follows the examples, not the sequence, so a long one costs nothing extra).
    /// </summary>
    public int? PackedLength { get; init; }

    internal static TrainSection Read(TomlSection s, TuningMethod method)
    {
        s.RefuseUnknown(["learning_rate", "epochs", "max_steps", "batch_size", "gradient_accumulation", "max_seq_len", "seed",
            "warmup_ratio", "warmup_steps", "schedule", "weight_decay", "max_grad_norm", "adam_beta1", "adam_beta2", "adam_epsilon",
            "checkpoint_every", "eval_every", "early_stopping_patience", "device", "threads", "activation_checkpointing", "explode_factor", "packing", "packed_length"]);
        var d = new TrainSection();
        int maxSeqLen = s.Int("max_seq_len", 2, 1 << 20) ?? d.MaxSeqLen;
        if (s.Int("packed_length", 2, 1 << 24) is { } packed && packed < maxSeqLen)
            throw s.Error("packed_length", $"{packed} is below max_seq_len ({maxSeqLen}): a packed sequence must hold the longest example");
        return new TrainSection
        {
            LearningRate = s.Number("learning_rate", 1e-12, 10) ?? (method == TuningMethod.Full ? 2e-5 : 2e-4),
            Epochs = s.Int("epochs", 1, 100_000) ?? d.Epochs,
            MaxSteps = s.Int("max_steps", 1, int.MaxValue),
            BatchSize = s.Int("batch_size", 1, 65_536) ?? d.BatchSize,
            GradientAccumulation = s.Int("gradient_accumulation", 1, 65_536) ?? d.GradientAccumulation,
            MaxSeqLen = maxSeqLen,
            Seed = (ulong)(s.Integer("seed", 0, long.MaxValue) ?? (long)d.Seed),
            WarmupRatio = s.Number("warmup_ratio", 0, 1) ?? d.WarmupRatio,
            WarmupSteps = s.Int("warmup_steps", 0, int.MaxValue),
            Schedule = s.Choice("schedule", "cosine", "linear", "constant") switch
            {
                "linear" => LrSchedule.Linear,
                "constant" => LrSchedule.Constant,
                _ => LrSchedule.Cosine,
            },
            WeightDecay = s.Number("weight_decay", 0, 10) ?? d.WeightDecay,
            MaxGradNorm = s.Number("max_grad_norm", 0, 1e6) ?? (method == TuningMethod.Qlora ? 0.3 : d.MaxGradNorm),
            Beta1 = s.Number("adam_beta1", 0, 0.999999) ?? d.Beta1,
            Beta2 = s.Number("adam_beta2", 0, 0.999999999) ?? d.Beta2,
            AdamEpsilon = s.Number("adam_epsilon", 1e-30, 1) ?? d.AdamEpsilon,
            CheckpointEvery = s.Int("checkpoint_every", 0, int.MaxValue) ?? d.CheckpointEvery,
            EvalEvery = s.Int("eval_every", 0, int.MaxValue) ?? d.EvalEvery,
            EarlyStoppingPatience = s.Int("early_stopping_patience", 0, 100_000) ?? d.EarlyStoppingPatience,
            Device = s.Choice("device", "auto", "cuda", "cpu") ?? d.Device,
            Threads = s.Int("threads", 0, 4096) ?? d.Threads,
            ActivationCheckpointing = s.Bool("activation_checkpointing") ?? false,
            ExplodeFactor = s.Number("explode_factor", 1.5, 1e9) ?? d.ExplodeFactor,
            Packing = s.Bool("packing") ?? false,
            PackedLength = s.Int("packed_length", 2, 1 << 24),
        };
    }
}

/// <summary>[output]: the run folder (default: runs/&lt;recipe file name&gt; beside the recipe).</summary>
public sealed record OutputSection
{
    public required string Dir { get; init; }

    internal static OutputSection Read(TomlSection s, Func<string, string> resolve, string recipeFile)
    {
        s.RefuseUnknown(["dir"]);
        return new OutputSection { Dir = resolve(s.String("dir") is { Length: > 0 } d ? d : Path.Combine("runs", Path.GetFileNameWithoutExtension(recipeFile))) };
    }
}

public enum DistillLoss { ForwardKl, ReverseKl, Jsd }

/// <summary>
/// [distill]: knowledge distillation from a teacher sharing the student's tokenizer. The loss is
/// (1 − alpha)·CE(labels) + alpha·T²·D(teacher ‖ student) over the teacher's top_k tokens per response position,
/// D = forward KL (default), reverse KL or the generalised JSD with beta. The teacher's top-k log-probabilities are
/// computed once (edgetune distill teacher) into <see cref="Logits"/> and reused while the data, teacher and template
/// stay the same.
/// </summary>
public sealed record DistillSection
{
    /// <summary>A GGUF file (run by llama.cpp, any quantisation) or a Hugging Face folder (run by EdgeTune's engine).</summary>
    public required string Teacher { get; init; }
    /// <summary>A LoRA adapter (GGUF for a GGUF teacher, PEFT folder or GGUF for a folder) applied to the teacher.</summary>
    public string? TeacherAdapter { get; init; }
    public DistillLoss Loss { get; init; } = DistillLoss.ForwardKl;
    /// <summary>The generalised JSD's β (jsd only): 0 is forward KL, 1 reverse KL.</summary>
    public double Beta { get; init; } = 0.5;
    public double Temperature { get; init; } = 1.0;
    /// <summary>The weight of the distillation term; 1 − alpha weighs the cross-entropy to the labels.</summary>
    public double Alpha { get; init; } = 0.5;
    public int TopK { get; init; } = 64;
    /// <summary>The teacher's top-k file (default: teacher-topk.bin in the run folder).</summary>
    public required string Logits { get; init; }

    public const string DefaultLogitsFile = "teacher-topk.bin";

    private TomlSection? _section;

    /// <summary>An error at one of the section's keys (file:line when the key is written), for checks that need the models.</summary>
    public TomlConfigException Error(string key, string message) =>
        _section?.Error(key, message) ?? new TomlConfigException($"[distill].{key}: {message}");

    internal static DistillSection Read(TomlSection s, Func<string, string> resolve)
    {
        s.RefuseUnknown(["teacher", "teacher_adapter", "loss", "beta", "temperature", "alpha", "top_k", "logits"]);
        var d = new DistillSection { Teacher = "", Logits = "" };
        var loss = s.Choice("loss", "forward_kl", "reverse_kl", "jsd") switch
        {
            "reverse_kl" => DistillLoss.ReverseKl,
            "jsd" => DistillLoss.Jsd,
            _ => DistillLoss.ForwardKl,
        };
        if (s.Has("beta") && loss != DistillLoss.Jsd) throw s.Error("beta", "beta applies to loss = \"jsd\" only");
        return new DistillSection
        {
            Teacher = resolve(s.RequiredString("teacher", "the teacher: a GGUF file or a Hugging Face folder")),
            TeacherAdapter = s.String("teacher_adapter") is { Length: > 0 } a ? resolve(a) : null,
            Loss = loss,
            Beta = s.Number("beta", 0, 1) ?? d.Beta,
            Temperature = s.Number("temperature", 1e-3, 1e3) ?? d.Temperature,
            Alpha = s.Number("alpha", 0, 1) ?? d.Alpha,
            TopK = s.Int("top_k", 1, 1 << 20) ?? d.TopK,
            Logits = s.String("logits") is { Length: > 0 } l ? resolve(l) : "",
            _section = s,
        };
    }
}

/// <summary>
/// [export]: what `edgetune export gguf` needs beyond the model and the test split. <c>use</c> is the declared use the
/// base model's licence is checked against: commercial (the default, the strictest), internal or research.
/// </summary>
public sealed record ExportSection
{
    public static readonly string[] Uses = ["commercial", "internal", "research"];

    public string Use { get; init; } = "commercial";

    internal static ExportSection Read(TomlSection s)
    {
        s.RefuseUnknown(["use"]);
        return new ExportSection { Use = s.Choice("use", Uses)?.ToLowerInvariant() ?? "commercial" };
    }
}
