using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Formats.Gguf;

namespace EdgeTune.Models.Architectures;

/// <summary>
/// Llama 3 rope scaling (config.json rope_scaling with rope_type "llama3"): low frequencies are slowed by
/// <see cref="Factor"/>, high ones kept, the band between interpolated (transformers' _compute_llama3_parameters).
/// </summary>
public sealed record Llama3RopeScaling(double Factor, double LowFreqFactor, double HighFreqFactor, int OriginalContextLength)
{
    /// <summary>
    /// One divisor per rotary pair (head_dim / 2 values): the rope_freqs tensor convert_hf_to_gguf.py writes,
    /// which llama.cpp divides each frequency by. Computed in double, stored as float32 as the converter does.
    /// Note: convert_hf_to_gguf.py reads original_max_position_embeddings from the top level of config.json
    /// (default 8192); we take it from rope_scaling, where transformers reads it, so both agree with HF.
    /// </summary>
    public float[] FrequencyFactors(double ropeTheta, int headDim)
    {
        var factors = new float[headDim / 2];
        double lowFreqWavelen = OriginalContextLength / LowFreqFactor;
        double highFreqWavelen = OriginalContextLength / HighFreqFactor;
        for (int i = 0; i < factors.Length; i++)
        {
            // convert_hf_to_gguf computes freqs in float32 (torch.arange(...)/dim, base ** that).
            double freq = 1.0 / Math.Pow(ropeTheta, (float)(2.0 * i / headDim));
            double wavelen = 2 * Math.PI / freq;
            if (wavelen < highFreqWavelen) factors[i] = 1f;
            else if (wavelen > lowFreqWavelen) factors[i] = (float)Factor;
            else
            {
                double smooth = (OriginalContextLength / wavelen - LowFreqFactor) / (HighFreqFactor - LowFreqFactor);
                factors[i] = (float)(1.0 / ((1 - smooth) / Factor + smooth));
            }
        }
        return factors;
    }
}

/// <summary>
/// An architecture-neutral description of a llama-family decoder, read from Hugging Face config.json or
/// GGUF metadata. <see cref="Architecture"/> is llama.cpp's name of the graph ("llama" or "qwen2");
/// <see cref="HfModelType"/> keeps the Hugging Face model_type ("llama", "mistral", "qwen2").
/// </summary>
public sealed record ModelConfig
{
    public required string Architecture { get; init; }
    public required string HfModelType { get; init; }
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int Layers { get; init; }
    public required int Heads { get; init; }
    public required int KvHeads { get; init; }
    public required int HeadDim { get; init; }
    public required int IntermediateSize { get; init; }
    public required double RmsEpsilon { get; init; }
    public required double RopeTheta { get; init; }
    public Llama3RopeScaling? RopeScaling { get; init; }
    public required bool TiedEmbeddings { get; init; }
    /// <summary>q/k/v projections carry biases (always for qwen2; llama's attention_bias).</summary>
    public required bool AttentionBias { get; init; }
    public required int ContextLength { get; init; }
    public int? BosTokenId { get; init; }
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];

    /// <summary>Query heads per key/value head (1 for plain multi-head attention).</summary>
    public int GroupSize => Heads / KvHeads;
    public int QDim => Heads * HeadDim;
    public int KvDim => KvHeads * HeadDim;

    /// <summary>The GGUF key prefix (llama.cpp's LLM_KV_* use the architecture name).</summary>
    public string GgufPrefix => Architecture;

    /// <summary>
    /// True when llama.cpp runs this architecture with the "normal" (interleaved-pairs) rope, which is why
    /// convert_hf_to_gguf.py permutes Q and K rows for it; qwen2 uses the NeoX (rotate_half) rope unpermuted.
    /// </summary>
    public bool GgufPermutesQk => Architecture == "llama";

    /// <summary>HF model_type → llama.cpp architecture. Mistral runs on llama.cpp's llama graph (convert_hf_to_gguf.py MistralModel).</summary>
    private static readonly Dictionary<string, string> ArchitectureOfModelType = new(StringComparer.Ordinal)
    {
        ["llama"] = "llama",
        ["mistral"] = "llama",
        ["qwen2"] = "qwen2",
    };

    /// <summary>Read config.json (a file, or the folder holding it).</summary>
    public static ModelConfig FromHuggingFace(string configPathOrFolder)
    {
        string path = Directory.Exists(configPathOrFolder) ? Path.Combine(configPathOrFolder, "config.json") : configPathOrFolder;
        if (!File.Exists(path)) throw new EdgeTuneException($"{path}: no such file (a Hugging Face checkpoint needs config.json)");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(path)); }
        catch (JsonException e) { throw FileFormatException.AtOffset(path, e.BytePositionInLine ?? 0, $"not valid JSON (line {e.LineNumber + 1}): {e.Message.Split('\n')[0]}"); }
        using (doc) return FromHuggingFace(path, doc.RootElement);
    }

    private static ModelConfig FromHuggingFace(string path, JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object) throw FileFormatException.AtOffset(path, 0, "config.json must be a JSON object");
        var j = new JsonKeys(path, root);
        string modelType = j.String("model_type");
        if (!ArchitectureOfModelType.TryGetValue(modelType, out var arch))
            throw FileFormatException.AtKey(path, "model_type", $"unknown architecture '{modelType}' (supported: {string.Join(", ", ArchitectureOfModelType.Keys)})");
        string act = j.OptionalString("hidden_act") ?? "silu";
        if (act != "silu") throw FileFormatException.AtKey(path, "hidden_act", $"'{act}' is not supported (the llama family uses silu)");
        if (j.OptionalBool("mlp_bias") == true) throw FileFormatException.AtKey(path, "mlp_bias", "MLP biases are not supported");

        int hidden = j.PositiveInt("hidden_size");
        int heads = j.PositiveInt("num_attention_heads");
        int kvHeads = j.OptionalPositiveInt("num_key_value_heads") ?? heads;
        int? headDim = j.OptionalPositiveInt("head_dim");
        if (headDim is null && hidden % heads != 0)
            throw FileFormatException.AtKey(path, "hidden_size", $"{hidden} is not divisible by num_attention_heads {heads}");
        if (heads % kvHeads != 0)
            throw FileFormatException.AtKey(path, "num_key_value_heads", $"{kvHeads} does not divide num_attention_heads {heads}");
        int dim = headDim ?? hidden / heads;
        if (dim % 2 != 0) throw FileFormatException.AtKey(path, headDim is null ? "hidden_size" : "head_dim", $"head dimension {dim} is odd; rope needs pairs");
        double theta = j.OptionalPositiveNumber("rope_theta") ?? 10000.0;

        return new ModelConfig
        {
            Architecture = arch,
            HfModelType = modelType,
            VocabSize = j.PositiveInt("vocab_size"),
            HiddenSize = hidden,
            Layers = j.PositiveInt("num_hidden_layers"),
            Heads = heads,
            KvHeads = kvHeads,
            HeadDim = dim,
            IntermediateSize = j.PositiveInt("intermediate_size"),
            // transformers' defaults: LlamaConfig/MistralConfig/Qwen2Config all use 1e-6.
            RmsEpsilon = j.OptionalPositiveNumber("rms_norm_eps") ?? 1e-6,
            RopeTheta = theta,
            RopeScaling = ReadRopeScaling(j, root),
            TiedEmbeddings = j.OptionalBool("tie_word_embeddings") ?? false,
            AttentionBias = arch == "qwen2" || (j.OptionalBool("attention_bias") ?? false),
            ContextLength = j.OptionalPositiveInt("max_position_embeddings") ?? (modelType == "llama" ? 2048 : 32768),
            BosTokenId = j.OptionalInt("bos_token_id"),
            EosTokenIds = j.OptionalIntOrList("eos_token_id"),
        };
    }

    private static Llama3RopeScaling? ReadRopeScaling(JsonKeys j, JsonElement root)
    {
        if (!root.TryGetProperty("rope_scaling", out var rs) || rs.ValueKind == JsonValueKind.Null) return null;
        if (rs.ValueKind != JsonValueKind.Object) throw FileFormatException.AtKey(j.Path, "rope_scaling", "must be an object or null");
        var s = new JsonKeys(j.Path, rs, "rope_scaling.");
        string type = s.OptionalString("rope_type") ?? s.OptionalString("type") ?? "";
        if (type == "default") return null;
        if (type != "llama3")
            throw FileFormatException.AtKey(j.Path, "rope_scaling.rope_type", $"'{type}' is not supported (supported: llama3)");
        double low = s.OptionalPositiveNumber("low_freq_factor") ?? 1.0, high = s.OptionalPositiveNumber("high_freq_factor") ?? 4.0;
        if (high <= low) throw FileFormatException.AtKey(j.Path, "rope_scaling.high_freq_factor", $"{high} must exceed low_freq_factor {low}");
        return new Llama3RopeScaling(
            s.PositiveNumber("factor"), low, high,
            s.OptionalPositiveInt("original_max_position_embeddings") ?? 8192);
    }

    /// <summary>
    /// Read a GGUF's metadata (and, for what only tensors say, its tensor table: tied embeddings, biases,
    /// vocabulary size). Rope scaling is carried by the rope_freqs tensor, not by a config value, so
    /// <see cref="RopeScaling"/> stays null here; the reference model reads the tensor.
    /// </summary>
    public static ModelConfig FromGguf(GgufFile file)
    {
        var m = file.Metadata;
        string path = file.Path;
        string arch = m.GetString("general.architecture") is { } a ? a : throw FileFormatException.AtKey(path, "general.architecture", "missing");
        if (arch is not ("llama" or "qwen2"))
            throw FileFormatException.AtKey(path, "general.architecture", $"unknown architecture '{arch}' (supported: llama, qwen2)");
        int U(string key, int? fallback = null)
        {
            var v = m.Get($"{arch}.{key}");
            if (v is null) return fallback ?? throw FileFormatException.AtKey(path, $"{arch}.{key}", "missing");
            long x;
            try { x = v.AsInt64(); } catch (InvalidOperationException) { throw FileFormatException.AtKey(path, $"{arch}.{key}", $"must be an integer, not {v.Describe()}"); }
            if (x <= 0 || x > int.MaxValue) throw FileFormatException.AtKey(path, $"{arch}.{key}", $"{x} is not a positive count");
            return (int)x;
        }
        double F(string key, double? fallback)
        {
            var v = m.Get($"{arch}.{key}");
            if (v is null) return fallback ?? throw FileFormatException.AtKey(path, $"{arch}.{key}", "missing");
            try { return v.AsDouble(); } catch (InvalidOperationException) { throw FileFormatException.AtKey(path, $"{arch}.{key}", $"must be a number, not {v.Describe()}"); }
        }
        int hidden = U("embedding_length"), heads = U("attention.head_count");
        int kvHeads = U("attention.head_count_kv", heads);
        if (heads % kvHeads != 0) throw FileFormatException.AtKey(path, $"{arch}.attention.head_count_kv", $"{kvHeads} does not divide head_count {heads}");
        if (m.Get($"{arch}.attention.key_length") is null && hidden % heads != 0)
            throw FileFormatException.AtKey(path, $"{arch}.embedding_length", $"{hidden} is not divisible by head_count {heads}");
        int headDim = U("attention.key_length", hidden / heads);
        var embd = file.FindTensor("token_embd.weight") ?? throw new FileFormatException(path, "tensor 'token_embd.weight'", "missing");
        int vocab = m.Get("tokenizer.ggml.tokens") is { IsArray: true } toks ? toks.ArrayLength : (int)embd.Shape[^1];
        int? Id(string key) => m.Get(key) is { } v ? (int)v.AsInt64() : null;
        return new ModelConfig
        {
            Architecture = arch,
            HfModelType = arch,
            VocabSize = U("vocab_size", vocab),
            HiddenSize = hidden,
            Layers = U("block_count"),
            Heads = heads,
            KvHeads = kvHeads,
            HeadDim = headDim,
            IntermediateSize = U("feed_forward_length"),
            RmsEpsilon = F("attention.layer_norm_rms_epsilon", null),
            RopeTheta = F("rope.freq_base", 10000.0),
            TiedEmbeddings = file.FindTensor("output.weight") is null,
            AttentionBias = file.FindTensor("blk.0.attn_q.bias") is not null,
            ContextLength = U("context_length"),
            BosTokenId = Id("tokenizer.ggml.bos_token_id"),
            // llama.cpp ends generation at EOS and at EOT (a chat template's end-of-turn, e.g. one added by [model] add_tokens).
            EosTokenIds = new[] { Id("tokenizer.ggml.eos_token_id"), Id("tokenizer.ggml.eot_token_id") }.OfType<int>().Distinct().ToArray(),
        };
    }

    /// <summary>Typed, located access to a JSON object's keys: every failure names the file and key.</summary>
    private sealed class JsonKeys(string path, JsonElement obj, string prefix = "")
    {
        public string Path => path;

        private JsonElement? Find(string key) =>
            obj.TryGetProperty(key, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

        private FileFormatException Error(string key, string problem) => FileFormatException.AtKey(path, prefix + key, problem);

        public string String(string key) => OptionalString(key) ?? throw Error(key, "missing");

        public string? OptionalString(string key) => Find(key) switch
        {
            null => null,
            { ValueKind: JsonValueKind.String } v => v.GetString()!,
            { } v => throw Error(key, $"must be a string, not {v.ValueKind}"),
        };

        public int PositiveInt(string key) => OptionalPositiveInt(key) ?? throw Error(key, "missing");

        public int? OptionalPositiveInt(string key)
        {
            int? v = OptionalInt(key);
            return v is null or > 0 ? v : throw Error(key, $"{v} must be positive");
        }

        public int? OptionalInt(string key) => Find(key) switch
        {
            null => null,
            { ValueKind: JsonValueKind.Number } v when v.TryGetInt32(out int i) => i,
            { } v => throw Error(key, $"must be an integer, not {v}"),
        };

        public IReadOnlyList<int> OptionalIntOrList(string key) => Find(key) switch
        {
            null => [],
            { ValueKind: JsonValueKind.Array } v => v.EnumerateArray().Select(e => e.TryGetInt32(out int i) ? i : throw Error(key, $"must hold integers, not {e}")).ToList(),
            _ => [OptionalInt(key)!.Value],
        };

        public double PositiveNumber(string key) => OptionalPositiveNumber(key) ?? throw Error(key, "missing");

        public double? OptionalPositiveNumber(string key) => Find(key) switch
        {
            null => null,
            { ValueKind: JsonValueKind.Number } v when v.GetDouble() > 0 => v.GetDouble(),
            { } v => throw Error(key, $"must be a positive number, not {v}"),
        };

        public bool? OptionalBool(string key) => Find(key) switch
        {
            null => null,
            { ValueKind: JsonValueKind.True } => true,
            { ValueKind: JsonValueKind.False } => false,
            { } v => throw Error(key, $"must be true or false, not {v}"),
        };
    }
}
