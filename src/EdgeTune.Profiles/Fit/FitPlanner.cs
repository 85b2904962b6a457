using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Gguf.Quantize;

namespace EdgeTune.Profiles.Fit;

/// <summary>How the model will run: context length, KV cache type, llama.cpp's micro-batch and flash attention.</summary>
public sealed record FitOptions
{
    public const int DefaultContext = 4096;

    /// <summary>Context length; null: 4096, or the model's trained context when that is shorter.</summary>
    public int? Context { get; init; }
    public GgmlType KvType { get; init; } = GgmlType.F16;
    public int MicroBatch { get; init; } = 512;

    /// <summary>llama.cpp's default ("auto") enables flash attention on the CPU and CUDA backends.</summary>
    public bool FlashAttention { get; init; } = true;
}

/// <summary>One quantisation type on the board: memory and the bandwidth bound on decode.</summary>
public sealed record FitRow
{
    /// <summary>llama-quantize's name (Q4_K_M, ...), or the file's own type for the first row.</summary>
    public required string Type { get; init; }

    /// <summary>True for the row of the file as it is: its weight bytes are the file's tensors, exactly.</summary>
    public required bool IsFile { get; init; }

    /// <summary>True when the file's tensors are already quantised and this type would re-quantise them (use the F16/F32 original).</summary>
    public required bool Requantizes { get; init; }
    public required long WeightBytes { get; init; }
    public required long AdapterBytes { get; init; }
    public required long KvCacheBytes { get; init; }
    public required long OverheadBytes { get; init; }
    public long TotalBytes => WeightBytes + AdapterBytes + KvCacheBytes + OverheadBytes;
    public required double BitsPerWeight { get; init; }

    /// <summary>Bytes one decode step reads at the full context: weights (one embedding row), adapter, KV cache.</summary>
    public required long BytesPerToken { get; init; }
    public required double DecodeBoundTokensPerSecond { get; init; }
    public required bool FitsMemory { get; init; }
    public required bool WithinMemoryBudget { get; init; }
    public required bool MeetsDecodeBudget { get; init; }
}

public sealed record FitReport(
    DeviceProfile Profile,
    ModelShape Model,
    AdapterShape? Adapter,
    int Context,
    FitOptions Options,
    IReadOnlyList<FitRow> Rows,
    FitRow? Recommended,
    string Reason);

/// <summary>
/// For each quantisation type: the weight bytes (exact for the file as it is; for other types the sum of
/// the per-tensor plan llama-quantize would make), the KV cache at the chosen context, llama.cpp's compute
/// buffers, the total against the profile's usable memory and memory budget, and the decode bound from
/// the memory bandwidth. Recommends the most precise type that fits and whose bound clears the decode budget.
/// </summary>
public static class FitPlanner
{
    /// <summary>
    /// One candidate's row from its bytes: what it holds in memory (weights, adapter, KV cache, runtime buffers), the
    /// bytes one decoded token reads, and the profile's checks on both (usable memory, memory budget, decode budget).
    /// </summary>
    public static FitRow Candidate(DeviceProfile profile, long parameters, string type, bool isFile, bool requantizes,
        long weightBytes, long adapterBytes, long kvBytes, long overheadBytes, long bytesPerToken)
    {
        double bound = MemoryMath.DecodeBound(profile.Memory.Bandwidth.Value, bytesPerToken);
        long total = weightBytes + adapterBytes + kvBytes + overheadBytes;
        return new FitRow
        {
            Type = type,
            IsFile = isFile,
            Requantizes = requantizes,
            WeightBytes = weightBytes,
            AdapterBytes = adapterBytes,
            KvCacheBytes = kvBytes,
            OverheadBytes = overheadBytes,
            BitsPerWeight = parameters == 0 ? 0 : weightBytes * 8.0 / parameters,
            BytesPerToken = bytesPerToken,
            DecodeBoundTokensPerSecond = bound,
            FitsMemory = total <= profile.Memory.UsableForModel.Value,
            WithinMemoryBudget = profile.Budgets.MaxModelMemory is not { } budget || total <= budget.Value,
            MeetsDecodeBudget = profile.Budgets.MinDecodeTokensPerSecond is not { } min || bound >= min.Value,
        };
    }

    public static FitReport Plan(DeviceProfile profile, string modelPath, string? adapterPath, FitOptions options)
    {
        if (!File.Exists(modelPath)) throw new EdgeTuneException($"{modelPath}: no such file");
        if (adapterPath is not null && !File.Exists(adapterPath)) throw new EdgeTuneException($"{adapterPath}: no such file");
        using var file = GgufFile.Open(modelPath);
        var model = ModelShape.Read(file);
        var adapter = adapterPath is null ? null : AdapterShape.Read(adapterPath);
        int context = options.Context ?? (model.TrainedContext > 0 ? Math.Min(FitOptions.DefaultContext, model.TrainedContext) : FitOptions.DefaultContext);
        if (context <= 0) throw new EdgeTuneException($"--context must be positive, got {context}");

        long kv = MemoryMath.KvCacheBytes(model, context, options.KvType);
        long overhead = MemoryMath.ComputeBufferBytes(model, context, options.MicroBatch, options.FlashAttention);
        long adapterBytes = adapter?.Bytes ?? 0;
        bool sourceQuantized = model.Tensors.Any(t => GgmlTypes.IsQuantized(t.Type));
        var fileType = EffectiveFileType(model);

        FitRow Row(string type, bool isFile, bool requantizes, IReadOnlyList<(string Name, long Bytes, long Rows)> tensors) =>
            Candidate(profile, model.Parameters, type, isFile, requantizes, tensors.Sum(t => t.Bytes), adapterBytes, kv, overhead,
                MemoryMath.WeightBytesReadPerToken(tensors) + adapterBytes + kv);

        var rows = new List<FitRow>
        {
            Row(FileTypeName(model), isFile: true, requantizes: false, model.Tensors.Select(t => (t.Name, t.ByteLength, t.RowCount)).ToList()),
        };
        var planned = new List<FitRow>();
        foreach (var (name, type, _) in LlamaFileTypes.All)
        {
            if (type == fileType) continue; // the file row already is this type, exactly
            var plan = QuantPlan.Create(file, type);
            bool requantizes = sourceQuantized && plan.Any(p => p.Converts && GgmlTypes.IsQuantized(p.Source.Type));
            planned.Add(Row(name, isFile: false, requantizes, plan.Select(p => (p.Source.Name, p.TargetBytes, p.Source.RowCount)).ToList()));
        }
        rows.AddRange(planned.OrderByDescending(r => r.WeightBytes).ThenBy(r => r.Type, StringComparer.Ordinal));

        var (recommended, reason) = Recommend(profile, rows);
        return new FitReport(profile, model, adapter, context, options, rows, recommended, reason);
    }

    /// <summary>
    /// The file's type: from its tensors when every matrix has one float type (files written by other tools
    /// do not always set general.file_type), else from general.file_type.
    /// </summary>
    public static LlamaFileType? EffectiveFileType(ModelShape model)
    {
        var types = model.Tensors.Where(t => t.Shape.Length >= 2).Select(t => t.Type).Distinct().ToList();
        return types switch
        {
            [GgmlType.F32] => LlamaFileType.AllF32,
            [GgmlType.F16] => LlamaFileType.MostlyF16,
            [GgmlType.BF16] => LlamaFileType.MostlyBF16,
            _ => model.FileType,
        };
    }

    public static string FileTypeName(ModelShape model) =>
        EffectiveFileType(model) is { } ft && LlamaFileTypes.All.Any(t => t.Type == ft) ? LlamaFileTypes.Name(ft) : "mixed";

    // F32 and BF16 are listed for reference but not recommended: F16 holds the same weights in as few bytes
    // as BF16 and half those of F32, and every runtime on the boards runs it.
    private static readonly HashSet<string> NotRecommended = ["F32", "BF16"];

    private static (FitRow? Row, string Reason) Recommend(DeviceProfile profile, IReadOnlyList<FitRow> rows)
    {
        var candidates = rows.Where(r => !NotRecommended.Contains(r.Type) && !r.Requantizes).ToList();
        var fitting = candidates.Where(r => r.FitsMemory && r.WithinMemoryBudget).ToList();
        string memoryLimit = profile.Budgets.MaxModelMemory is { } mb
            ? $"the {mb} memory budget"
            : $"the {profile.Memory.UsableForModel} usable memory";
        if (fitting.Count == 0)
            return (null, $"no type fits {memoryLimit} at this context; try a shorter --context, a smaller model, or a board with more memory");
        var fast = fitting.Where(r => r.MeetsDecodeBudget).ToList();
        if (fast.Count > 0)
        {
            var best = fast.MaxBy(r => r.WeightBytes)!;
            string speed = profile.Budgets.MinDecodeTokensPerSecond is { } min
                ? $" and whose decode bound ({best.DecodeBoundTokensPerSecond:0.#} tokens/s) clears the {min} budget"
                : "";
            return (best, $"the most precise type that fits {memoryLimit}{speed}; measure it with 'edgetune bench', real decode reaches part of the bound");
        }
        var fastest = fitting.MinBy(r => r.BytesPerToken)!;
        return (fastest, $"no type that fits reaches the {profile.Budgets.MinDecodeTokensPerSecond} decode budget even at its bandwidth bound; {fastest.Type} is the fastest that fits");
    }
}
