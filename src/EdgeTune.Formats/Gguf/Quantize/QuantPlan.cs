using EdgeTune.Core;

namespace EdgeTune.Formats.Gguf.Quantize;

/// <summary>One tensor's fate in a quantisation: its source, the type it gets, and why.</summary>
public sealed record PlannedTensor(GgufTensorInfo Source, GgmlType Target, bool FellBack)
{
    public bool Converts => Source.Type != Target;
    public long TargetBytes => GgmlTypes.RowBytes(Target, Source.RowLength) * Source.RowCount;
}

/// <summary>
/// Chooses the type of every tensor exactly as llama.cpp's llama-quant.cpp does for llama-family models:
/// which tensors may be quantised at all, the _S/_M/_L mixes (attn_v and ffn_down get more bits in chosen
/// layers, output.weight gets Q6_K, ...), and the fallbacks for rows that are not whole blocks. Tensors are
/// listed in llama.cpp's output order (by layer, then name). Only the parts of llama.cpp's rules that concern
/// the file types EdgeTune writes are here; the IQ-type branches are not.
/// </summary>
public static class QuantPlan
{
    public static IReadOnlyList<PlannedTensor> Create(GgufFile model, LlamaFileType fileType, bool pure = false)
    {
        var hp = ModelFacts.Read(model);
        var defaultType = LlamaFileTypes.DefaultTensorType(fileType);
        var ordered = model.Tensors.OrderBy(t => t, Comparer<GgufTensorInfo>.Create(CompareWeightNames)).ToList();
        var state = new MixState(hp, fileType)
        {
            AttentionVCount = ordered.Count(t => IsAttentionVLike(Category(t.Name))),
            HasTiedEmbeddings = !ordered.Any(t => t.Name == "output.weight"),
        };

        var plan = new List<PlannedTensor>(ordered.Count);
        foreach (var t in ordered)
        {
            if (!AllowsQuantization(t))
            {
                plan.Add(new PlannedTensor(t, t.Type, false));
                continue;
            }
            var target = defaultType;
            bool fellBack = false;
            if (GgmlTypes.IsQuantized(defaultType))
            {
                if (!pure) target = MixType(state, target, t);
                (target, fellBack) = Fallback(t, target);
            }
            plan.Add(new PlannedTensor(t, target, fellBack));
        }
        return plan;
    }

    /// <summary>llama.cpp's weight_name_comparer: tensors of layer N ("blk.N.") sort by N, others (-1) first, then by name.</summary>
    public static int CompareWeightNames(GgufTensorInfo a, GgufTensorInfo b)
    {
        int la = LayerOf(a.Name), lb = LayerOf(b.Name);
        return la != lb ? la.CompareTo(lb) : string.CompareOrdinal(a.Name, b.Name);
    }

    private static int LayerOf(string name)
    {
        if (!name.StartsWith("blk.", StringComparison.Ordinal)) return -1;
        int i = 4, layer = 0;
        bool any = false;
        while (i < name.Length && char.IsAsciiDigit(name[i]) && layer < 100_000_000)
        {
            layer = layer * 10 + (name[i++] - '0');
            any = true;
        }
        return any ? layer : -1;
    }

    /// <summary>tensor_allows_quantization: 2-D+ weights only, never norms, routers or the small special tensors.</summary>
    public static bool AllowsQuantization(GgufTensorInfo t)
    {
        if (t.Shape.Length < 2 || CountNonTrivialDims(t.Shape) < 2) return false;
        string name = t.Name;
        if (!name.EndsWith("weight", StringComparison.Ordinal)) return false;
        foreach (var fragment in NeverQuantized)
            if (name.Contains(fragment, StringComparison.Ordinal)) return false;
        return name is not ("position_embd.weight" or "token_types.weight");
    }

    // ggml_n_dims: trailing dimensions of size 1 do not count.
    private static int CountNonTrivialDims(long[] shape)
    {
        for (int i = shape.Length - 1; i >= 1; i--)
            if (shape[i] > 1) return i + 1;
        return 1;
    }

    private static readonly string[] NeverQuantized =
    [
        "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
        "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
        "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
        "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
        "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
        "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
        "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos",
        ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
    ];

    private enum TensorCategory { TokenEmbedding, AttentionQ, AttentionV, AttentionK, AttentionQkv, AttentionKvB, AttentionOutput, FfnUp, FfnGate, FfnDown, Output, Other }

    private static TensorCategory Category(string name)
    {
        if (name == "output.weight") return TensorCategory.Output;
        if (name is "token_embd.weight" or "per_layer_token_embd.weight") return TensorCategory.TokenEmbedding;
        if (name.Contains("attn_qkv.weight", StringComparison.Ordinal)) return TensorCategory.AttentionQkv;
        if (name.Contains("attn_kv_b.weight", StringComparison.Ordinal)) return TensorCategory.AttentionKvB;
        if (name.Contains("attn_v.weight", StringComparison.Ordinal)) return TensorCategory.AttentionV;
        if (name.Contains("attn_k.weight", StringComparison.Ordinal)) return TensorCategory.AttentionK;
        if (name.Contains("attn_q.weight", StringComparison.Ordinal)) return TensorCategory.AttentionQ;
        if (name.Contains("attn_output.weight", StringComparison.Ordinal)) return TensorCategory.AttentionOutput;
        if (name.Contains("ffn_up", StringComparison.Ordinal)) return TensorCategory.FfnUp;
        if (name.Contains("ffn_gate", StringComparison.Ordinal)) return TensorCategory.FfnGate;
        if (name.Contains("ffn_down", StringComparison.Ordinal)) return TensorCategory.FfnDown;
        return TensorCategory.Other;
    }

    private static bool IsAttentionVLike(TensorCategory c) =>
        c is TensorCategory.AttentionV or TensorCategory.AttentionQkv or TensorCategory.AttentionKvB;

    private sealed class MixState(ModelFacts facts, LlamaFileType fileType)
    {
        public ModelFacts Facts { get; } = facts;
        public LlamaFileType FileType { get; } = fileType;
        public int AttentionVCount { get; init; }
        public bool HasTiedEmbeddings { get; init; }
        public int AttentionVSeen { get; set; }
        public int FfnDownSeen { get; set; }
        public int FfnGateSeen { get; set; }
        public int FfnUpSeen { get; set; }
    }

    // llama.cpp's use_more_bits: the first and last eighth of the layers, and every third layer between.
    private static bool UseMoreBits(int layer, int layers) =>
        layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;

    /// <summary>llama_tensor_get_type_impl, restricted to the legacy and K-quant file types.</summary>
    private static GgmlType MixType(MixState s, GgmlType type, GgufTensorInfo t)
    {
        var f = s.FileType;
        var category = Category(t.Name);
        var hp = s.Facts;
        bool falcon = hp.Architecture == "falcon";

        // Where tokens and output share one matrix, the embedding gets the output's (higher) precision.
        if (category == TensorCategory.Output || (s.HasTiedEmbeddings && category == TensorCategory.TokenEmbedding))
        {
            long qk = GgmlTypes.BlockSize(type);
            if (falcon || t.RowLength % qk != 0) return GgmlType.Q8_0;
            return type != GgmlType.Q8_0 ? GgmlType.Q6_K : type;
        }
        if (category == TensorCategory.TokenEmbedding) return type;

        if (IsAttentionVLike(category))
        {
            if (f == LlamaFileType.MostlyQ2_K) type = hp.GroupedQueryFactor >= 4 ? GgmlType.Q4_K : GgmlType.Q3_K;
            else if (f == LlamaFileType.MostlyQ3_K_M) type = s.AttentionVSeen < 2 ? GgmlType.Q5_K : GgmlType.Q4_K;
            else if (f == LlamaFileType.MostlyQ3_K_L) type = GgmlType.Q5_K;
            else if ((f == LlamaFileType.MostlyQ4_K_M || f == LlamaFileType.MostlyQ5_K_M) && UseMoreBits(s.AttentionVSeen, s.AttentionVCount)) type = GgmlType.Q6_K;
            else if (f == LlamaFileType.MostlyQ4_K_S && s.AttentionVSeen < 4) type = GgmlType.Q5_K;
            if (hp.Is70B && (type == GgmlType.Q3_K || type == GgmlType.Q4_K)) type = GgmlType.Q5_K;
            if (hp.ExpertCount == 8) type = GgmlType.Q8_0;
            s.AttentionVSeen++;
            return type;
        }
        if (category == TensorCategory.AttentionK)
            return hp.ExpertCount == 8 ? GgmlType.Q8_0 : type;
        if (category == TensorCategory.FfnDown)
        {
            var (layer, layers) = LayerInfo(s, s.FfnDownSeen, t.Name);
            if (f == LlamaFileType.MostlyQ2_K) type = GgmlType.Q3_K;
            else if (f == LlamaFileType.MostlyQ3_K_M)
                type = layer < layers / 16 ? GgmlType.Q5_K : !falcon || UseMoreBits(layer, layers) ? GgmlType.Q4_K : GgmlType.Q3_K;
            else if (f == LlamaFileType.MostlyQ3_K_L) type = falcon ? GgmlType.Q4_K : GgmlType.Q5_K;
            else if (f == LlamaFileType.MostlyQ4_K_M)
            {
                if (falcon) type = layer < layers / 16 ? GgmlType.Q6_K : UseMoreBits(layer, layers) ? GgmlType.Q5_K : GgmlType.Q4_K;
                else if (UseMoreBits(layer, layers)) type = GgmlType.Q6_K;
            }
            else if (f == LlamaFileType.MostlyQ5_K_M && UseMoreBits(layer, layers)) type = GgmlType.Q6_K;
            else if (f == LlamaFileType.MostlyQ4_K_S && !falcon && layer < layers / 8) type = GgmlType.Q5_K;
            s.FfnDownSeen++;
            return type;
        }
        if (category == TensorCategory.AttentionOutput)
        {
            if (!falcon)
            {
                if (hp.ExpertCount == 8)
                {
                    if (f is LlamaFileType.MostlyQ2_K or LlamaFileType.MostlyQ3_K_S or LlamaFileType.MostlyQ3_K_M
                        or LlamaFileType.MostlyQ4_K_S or LlamaFileType.MostlyQ4_K_M)
                        type = GgmlType.Q5_K;
                }
                else if (f == LlamaFileType.MostlyQ2_K) type = GgmlType.Q3_K;
                else if (f == LlamaFileType.MostlyQ3_K_M) type = GgmlType.Q4_K;
                else if (f == LlamaFileType.MostlyQ3_K_L) type = GgmlType.Q5_K;
            }
            else if (f == LlamaFileType.MostlyQ3_K_L) type = GgmlType.Q4_K;
            return type;
        }
        if (category == TensorCategory.AttentionQkv)
        {
            if (f is LlamaFileType.MostlyQ3_K_M or LlamaFileType.MostlyQ3_K_L) type = GgmlType.Q4_K;
            else if (f == LlamaFileType.MostlyQ4_K_M) type = GgmlType.Q5_K;
            else if (f == LlamaFileType.MostlyQ5_K_M) type = GgmlType.Q6_K;
            return type;
        }
        if (category == TensorCategory.FfnGate)
        {
            LayerInfo(s, s.FfnGateSeen, t.Name);
            s.FfnGateSeen++;
        }
        else if (category == TensorCategory.FfnUp)
        {
            LayerInfo(s, s.FfnUpSeen, t.Name);
            s.FfnUpSeen++;
        }
        return type;
    }

    // Mixture-of-experts models number layers from the tensor name; dense models count tensors as they pass.
    private static (int Layer, int Layers) LayerInfo(MixState s, int seen, string name)
    {
        int layers = s.Facts.BlockCount;
        if (s.Facts.ExpertCount <= 1) return (seen, layers);
        int layer = LayerOf(name);
        if (layer < 0 || layer >= layers)
            throw new EdgeTuneException($"cannot tell the layer of tensor '{name}' (the model has {layers} layers)");
        return (layer, layers);
    }

    /// <summary>tensor_type_fallback: rows that are not whole blocks of the chosen type get a type whose blocks fit.</summary>
    private static (GgmlType Type, bool FellBack) Fallback(GgufTensorInfo t, GgmlType target)
    {
        if (t.RowLength % GgmlTypes.BlockSize(target) == 0) return (target, false);
        var fallback = target switch
        {
            GgmlType.Q2_K or GgmlType.Q3_K => GgmlType.Q4_0,
            GgmlType.Q4_K => GgmlType.Q5_0,
            GgmlType.Q5_K => GgmlType.Q5_1,
            GgmlType.Q6_K => GgmlType.Q8_0,
            _ => GgmlType.F16, // legacy 32-blocks that do not fit: llama.cpp would stop; F16 always fits
        };
        if (t.RowLength % GgmlTypes.BlockSize(fallback) != 0) fallback = GgmlType.F16;
        return (fallback, true);
    }

    /// <summary>The hyper-parameters the mix rules look at.</summary>
    private sealed record ModelFacts(string Architecture, int BlockCount, int HeadCount, int KvHeadCount, int ExpertCount)
    {
        public int GroupedQueryFactor => KvHeadCount == 0 ? 0 : HeadCount / KvHeadCount;

        // llama.cpp's LLM_TYPE_70B: 80 llama layers with grouped-query attention.
        public bool Is70B => Architecture == "llama" && BlockCount == 80 && HeadCount != KvHeadCount;

        public static ModelFacts Read(GgufFile model)
        {
            string arch = model.Architecture
                ?? throw FileFormatException.AtKey(model.Path, "general.architecture", "missing; llama.cpp needs it to quantise");
            int Int(string key, int fallback)
            {
                var v = model.Metadata.Get($"{arch}.{key}");
                if (v is null) return fallback;
                try
                {
                    return checked((int)(v.IsArray ? ArrayFirst(v) : v.AsInt64()));
                }
                catch (Exception e) when (e is InvalidOperationException or OverflowException)
                {
                    throw FileFormatException.AtKey(model.Path, $"{arch}.{key}", $"expected an integer, found {v.Describe()}");
                }
            }
            int blocks = Int("block_count", -1);
            if (blocks <= 0) throw FileFormatException.AtKey(model.Path, $"{arch}.block_count", "missing or not positive");
            int heads = Int("attention.head_count", 0);
            return new ModelFacts(arch, blocks, heads, Int("attention.head_count_kv", heads), Int("expert_count", 0));
        }

        private static long ArrayFirst(GgufValue v) => v.Value switch
        {
            uint[] a when a.Length > 0 => a[0],
            int[] a when a.Length > 0 => a[0],
            _ => throw new InvalidOperationException(),
        };
    }
}
