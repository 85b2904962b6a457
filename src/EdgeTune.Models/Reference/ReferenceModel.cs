using System.Numerics;
using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Models.Adapters;
using EdgeTune.Models.Architectures;

namespace EdgeTune.Models.Reference;

public enum ReferencePrecision
{
    Float32,
    Float64,
}

/// <summary>
/// The plain CPU forward of the llama family: the executable specification. It reads a Hugging Face
/// folder (weights as PyTorch holds them, rotate_half rope) or a GGUF file (weights as llama.cpp holds them,
/// dequantised from any type; interleaved rope on the permuted Q/K rows of "llama"), and both must give the
/// same logits. It recomputes the whole sequence every call: clear before fast.
/// </summary>
public sealed class ReferenceModel
{
    private readonly Func<int[], bool, float[]> _forward;

    private ReferenceModel(ModelConfig config, ReferencePrecision precision, RopeStyle rope, Func<int[], bool, float[]> forward)
    {
        Config = config;
        Precision = precision;
        Rope = rope;
        _forward = forward;
    }

    public ModelConfig Config { get; }
    public ReferencePrecision Precision { get; }

    /// <summary>The rope form this model's weights need (Half for HF and for qwen2 GGUFs; Interleaved for llama GGUFs).</summary>
    public RopeStyle Rope { get; }

    /// <summary>
    /// A Hugging Face folder or a .gguf file, told apart by whether <paramref name="path"/> is a folder.
    /// <paramref name="adapter"/>, when given, is merged into the weights as they are read (W + scale·B·A).
    /// </summary>
    public static ReferenceModel Open(string path, ReferencePrecision precision = ReferencePrecision.Float32, LoraAdapter? adapter = null) =>
        Directory.Exists(path) ? FromHuggingFace(path, precision, adapter) : FromGguf(path, precision, adapter);

    public static ReferenceModel FromHuggingFace(string folder, ReferencePrecision precision = ReferencePrecision.Float32, LoraAdapter? adapter = null)
    {
        using var hf = HfModelFolder.Open(folder);
        var c = hf.Config;
        var factors = c.RopeScaling?.FrequencyFactors(c.RopeTheta, c.HeadDim);
        var invFreq = Ops.RopeInverseFrequencies(c.RopeTheta, c.HeadDim, factors);
        var merge = adapter?.Bind(c, hf.Tensors, AdapterLayout.HuggingFace);
        float[] Read(string ggufName)
        {
            var w = hf.ReadFloat32(hf.Tensors.Single(t => t.GgufName == ggufName));
            return merge is null ? w : merge(ggufName, w);
        }
        return Build(c, precision, RopeStyle.Half, invFreq, Read);
    }

    public static ReferenceModel FromGguf(string path, ReferencePrecision precision = ReferencePrecision.Float32, LoraAdapter? adapter = null)
    {
        using var file = GgufFile.Open(path);
        var c = ModelConfig.FromGguf(file);
        var specs = TensorMap.Tensors(c);
        var merge = adapter?.Bind(c, specs, AdapterLayout.Gguf);
        float[] Read(string ggufName)
        {
            var spec = specs.Single(t => t.GgufName == ggufName);
            var info = file.FindTensor(ggufName) ?? throw new FileFormatException(path, $"tensor '{ggufName}'", $"missing; a {c.Architecture} model with this metadata needs it");
            if (!info.Shape.SequenceEqual(spec.GgufShape))
                throw new FileFormatException(path, $"tensor '{ggufName}'", $"shape [{string.Join(", ", info.Shape)}] does not match the metadata (expected [{string.Join(", ", spec.GgufShape)}])");
            if (!Core.Quantization.QuantCodecs.CanDequantize(info.Type))
                throw new FileFormatException(path, $"tensor '{ggufName}'", $"type {GgmlTypes.Name(info.Type)} cannot be dequantised");
            var values = new float[spec.Elements];
            file.ReadRows(info, 0, values); // ggml row-major [ne1][ne0] is PyTorch's [out][in]
            return merge is null ? values : merge(ggufName, values);
        }
        float[]? factors = null;
        if (file.FindTensor("rope_freqs.weight") is { } rf)
        {
            if (rf.ElementCount != c.HeadDim / 2)
                throw new FileFormatException(path, "tensor 'rope_freqs.weight'", $"has {rf.ElementCount} values, head_dim/2 = {c.HeadDim / 2} expected");
            factors = new float[rf.ElementCount];
            file.ReadRows(rf, 0, factors);
        }
        var invFreq = Ops.RopeInverseFrequencies(c.RopeTheta, c.HeadDim, factors);
        return Build(c, precision, c.GgufPermutesQk ? RopeStyle.Interleaved : RopeStyle.Half, invFreq, Read);
    }

    private static ReferenceModel Build(ModelConfig c, ReferencePrecision precision, RopeStyle rope, double[] invFreq, Func<string, float[]> read) =>
        precision == ReferencePrecision.Float64
            ? new ReferenceModel(c, precision, rope, new Graph<double>(c, rope, invFreq, read).Run)
            : new ReferenceModel(c, precision, rope, new Graph<float>(c, rope, invFreq, read).Run);

    /// <summary>Logits of every position: (T, V) row-major, position t predicting token t + 1.</summary>
    public float[] Forward(ReadOnlySpan<int> tokens)
    {
        if (tokens.IsEmpty) throw new ArgumentException("at least one token is needed", nameof(tokens));
        return _forward(tokens.ToArray(), false);
    }

    /// <summary>Logits of the last position: (V). Only that row goes through the output head (the vocabulary-sized matmul dominates for real vocabularies).</summary>
    public float[] LastLogits(ReadOnlySpan<int> tokens)
    {
        if (tokens.IsEmpty) throw new ArgumentException("at least one token is needed", nameof(tokens));
        return _forward(tokens.ToArray(), true);
    }

    /// <summary>Greedy continuation: <paramref name="count"/> argmax tokens (ties go to the lowest id).</summary>
    public int[] Greedy(IReadOnlyList<int> prompt, int count)
    {
        var sequence = prompt.ToList();
        var generated = new int[count];
        for (int i = 0; i < count; i++)
        {
            generated[i] = ArgMax(LastLogits(sequence.ToArray()));
            sequence.Add(generated[i]);
        }
        return generated;
    }

    public static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }

    /// <summary>Weights converted to <typeparamref name="T"/> once, and the forward over them.</summary>
    private sealed class Graph<T> where T : IFloatingPointIeee754<T>
    {
        private sealed record Layer(T[] AttnNorm, T[] Wq, T[]? Bq, T[] Wk, T[]? Bk, T[] Wv, T[]? Bv, T[] Wo, T[] FfnNorm, T[] Wgate, T[] Wup, T[] Wdown);

        private readonly ModelConfig _c;
        private readonly RopeStyle _rope;
        private readonly double[] _invFreq;
        private readonly T[] _embed, _outNorm, _output;
        private readonly Layer[] _layers;

        public Graph(ModelConfig c, RopeStyle rope, double[] invFreq, Func<string, float[]> read)
        {
            _c = c;
            _rope = rope;
            _invFreq = invFreq;
            T[] R(string name) => Array.ConvertAll(read(name), T.CreateChecked);
            T[]? B(string name) => c.AttentionBias ? R(name) : null;
            _embed = R("token_embd.weight");
            _layers = new Layer[c.Layers];
            for (int i = 0; i < c.Layers; i++)
            {
                string p = $"blk.{i}.";
                _layers[i] = new Layer(R(p + "attn_norm.weight"), R(p + "attn_q.weight"), B(p + "attn_q.bias"), R(p + "attn_k.weight"),
                    B(p + "attn_k.bias"), R(p + "attn_v.weight"), B(p + "attn_v.bias"), R(p + "attn_output.weight"),
                    R(p + "ffn_norm.weight"), R(p + "ffn_gate.weight"), R(p + "ffn_up.weight"), R(p + "ffn_down.weight"));
            }
            _outNorm = R("output_norm.weight");
            _output = c.TiedEmbeddings ? _embed : R("output.weight");
        }

        public float[] Run(int[] tokens, bool lastOnly)
        {
            int steps = tokens.Length, C = _c.HiddenSize;
            T eps = T.CreateChecked(_c.RmsEpsilon);
            var x = new T[steps * C];                  // x: (T,C), the residual stream
            var h = new T[steps * C];                  // h: (T,C), normalised input of a block
            var q = new T[steps * _c.QDim];            // q: (T, H·D)
            var k = new T[steps * _c.KvDim];           // k: (T, KV·D)
            var v = new T[steps * _c.KvDim];           // v: (T, KV·D)
            var att = new T[steps * _c.QDim];          // att: (T, H·D)
            var proj = new T[steps * C];               // proj: (T,C)
            var gate = new T[steps * _c.IntermediateSize]; // gate, up: (T,F)
            var up = new T[steps * _c.IntermediateSize];

            Ops.Embedding(_embed, tokens, C, x);
            foreach (var l in _layers)
            {
                Ops.RmsNorm<T>(x, l.AttnNorm, eps, h);
                Ops.MatMul(h, l.Wq, l.Bq, C, q);
                Ops.MatMul(h, l.Wk, l.Bk, C, k);
                Ops.MatMul(h, l.Wv, l.Bv, C, v);
                Ops.Rope<T>(q, _c.Heads, _c.HeadDim, _invFreq, _rope);
                Ops.Rope<T>(k, _c.KvHeads, _c.HeadDim, _invFreq, _rope);
                Ops.CausalAttention(q, k, v, _c.Heads, _c.KvHeads, _c.HeadDim, att);
                Ops.MatMul(att, l.Wo, null, _c.QDim, proj);
                Ops.AddInPlace<T>(x, proj);

                Ops.RmsNorm<T>(x, l.FfnNorm, eps, h);
                Ops.MatMul(h, l.Wgate, null, C, gate);
                Ops.MatMul(h, l.Wup, null, C, up);
                Ops.SwiGlu<T>(gate, up, gate);
                Ops.MatMul(gate, l.Wdown, null, _c.IntermediateSize, proj);
                Ops.AddInPlace<T>(x, proj);
            }
            Ops.RmsNorm<T>(x, _outNorm, eps, h);
            if (lastOnly) h = h[^C..];                 // h: (1,C), the last position only
            var logits = new T[h.Length / C * _c.VocabSize]; // logits: (T,V) or (1,V)
            Ops.MatMul(h, _output, null, C, logits);
            return Array.ConvertAll(logits, float.CreateChecked);
        }
    }
}
