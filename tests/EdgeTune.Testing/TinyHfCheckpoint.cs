using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Safetensors;
using EdgeTune.Formats.Synthetic;

namespace EdgeTune.Testing;

/// <summary>Shape of a tiny random Hugging Face checkpoint (config.json + model.safetensors).</summary>
public sealed record TinyHfOptions
{
    /// <summary>HF model_type: llama, mistral or qwen2 (qwen2 gets q/k/v biases).</summary>
    public string ModelType { get; init; } = "llama";
    /// <summary>At least the 281 entries of TinyLlama's vocabulary, so llama.cpp can load the converted file.</summary>
    public int Vocab { get; init; } = 320;
    public int Hidden { get; init; } = 64;
    public int Layers { get; init; } = 2;
    public int Heads { get; init; } = 4;
    public int KvHeads { get; init; } = 2;
    public int Intermediate { get; init; } = 128;
    public double RmsEps { get; init; } = 1e-5;
    public double RopeTheta { get; init; } = 10000;
    public bool Tied { get; init; }
    /// <summary>Llama-3 rope scaling with a small original context, so the scaled band matters at 64+ tokens.</summary>
    public bool Llama3Scaling { get; init; }
    public int ContextLength { get; init; } = 256;
    public int Seed { get; init; } = 7;
    public SafetensorsDType DType { get; init; } = SafetensorsDType.F32;
    /// <summary>Shard size; small values make model-0000i-of-0000n shards with an index.</summary>
    public long MaxShardBytes { get; init; } = long.MaxValue;

    public int HeadDim => Hidden / Heads;

    /// <summary>Bytes of tensor data this checkpoint holds.</summary>
    public long ByteLength => TinyHfCheckpoint.Tensors(this).Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b)) * DType.Size();
    public override string ToString() =>
        $"{ModelType} h{Heads}/kv{KvHeads}{(Tied ? " tied" : "")} theta{RopeTheta}{(Llama3Scaling ? " llama3-rope" : "")}";
}

/// <summary>
/// Writes tiny random Hugging Face checkpoints of the llama family. The tensor names are spelled out here,
/// independently of EdgeTune.Models' name map, so the map is tested rather than assumed. Weights are
/// Gaussian scaled by 1/√fan-in, so activations and logits have a useful spread (greedy ties are unlikely).
/// </summary>
public static class TinyHfCheckpoint
{
    public static string Write(string folder, TinyHfOptions o, Func<string, long[], long[]>? reshape = null, Func<string, bool>? skip = null)
    {
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "config.json"), ConfigJson(o));
        var writer = new SafetensorsCheckpointWriter(o.MaxShardBytes);
        writer.Metadata["format"] = "pt";
        foreach (var (name, shape) in Tensors(o))
        {
            if (skip?.Invoke(name) == true) continue;
            var s = reshape?.Invoke(name, shape) ?? shape;
            string tensorName = name;
            // Generated when the writer reaches the tensor, so benchmark-sized checkpoints never sit in memory whole.
            writer.AddTensor(name, o.DType, s, stream => stream.Write(Encode(Values(tensorName, s, o.Seed), o.DType)));
        }
        writer.Write(folder);
        return folder;
    }

    public static string ConfigJson(TinyHfOptions o)
    {
        string F(double x) => x.ToString("R", CultureInfo.InvariantCulture);
        var json = new StringBuilder();
        json.Append("{\n");
        json.Append($"  \"architectures\": [\"{Architecture(o.ModelType)}\"],\n");
        json.Append($"  \"model_type\": \"{o.ModelType}\",\n");
        json.Append($"  \"vocab_size\": {o.Vocab},\n");
        json.Append($"  \"hidden_size\": {o.Hidden},\n");
        json.Append($"  \"intermediate_size\": {o.Intermediate},\n");
        json.Append($"  \"num_hidden_layers\": {o.Layers},\n");
        json.Append($"  \"num_attention_heads\": {o.Heads},\n");
        json.Append($"  \"num_key_value_heads\": {o.KvHeads},\n");
        json.Append($"  \"hidden_act\": \"silu\",\n");
        json.Append($"  \"max_position_embeddings\": {o.ContextLength},\n");
        json.Append($"  \"rms_norm_eps\": {F(o.RmsEps)},\n");
        json.Append($"  \"rope_theta\": {F(o.RopeTheta)},\n");
        if (o.Llama3Scaling)
            json.Append("  \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 64},\n");
        else
            json.Append("  \"rope_scaling\": null,\n");
        if (o.ModelType == "mistral") json.Append("  \"sliding_window\": null,\n");
        json.Append("  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n");
        json.Append($"  \"tie_word_embeddings\": {(o.Tied ? "true" : "false")},\n");
        json.Append("  \"torch_dtype\": \"float32\"\n}\n");
        return json.ToString();
    }

    private static string Architecture(string modelType) => modelType switch
    {
        "mistral" => "MistralForCausalLM",
        "qwen2" => "Qwen2ForCausalLM",
        _ => "LlamaForCausalLM",
    };

    /// <summary>HF names and PyTorch shapes ([out, in]), as transformers' state dict lists them.</summary>
    public static IEnumerable<(string Name, long[] Shape)> Tensors(TinyHfOptions o)
    {
        int d = o.HeadDim, q = o.Heads * d, kv = o.KvHeads * d;
        bool bias = o.ModelType == "qwen2";
        yield return ("model.embed_tokens.weight", [o.Vocab, o.Hidden]);
        for (int i = 0; i < o.Layers; i++)
        {
            string p = $"model.layers.{i}.";
            yield return (p + "input_layernorm.weight", [o.Hidden]);
            yield return (p + "self_attn.q_proj.weight", [q, o.Hidden]);
            if (bias) yield return (p + "self_attn.q_proj.bias", [q]);
            yield return (p + "self_attn.k_proj.weight", [kv, o.Hidden]);
            if (bias) yield return (p + "self_attn.k_proj.bias", [kv]);
            yield return (p + "self_attn.v_proj.weight", [kv, o.Hidden]);
            if (bias) yield return (p + "self_attn.v_proj.bias", [kv]);
            yield return (p + "self_attn.o_proj.weight", [o.Hidden, q]);
            yield return (p + "post_attention_layernorm.weight", [o.Hidden]);
            yield return (p + "mlp.gate_proj.weight", [o.Intermediate, o.Hidden]);
            yield return (p + "mlp.up_proj.weight", [o.Intermediate, o.Hidden]);
            yield return (p + "mlp.down_proj.weight", [o.Hidden, o.Intermediate]);
        }
        yield return ("model.norm.weight", [o.Hidden]);
        if (!o.Tied) yield return ("lm_head.weight", [o.Vocab, o.Hidden]);
    }

    /// <summary>Norm weights near 1, biases ~ N(0, 0.1²), embeddings ~ N(0, 1), matrices ~ N(0, 1/fan_in).</summary>
    public static float[] Values(string name, long[] shape, int seed)
    {
        long n = shape.Aggregate(1L, (a, b) => a * b);
        var rng = SeededNormal.ForTensor(seed, name);
        bool norm = name.Contains("norm", StringComparison.Ordinal), biasTensor = name.EndsWith(".bias", StringComparison.Ordinal);
        double scale = norm ? 0.1 : biasTensor ? 0.1 : name.Contains("embed", StringComparison.Ordinal) ? 1.0 : 1.0 / Math.Sqrt(shape[^1]);
        var values = new float[n];
        for (long i = 0; i < n; i++) values[i] = (float)((norm ? 1.0 : 0.0) + scale * SeededNormal.Next(rng));
        return values;
    }

    private static byte[] Encode(float[] values, SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.F32 => MemoryMarshal.AsBytes(values.AsSpan()).ToArray(),
        SafetensorsDType.F16 => MemoryMarshal.AsBytes(Array.ConvertAll(values, v => BitConverter.HalfToUInt16Bits((Half)v)).AsSpan()).ToArray(),
        // Truncation, not rounding: any bf16 value will do for random weights.
        SafetensorsDType.BF16 => MemoryMarshal.AsBytes(Array.ConvertAll(values, v => (ushort)(BitConverter.SingleToUInt32Bits(v) >> 16)).AsSpan()).ToArray(),
        _ => throw new ArgumentException($"dtype {dtype} is not written by this helper", nameof(dtype)),
    };

    /// <summary>
    /// Adds TinyLlama's SentencePiece-style vocabulary (specials, 256 byte tokens, pieces, filler), sized to
    /// <paramref name="vocabSize"/>, so llama.cpp loads the converted file. Only token ids matter in these tests.
    /// </summary>
    public static void AddVocabulary(GgufMetadata m, int vocabSize)
    {
        var tiny = new TinyLlamaConfig();
        int extra = vocabSize - tiny.VocabSize;
        if (extra < 0) throw new ArgumentOutOfRangeException(nameof(vocabSize), $"at least {tiny.VocabSize} tokens are needed");
        foreach (var (key, value) in TinyLlama.Metadata(tiny with { ExtraTokens = extra }))
            if (key.StartsWith("tokenizer.", StringComparison.Ordinal)) m.Set(key, value);
    }

    /// <summary>Seeded random prompt: BOS then ids in [3, vocab) (no specials inside).</summary>
    public static int[] Prompt(int length, int vocab, int seed)
    {
        var rng = new Random(seed);
        var ids = new int[length];
        ids[0] = 1;
        for (int i = 1; i < length; i++) ids[i] = rng.Next(3, vocab);
        return ids;
    }
}
