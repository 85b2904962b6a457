using EdgeTune.Core;
using EdgeTune.Core.Quantization;
using EdgeTune.Formats.Gguf;

namespace EdgeTune.Formats.Synthetic;

/// <summary>Shape of a small llama-architecture model with synthetic weights (for tests, benchmarks and the demo).</summary>
public sealed record TinyLlamaConfig
{
    public int Embedding { get; init; } = 256;
    public int Layers { get; init; } = 2;
    public int Heads { get; init; } = 4;
    public int KvHeads { get; init; } = 2;
    public int FeedForward { get; init; } = 512;
    public int ContextLength { get; init; } = 128;
    public float RmsEpsilon { get; init; } = 1e-5f;
    public float RopeBase { get; init; } = 10000f;
    public bool TiedEmbeddings { get; init; }
    public int Seed { get; init; } = 1234;

    /// <summary>Filler tokens after the real pieces, to give benchmarks a realistic vocabulary size.</summary>
    public int ExtraTokens { get; init; }

    /// <summary>Names for the first extra tokens (a vocabulary fitted to a corpus, see <see cref="WordPieces"/>); the rest are filler.</summary>
    public IReadOnlyList<string>? ExtraPieces { get; init; }

    /// <summary>
    /// Adds ChatML's control tokens (&lt;|im_start|&gt;, &lt;|im_end|&gt;) after the filler and ChatML as
    /// tokenizer.chat_template, so the model can be templated, trained and served as a chat model.
    /// </summary>
    public bool ChatMl { get; init; }

    /// <summary>
    /// Multiplies the output head (the embedding table when tied). Random N(0, 0.02) heads give logits too flat for
    /// any hidden state to make a confident prediction; a trained model's head is larger, and so is this one's when set.
    /// </summary>
    public float HeadScale { get; init; } = 1f;

    /// <summary>Three specials, 256 byte tokens, a few ordinary pieces, the filler, then ChatML's two controls.</summary>
    public int VocabSize => TinyLlama.Pieces.Count + 3 + 256 + ExtraTokens + (ChatMl ? 2 : 0);
}

/// <summary>
/// Writes small llama-family GGUF models: weights drawn from a seeded Gaussian, a SentencePiece-style
/// ("llama") vocabulary with byte-fallback tokens, and the metadata keys llama.cpp requires, typed as it
/// checks them. llama.cpp (through LLamaSharp) loads these files.
/// </summary>
public static class TinyLlama
{
    public static readonly IReadOnlyList<string> Pieces =
    [
        "▁", "▁the", "▁a", "▁to", "▁and", "▁of", "▁is", "▁in", "▁it", "▁you", "▁that", "▁for",
        "e", "t", "o", "n", "s", "r", "▁hello", "▁world", "▁device", "▁model",
    ];

    /// <summary>ChatML as Qwen's tokenizer_config.json writes it (llama.cpp recognises it by its markers).</summary>
    public const string ChatMlTemplate =
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    /// <summary>The GGUF metadata of a tiny llama (architecture, hyper-parameters, vocabulary).</summary>
    public static GgufMetadata Metadata(TinyLlamaConfig c)
    {
        var m = new GgufMetadata();
        m.Set("general.architecture", GgufValue.String("llama"));
        m.Set("general.name", GgufValue.String("tiny-llama-test"));
        m.Set("general.file_type", GgufValue.U32(0));
        m.Set("llama.context_length", GgufValue.U32((uint)c.ContextLength));
        m.Set("llama.embedding_length", GgufValue.U32((uint)c.Embedding));
        m.Set("llama.block_count", GgufValue.U32((uint)c.Layers));
        m.Set("llama.feed_forward_length", GgufValue.U32((uint)c.FeedForward));
        m.Set("llama.attention.head_count", GgufValue.U32((uint)c.Heads));
        m.Set("llama.attention.head_count_kv", GgufValue.U32((uint)c.KvHeads));
        m.Set("llama.attention.layer_norm_rms_epsilon", GgufValue.F32(c.RmsEpsilon));
        m.Set("llama.rope.freq_base", GgufValue.F32(c.RopeBase));
        m.Set("llama.rope.dimension_count", GgufValue.U32((uint)(c.Embedding / c.Heads)));
        m.Set("llama.vocab_size", GgufValue.U32((uint)c.VocabSize));

        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var types = new List<int> { 2, 3, 3 };
        for (int b = 0; b < 256; b++)
        {
            tokens.Add($"<0x{b:X2}>");
            types.Add(6);
        }
        tokens.AddRange(Pieces);
        types.AddRange(Pieces.Select(_ => 1));
        for (int i = 0; i < c.ExtraTokens; i++)
        {
            tokens.Add(c.ExtraPieces is { } named && i < named.Count ? named[i] : $"▁tok{i}");
            types.Add(1);
        }
        if (c.ChatMl)
        {
            tokens.AddRange(["<|im_start|>", "<|im_end|>"]);
            types.AddRange([3, 3]);
            m.Set("tokenizer.chat_template", GgufValue.String(ChatMlTemplate));
        }
        var scores = tokens.Select((_, i) => i < 259 ? 0f : -(i - 259f)).ToArray();
        m.Set("tokenizer.ggml.model", GgufValue.String("llama"));
        m.Set("tokenizer.ggml.tokens", GgufValue.Array(tokens.ToArray()));
        m.Set("tokenizer.ggml.scores", GgufValue.Array(scores));
        m.Set("tokenizer.ggml.token_type", GgufValue.Array(types.ToArray()));
        m.Set("tokenizer.ggml.bos_token_id", GgufValue.U32(1));
        m.Set("tokenizer.ggml.eos_token_id", GgufValue.U32(2));
        m.Set("tokenizer.ggml.unknown_token_id", GgufValue.U32(0));
        m.Set("tokenizer.ggml.add_bos_token", GgufValue.Bool(true));
        return m;
    }

    /// <summary>Tensor names and ggml shapes (innermost first) in llama.cpp's naming.</summary>
    public static IEnumerable<(string Name, long[] Shape)> TensorShapes(TinyLlamaConfig c)
    {
        int headDim = c.Embedding / c.Heads;
        int kvDim = headDim * c.KvHeads;
        yield return ("token_embd.weight", [c.Embedding, c.VocabSize]);
        for (int i = 0; i < c.Layers; i++)
        {
            yield return ($"blk.{i}.attn_norm.weight", [c.Embedding]);
            yield return ($"blk.{i}.attn_q.weight", [c.Embedding, c.Embedding]);
            yield return ($"blk.{i}.attn_k.weight", [c.Embedding, kvDim]);
            yield return ($"blk.{i}.attn_v.weight", [c.Embedding, kvDim]);
            yield return ($"blk.{i}.attn_output.weight", [c.Embedding, c.Embedding]);
            yield return ($"blk.{i}.ffn_norm.weight", [c.Embedding]);
            yield return ($"blk.{i}.ffn_gate.weight", [c.Embedding, c.FeedForward]);
            yield return ($"blk.{i}.ffn_up.weight", [c.Embedding, c.FeedForward]);
            yield return ($"blk.{i}.ffn_down.weight", [c.FeedForward, c.Embedding]);
        }
        yield return ("output_norm.weight", [c.Embedding]);
        if (!c.TiedEmbeddings) yield return ("output.weight", [c.Embedding, c.VocabSize]);
    }

    /// <summary>Deterministic weights of one tensor: norms near 1, matrices ~ N(0, 0.02) with a few outliers.</summary>
    public static float[] Weights(string name, long[] shape, int seed)
    {
        long n = shape.Aggregate(1L, (a, b) => a * b);
        var values = new float[n];
        var rng = SeededNormal.ForTensor(seed, name);
        bool norm = name.Contains("norm", StringComparison.Ordinal);
        for (long i = 0; i < n; i++)
        {
            double g = SeededNormal.Next(rng);
            values[i] = norm ? (float)(1.0 + 0.1 * g) : (float)(0.02 * g);
        }
        if (!norm)
            for (int k = 0; k < Math.Max(1, n / 4096); k++) values[rng.NextInt64(n)] *= 8; // outliers, as real weights have
        return values;
    }

    /// <summary>
    /// Write a tiny llama GGUF with every weight stored as <paramref name="type"/> (1-D tensors stay F32).
    /// <paramref name="vocabulary"/> (tokenizer.* keys) replaces the built-in one; its token count must equal
    /// <see cref="TinyLlamaConfig.VocabSize"/> (set <see cref="TinyLlamaConfig.ExtraTokens"/> to fit).
    /// </summary>
    public static void WriteGguf(string path, TinyLlamaConfig config, GgmlType type = GgmlType.F32, string modelName = "tiny-llama-test",
        IEnumerable<KeyValuePair<string, GgufValue>>? vocabulary = null)
    {
        var writer = new GgufWriter();
        foreach (var (k, v) in Metadata(config))
            if (vocabulary is null || !k.StartsWith("tokenizer.", StringComparison.Ordinal)) writer.Metadata.Set(k, v);
        foreach (var (k, v) in vocabulary ?? []) writer.Metadata.Set(k, v);
        if (writer.Metadata.Get("tokenizer.ggml.tokens")?.ArrayLength is int tokens && tokens != config.VocabSize)
            throw new ArgumentException($"the vocabulary has {tokens} tokens, the model {config.VocabSize}", nameof(vocabulary));
        writer.Metadata.Set("general.name", GgufValue.String(modelName));
        // general.file_type names the weights' type as llama.cpp would (the "pure" file type of that tensor type).
        writer.Metadata.Set("general.file_type", GgufValue.U32((uint)PureFileType(type)));
        if (GgmlTypes.IsQuantized(type)) writer.Metadata.Set("general.quantization_version", GgufValue.U32(2));
        foreach (var (name, shape) in TensorShapes(config))
        {
            var tensorType = shape.Length == 1 ? GgmlType.F32 : type;
            string tensorName = name;
            long[] tensorShape = shape;
            // Generated when the writer reaches the tensor, so large benchmark models never sit in memory whole.
            writer.AddTensor(name, tensorType, shape, stream =>
            {
                var weights = Weights(tensorName, tensorShape, config.Seed);
                bool head = tensorName == "output.weight" || (config.TiedEmbeddings && tensorName == "token_embd.weight");
                if (head && config.HeadScale != 1f)
                    for (int i = 0; i < weights.Length; i++) weights[i] *= config.HeadScale;
                var bytes = new byte[GgmlTypes.RowBytes(tensorType, tensorShape[0]) * (weights.Length / tensorShape[0])];
                QuantCodecs.Quantize(tensorType, weights, bytes);
                stream.Write(bytes);
            });
        }
        writer.Write(path);
    }

    private static Gguf.Quantize.LlamaFileType PureFileType(GgmlType type) => type switch
    {
        GgmlType.F32 => Gguf.Quantize.LlamaFileType.AllF32,
        GgmlType.F16 => Gguf.Quantize.LlamaFileType.MostlyF16,
        GgmlType.BF16 => Gguf.Quantize.LlamaFileType.MostlyBF16,
        GgmlType.Q8_0 => Gguf.Quantize.LlamaFileType.MostlyQ8_0,
        GgmlType.Q4_0 => Gguf.Quantize.LlamaFileType.MostlyQ4_0,
        GgmlType.Q4_1 => Gguf.Quantize.LlamaFileType.MostlyQ4_1,
        GgmlType.Q5_0 => Gguf.Quantize.LlamaFileType.MostlyQ5_0,
        GgmlType.Q5_1 => Gguf.Quantize.LlamaFileType.MostlyQ5_1,
        GgmlType.Q2_K => Gguf.Quantize.LlamaFileType.MostlyQ2_K,
        GgmlType.Q3_K => Gguf.Quantize.LlamaFileType.MostlyQ3_K_S,
        GgmlType.Q4_K => Gguf.Quantize.LlamaFileType.MostlyQ4_K_S,
        GgmlType.Q5_K => Gguf.Quantize.LlamaFileType.MostlyQ5_K_S,
        GgmlType.Q6_K => Gguf.Quantize.LlamaFileType.MostlyQ6_K,
        _ => throw new ArgumentException($"no llama.cpp file type for {GgmlTypes.Name(type)} weights", nameof(type)),
    };
}
