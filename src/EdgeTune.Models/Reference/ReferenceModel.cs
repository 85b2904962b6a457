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
    public static ReferenceModel Open(string path, ReferencePrecision precision = ReferencePrecision.Float32, LoraAdapter? adapter = null)
    {
        using var weights = ModelWeights.Open(path, adapter);
        return FromWeights(weights, precision);
    }

    public static ReferenceModel FromHuggingFace(string folder, ReferencePrecision precision = ReferencePrecision.Float32, LoraAdapter? adapter = null)
    {
        using var weights = ModelWeights.FromHuggingFace(folder, adapter);
        return FromWeights(weights, precision);
    }

    public static ReferenceModel FromGguf(string path, ReferencePrecision precision = ReferencePrecision.Float32, LoraAdapter? adapter = null)
    {
        using var weights = ModelWeights.FromGguf(path, adapter);
        return FromWeights(weights, precision);
    }

    /// <summary>
    /// The forward over <paramref name="weights"/>, each tensor passed through <paramref name="transform"/>
    /// (GGUF name, values) when given: the forward over weights as an exporter stores them (for example
    /// quantised and dequantised again). With a transform, a tied output head is read as "output.weight" of
    /// its own (the embedding's values), since an export may store the head differently from the embedding.
    /// </summary>
    public static ReferenceModel FromWeights(ModelWeights weights, ReferencePrecision precision = ReferencePrecision.Float32, Func<string, float[], float[]>? transform = null)
    {
        var c = weights.Config;
        Func<string, float[]> read = transform is null
            ? weights.Read
            : name => transform(name, weights.Read(name == "output.weight" && c.TiedEmbeddings ? "token_embd.weight" : name));
        return Build(c, precision, weights.Rope, weights.InverseFrequencies, read, separateOutput: transform is not null);
    }

    private static ReferenceModel Build(ModelConfig c, ReferencePrecision precision, RopeStyle rope, double[] invFreq, Func<string, float[]> read, bool separateOutput) =>
        precision == ReferencePrecision.Float64
            ? new ReferenceModel(c, precision, rope, new Graph<double>(c, rope, invFreq, read, separateOutput).Run)
            : new ReferenceModel(c, precision, rope, new Graph<float>(c, rope, invFreq, read, separateOutput).Run);

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

        public Graph(ModelConfig c, RopeStyle rope, double[] invFreq, Func<string, float[]> read, bool separateOutput)
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
            _output = c.TiedEmbeddings && !separateOutput ? _embed : R("output.weight");
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
