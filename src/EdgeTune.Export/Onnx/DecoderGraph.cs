using System.Runtime.InteropServices;
using EdgeTune.Formats.Onnx;
using EdgeTune.Models.Architectures;
using EdgeTune.Models.Reference;

namespace EdgeTune.Export.Onnx;

/// <summary>
/// The llama-family decoder as an ONNX graph in ONNX Runtime GenAI's layout (its model builder's names and
/// ops): inputs input_ids, attention_mask, past_key_values.N.key/value; outputs logits, present.N.key/value.
/// The residual stream is kept 2-D ([batch·sequence, hidden]) so each linear layer is one Gemm with transB
/// over the weight as PyTorch stores it ([out, in]): weights stream from the source to the data file without
/// a transpose, and a tied output head is the embedding itself. Attention is com.microsoft.GroupQueryAttention
/// with the rotary embedding fused in (cos/sin caches built here, rope scaling included), as the builder does
/// for CPU float32; int4 weights are com.microsoft.MatMulNBits.
/// </summary>
internal sealed class DecoderGraph
{
    public const string Domain = "com.microsoft";
    private readonly OnnxGraph _graph = new();
    private readonly ModelWeights _weights;
    private readonly ModelConfig _c;
    private readonly OnnxExportOptions _options;
    private readonly OnnxExternalData _data;
    private readonly OnnxDataType _io;

    public DecoderGraph(ModelWeights weights, OnnxExportOptions options, OnnxExternalData data)
    {
        _weights = weights;
        _c = weights.Config;
        _options = options;
        _data = data;
        _io = IoType(options.Precision);
    }

    public OnnxGraph Graph => _graph;

    /// <summary>The element type of inputs, outputs and KV cache: float32 except for fp16 (int4 on CPU keeps float32, as the builder does).</summary>
    public static OnnxDataType IoType(OnnxPrecision p) => p == OnnxPrecision.Fp16 ? OnnxDataType.Float16 : OnnxDataType.Float;

    /// <summary>The weights an int4 export stores as MatMulNBits (every linear layer and the output head; the embedding stays float).</summary>
    public static bool IsQuantized(string ggufName) =>
        ggufName == "output.weight" || (ggufName.EndsWith(".weight", StringComparison.Ordinal) && !ggufName.Contains("norm", StringComparison.Ordinal) && ggufName != "token_embd.weight");

    public static string PastKey(int layer) => $"past_key_values.{layer}.key";
    public static string PastValue(int layer) => $"past_key_values.{layer}.value";
    public static string PresentKey(int layer) => $"present.{layer}.key";
    public static string PresentValue(int layer) => $"present.{layer}.value";

    public void Build(IProgress<(int Done, int Total, string Name)>? progress, CancellationToken cancellationToken)
    {
        int total = _weights.Tensors.Count + (_c.TiedEmbeddings && _options.Precision == OnnxPrecision.Int4 ? 1 : 0), done = 0;
        void Step(string name)
        {
            cancellationToken.ThrowIfCancellationRequested();
            progress?.Report((++done, total, name));
        }

        int kv = _c.KvHeads, d = _c.HeadDim;
        _graph.Inputs.Add(new("input_ids", OnnxDataType.Int64, ["batch_size", "sequence_length"]));
        _graph.Inputs.Add(new("attention_mask", OnnxDataType.Int64, ["batch_size", "total_sequence_length"]));
        for (int i = 0; i < _c.Layers; i++)
        {
            _graph.Inputs.Add(new(PastKey(i), _io, ["batch_size", kv, "past_sequence_length", d]));
            _graph.Inputs.Add(new(PastValue(i), _io, ["batch_size", kv, "past_sequence_length", d]));
        }
        _graph.Outputs.Add(new("logits", _io, ["batch_size", "sequence_length", _c.VocabSize]));
        for (int i = 0; i < _c.Layers; i++)
        {
            _graph.Outputs.Add(new(PresentKey(i), _io, ["batch_size", kv, "total_sequence_length", d]));
            _graph.Outputs.Add(new(PresentValue(i), _io, ["batch_size", kv, "total_sequence_length", d]));
        }

        // Shapes and the attention-mask reformatting GQA needs (the builder's attn_mask_reformat subgraph):
        // seqlens_k = Σ mask − 1 per row (int32), total_sequence_length = mask.shape[1] (int32 scalar).
        string rows2d = Const("/model/constants/rows_by_hidden", [-1L, _c.HiddenSize]);
        string rowsQ = Const("/model/constants/rows_by_qdim", [-1L, _c.QDim]);
        string one = Const("/model/constants/one", [1L]);
        string ids = Node("Shape", "/model/shape/input_ids", ["input_ids"]);
        string byHeads = Node("Concat", "/model/shape/batch_seq_any", [ids, Const("/model/constants/minus_one", [-1L])], ("axis", 0L));
        string logitsShape = Node("Concat", "/model/shape/logits", [ids, Const("/model/constants/vocab", [(long)_c.VocabSize])], ("axis", 0L));
        string maskSum = Node("ReduceSum", "/model/attn_mask_reformat/sum", ["attention_mask", one], ("keepdims", 0L));
        string seqlens = Node("Cast", "/model/attn_mask_reformat/seqlens_k", [Node("Sub", "/model/attn_mask_reformat/minus_one", [maskSum, one])], ("to", (long)OnnxDataType.Int32));
        string maskShape = Node("Shape", "/model/attn_mask_reformat/shape", ["attention_mask"]);
        string totalLength = Node("Cast", "/model/attn_mask_reformat/total_seq_len",
            [Node("Gather", "/model/attn_mask_reformat/gather", [maskShape, ScalarConst("/model/constants/index_one", 1L)], ("axis", 0L))], ("to", (long)OnnxDataType.Int32));
        var (cos, sin) = RotaryCaches();

        string embedding = Weight("token_embd.weight", "model.embed_tokens.weight", Step);
        string x = Node("Reshape", "/model/embed_tokens/reshape", [Node("Gather", "/model/embed_tokens/Gather", [embedding, "input_ids"], ("axis", 0L)), rows2d]);

        for (int i = 0; i < _c.Layers; i++)
        {
            string gg = $"blk.{i}.", hf = $"model.layers.{i}.", at = $"/model/layers.{i}";
            string h = Norm($"{at}/input_layernorm", x, Weight(gg + "attn_norm.weight", hf + "input_layernorm.weight", Step));
            string Project(string stem, string hfStem, int outDim) =>
                Node("Reshape", $"{at}/attn/{stem}/reshape", [Linear($"{at}/attn/{stem}", h, gg + stem, hf + "self_attn." + hfStem, _c.AttentionBias, Step), byHeads]);
            string q = Project("attn_q", "q_proj", _c.QDim), k = Project("attn_k", "k_proj", _c.KvDim), v = Project("attn_v", "v_proj", _c.KvDim);
            _graph.Nodes.Add(new OnnxNode("GroupQueryAttention", $"{at}/attn/GroupQueryAttention",
                [q, k, v, PastKey(i), PastValue(i), seqlens, totalLength, cos, sin],
                [$"{at}/attn/output", PresentKey(i), PresentValue(i)],
                [
                    new("num_heads", (long)_c.Heads), new("kv_num_heads", (long)_c.KvHeads), new("scale", (float)(1 / Math.Sqrt(_c.HeadDim))),
                    new("local_window_size", -1L), new("do_rotary", 1L), new("rotary_interleaved", _weights.Rope == RopeStyle.Interleaved ? 1L : 0L),
                ], Domain));
            string attention = Node("Reshape", $"{at}/attn/output/reshape", [$"{at}/attn/output", rowsQ]);
            string o = Linear($"{at}/attn/attn_output", attention, gg + "attn_output", hf + "self_attn.o_proj", false, Step);
            x = Node("Add", $"{at}/attn/residual", [x, o]);

            h = Norm($"{at}/post_attention_layernorm", x, Weight(gg + "ffn_norm.weight", hf + "post_attention_layernorm.weight", Step));
            string gate = Linear($"{at}/mlp/gate_proj", h, gg + "ffn_gate", hf + "mlp.gate_proj", false, Step);
            string up = Linear($"{at}/mlp/up_proj", h, gg + "ffn_up", hf + "mlp.up_proj", false, Step);
            string silu = Node("Mul", $"{at}/mlp/silu", [gate, Node("Sigmoid", $"{at}/mlp/sigmoid", [gate])]);
            string down = Linear($"{at}/mlp/down_proj", Node("Mul", $"{at}/mlp/swiglu", [silu, up]), gg + "ffn_down", hf + "mlp.down_proj", false, Step);
            x = Node("Add", $"{at}/mlp/residual", [x, down]);
        }

        string final = Norm("/model/norm", x, Weight("output_norm.weight", "model.norm.weight", Step));
        string logits2d = _c.TiedEmbeddings && _options.Precision != OnnxPrecision.Int4
            ? Node("Gemm", "/lm_head/Gemm", [final, embedding], ("transB", 1L))
            : Linear("/lm_head", final, "output", "lm_head", false, Step);
        _graph.Nodes.Add(new OnnxNode("Reshape", "/lm_head/reshape", [logits2d, logitsShape], ["logits"], []));
    }

    /// <summary>y = x·Wᵀ (+ b): Gemm(transB) for float weights, MatMulNBits (+ Add) for int4.</summary>
    private string Linear(string at, string input, string ggufStem, string hfStem, bool bias, Action<string> step)
    {
        string? b = bias ? Weight(ggufStem + ".bias", hfStem + ".bias", step) : null;
        if (_options.Precision != OnnxPrecision.Int4)
        {
            string w = Weight(ggufStem + ".weight", hfStem + ".weight", step);
            return Node("Gemm", at + "/Gemm", b is null ? [input, w] : [input, w, b], ("transB", 1L));
        }
        string source = ggufStem + ".weight";
        if (source == "output.weight" && _c.TiedEmbeddings) source = "token_embd.weight";
        var spec = _weights.Tensors.Single(t => t.GgufName == source);
        int n = (int)spec.Shape[0], k = (int)spec.Shape[1], bs = _options.BlockSize;
        var (packed, scales) = Int4Blocks.Quantize(_weights.Read(source), n, k, bs);
        int blocks = Int4Blocks.BlockCount(k, bs);
        string qName = hfStem + ".weight_Q4", sName = hfStem + ".weight_scales";
        _graph.Initializers.Add(_data.Add(qName, OnnxDataType.UInt8, [n, blocks, bs / 2], packed));
        _graph.Initializers.Add(_data.Add(sName, [n, blocks], scales));
        step(ggufStem + ".weight");
        string y = Node("MatMulNBits", at + "/MatMulNBits", [input, qName, sName],
            ("K", (long)k), ("N", (long)n), ("bits", 4L), ("block_size", (long)bs), ("accuracy_level", (long)_options.AccuracyLevel));
        _graph.Nodes[^1] = _graph.Nodes[^1] with { Domain = Domain };
        return b is null ? y : Node("Add", at + "/bias", [y, b]);
    }

    /// <summary>A float weight streamed into the data file under its Hugging Face name.</summary>
    private string Weight(string ggufName, string hfName, Action<string> step)
    {
        var spec = _weights.Tensors.Single(t => t.GgufName == ggufName);
        var values = _weights.Read(ggufName);
        _graph.Initializers.Add(_io == OnnxDataType.Float16
            ? _data.Add(hfName, spec.Shape, Array.ConvertAll(values, v => (Half)v))
            : _data.Add(hfName, spec.Shape, values));
        step(ggufName);
        return hfName;
    }

    /// <summary>cos/sin caches [context, head_dim/2]: angle pos·invFreq[j] (rope scaling is in invFreq), computed in double.</summary>
    private (string Cos, string Sin) RotaryCaches()
    {
        int positions = _c.ContextLength, half = _c.HeadDim / 2;
        var inv = _weights.InverseFrequencies;
        var cos = new float[(long)positions * half];
        var sin = new float[cos.Length];
        for (int p = 0; p < positions; p++)
            for (int j = 0; j < half; j++)
            {
                double angle = p * inv[j];
                cos[p * half + j] = (float)Math.Cos(angle);
                sin[p * half + j] = (float)Math.Sin(angle);
            }
        long[] shape = [positions, half];
        if (_io == OnnxDataType.Float16)
        {
            _graph.Initializers.Add(_data.Add("cos_cache", shape, Array.ConvertAll(cos, v => (Half)v)));
            _graph.Initializers.Add(_data.Add("sin_cache", shape, Array.ConvertAll(sin, v => (Half)v)));
        }
        else
        {
            _graph.Initializers.Add(_data.Add("cos_cache", shape, cos));
            _graph.Initializers.Add(_data.Add("sin_cache", shape, sin));
        }
        return ("cos_cache", "sin_cache");
    }

    private string Norm(string at, string input, string weight) =>
        Node("SimplifiedLayerNormalization", at + "/SimplifiedLayerNormalization", [input, weight],
            ("epsilon", (float)_c.RmsEpsilon), ("axis", -1L), ("stash_type", 1L));

    /// <summary>Adds a node with one output named after the node; returns that output.</summary>
    private string Node(string op, string name, string[] inputs, params (string Name, object Value)[] attributes)
    {
        string output = name + "/output_0";
        _graph.Nodes.Add(new OnnxNode(op, name, inputs, [output], attributes.Select(a => new OnnxAttribute(a.Name, a.Value)).ToList()));
        return output;
    }

    /// <summary>A small int64 constant, stored inline.</summary>
    private string Const(string name, long[] values) => AddInline(name, [values.Length], values);

    private string ScalarConst(string name, long value) => AddInline(name, [], [value]);

    private string AddInline(string name, long[] dims, long[] values)
    {
        _graph.Initializers.Add(new OnnxInitializer(name, OnnxDataType.Int64, dims, MemoryMarshal.AsBytes(values.AsSpan()).ToArray(), null));
        return name;
    }
}
