using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Gguf.Quantize;

namespace EdgeTune.Profiles.Fit;

/// <summary>
/// What memory planning needs to know about a GGUF model: its hyper-parameters (from the architecture's
/// metadata keys) and its tensors with their exact byte lengths.
/// </summary>
public sealed record ModelShape
{
    public required string Path { get; init; }
    public required string Architecture { get; init; }
    public string? Name { get; init; }
    public LlamaFileType? FileType { get; init; }
    public required int Layers { get; init; }
    public required int Heads { get; init; }
    public required int KvHeads { get; init; }
    public required int KeyLength { get; init; }
    public required int ValueLength { get; init; }
    public required int Embedding { get; init; }
    public required int FeedForward { get; init; }
    public required int Vocabulary { get; init; }
    public required int TrainedContext { get; init; }
    public required IReadOnlyList<GgufTensorInfo> Tensors { get; init; }

    public long Parameters => Tensors.Sum(t => t.ElementCount);

    /// <summary>Bytes of every tensor as stored: what the weights occupy in memory.</summary>
    public long WeightBytes => Tensors.Sum(t => t.ByteLength);

    /// <summary>True when there is no output.weight and the token embedding doubles as the output matrix.</summary>
    public bool TiedEmbeddings => Tensors.All(t => t.Name != "output.weight");

    public static ModelShape Read(string path)
    {
        using var file = GgufFile.Open(path);
        return Read(file);
    }

    public static ModelShape Read(GgufFile model)
    {
        string arch = model.Architecture
            ?? throw FileFormatException.AtKey(model.Path, "general.architecture", "missing; cannot tell the model's shape");
        if (model.Metadata.GetString("general.type") == "adapter")
            throw new EdgeTuneException($"{model.Path}: this is a LoRA adapter, not a model; pass it with --adapter");

        int Int(string key, int? fallback = null)
        {
            var v = model.Metadata.Get($"{arch}.{key}");
            if (v is null) return fallback ?? throw FileFormatException.AtKey(model.Path, $"{arch}.{key}", "missing; needed to size the KV cache");
            try
            {
                // Some architectures store per-layer values as arrays (head_count_kv, feed_forward_length): the largest counts.
                long n = v.IsArray ? Max(v) : v.AsInt64();
                if (n < 0 || n > int.MaxValue) throw new OverflowException();
                return (int)n;
            }
            catch (Exception e) when (e is InvalidOperationException or OverflowException or InvalidCastException)
            {
                throw FileFormatException.AtKey(model.Path, $"{arch}.{key}", $"expected a non-negative integer, found {v.Describe()}");
            }
        }

        int embedding = Int("embedding_length");
        int heads = Int("attention.head_count");
        if (heads == 0) throw FileFormatException.AtKey(model.Path, $"{arch}.attention.head_count", "is 0");
        int layers = Int("block_count");
        if (layers == 0) throw FileFormatException.AtKey(model.Path, $"{arch}.block_count", "is 0");
        int headDim = embedding / heads;
        var embd = model.FindTensor("token_embd.weight");
        int vocabulary = embd is { Shape.Length: 2 } ? (int)embd.Shape[1]
            : model.Metadata.Get("tokenizer.ggml.tokens") is { IsArray: true, Value: string[] tokens } ? tokens.Length
            : Int("vocab_size", 0);
        LlamaFileType? fileType = model.Metadata.Get("general.file_type") is { } ft && !ft.IsArray ? (LlamaFileType)ft.AsInt64() : null;

        return new ModelShape
        {
            Path = model.Path,
            Architecture = arch,
            Name = model.Metadata.GetString("general.name"),
            FileType = fileType,
            Layers = layers,
            Heads = heads,
            KvHeads = Int("attention.head_count_kv", heads),
            KeyLength = Int("attention.key_length", headDim),
            ValueLength = Int("attention.value_length", headDim),
            Embedding = embedding,
            FeedForward = Int("feed_forward_length", 4 * embedding),
            Vocabulary = vocabulary,
            TrainedContext = Int("context_length", 0),
            Tensors = model.Tensors,
        };
    }

    private static long Max(GgufValue v) => v.Value switch
    {
        uint[] a when a.Length > 0 => a.Max(),
        int[] a when a.Length > 0 => a.Max(),
        ulong[] a when a.Length > 0 => checked((long)a.Max()),
        long[] a when a.Length > 0 => a.Max(),
        _ => throw new InvalidOperationException(),
    };
}

/// <summary>A GGUF LoRA adapter's size: its tensors stay separate from the model and are read every token.</summary>
public sealed record AdapterShape(string Path, long Bytes, long Parameters, int Rank)
{
    public static AdapterShape Read(string path)
    {
        using var file = GgufFile.Open(path);
        string? type = file.Metadata.GetString("general.type");
        if (type != "adapter" || file.Metadata.GetString("adapter.type") != "lora")
            throw FileFormatException.AtKey(path, "general.type", $"not a GGUF LoRA adapter (general.type = {type ?? "missing"}, adapter.type = {file.Metadata.GetString("adapter.type") ?? "missing"})");
        int rank = file.Tensors.Where(t => t.Name.EndsWith(".lora_b", StringComparison.Ordinal) && t.Shape.Length == 2)
            .Select(t => (int)t.Shape[0]).DefaultIfEmpty(0).Max();
        return new AdapterShape(path, file.Tensors.Sum(t => t.ByteLength), file.Tensors.Sum(t => t.ElementCount), rank);
    }
}
