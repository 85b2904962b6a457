using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Models.Adapters;
using EdgeTune.Models.Architectures;

namespace EdgeTune.Models.Reference;

/// <summary>
/// The weights of a llama-family model, read one tensor at a time by GGUF name as float32 in PyTorch layout
/// ([out, in] row-major), with a LoRA adapter merged in as each is read. A Hugging Face folder gives rotate_half
/// Q/K rows; a "llama" GGUF gives llama.cpp's permuted rows (<see cref="Rope"/> says which). The reference
/// forward and the exporters read weights through this one place.
/// </summary>
public sealed class ModelWeights : IDisposable
{
    // (GGUF name, a buffer of exactly the tensor's size or null for a new one) → the weights, adapter merged.
    private readonly Func<string, float[]?, float[]> _read;
    private readonly IDisposable _source;

    private ModelWeights(string path, ModelConfig config, RopeStyle rope, double[] invFreq, IReadOnlyList<TensorSpec> tensors, Func<string, float[]?, float[]> read, IDisposable source)
    {
        Path = path;
        Config = config;
        Rope = rope;
        InverseFrequencies = invFreq;
        Tensors = tensors;
        _read = read;
        _source = source;
    }

    public string Path { get; }
    public ModelConfig Config { get; }
    public RopeStyle Rope { get; }
    /// <summary>Rotary inverse frequencies, head_dim/2 values, rope scaling already applied.</summary>
    public double[] InverseFrequencies { get; }
    public IReadOnlyList<TensorSpec> Tensors { get; }

    /// <summary>A Hugging Face folder or a .gguf file, told apart by whether <paramref name="path"/> is a folder.</summary>
    public static ModelWeights Open(string path, LoraAdapter? adapter = null) =>
        Directory.Exists(path) ? FromHuggingFace(path, adapter) : FromGguf(path, adapter);

    public static ModelWeights FromHuggingFace(string folder, LoraAdapter? adapter = null)
    {
        var hf = HfModelFolder.Open(folder);
        try
        {
            var c = hf.Config;
            var factors = c.RopeScaling?.FrequencyFactors(c.RopeTheta, c.HeadDim);
            var invFreq = Ops.RopeInverseFrequencies(c.RopeTheta, c.HeadDim, factors);
            var merge = adapter?.Bind(c, hf.Tensors, AdapterLayout.HuggingFace);
            float[] Read(string ggufName, float[]? into)
            {
                var spec = hf.Tensors.Single(t => t.GgufName == ggufName);
                var w = Destination(spec, into);
                hf.Checkpoint.ReadAsFloat32(spec.HfName, w);
                return merge is null ? w : merge(ggufName, w);
            }
            return new ModelWeights(folder, c, RopeStyle.Half, invFreq, hf.Tensors, Read, hf);
        }
        catch
        {
            hf.Dispose();
            throw;
        }
    }

    public static ModelWeights FromGguf(string path, LoraAdapter? adapter = null)
    {
        var file = GgufFile.Open(path);
        try
        {
            var c = ModelConfig.FromGguf(file);
            var specs = TensorMap.Tensors(c);
            var merge = adapter?.Bind(c, specs, AdapterLayout.Gguf);
            float[] Read(string ggufName, float[]? into)
            {
                var spec = specs.Single(t => t.GgufName == ggufName);
                var info = file.FindTensor(ggufName) ?? throw new FileFormatException(path, $"tensor '{ggufName}'", $"missing; a {c.Architecture} model with this metadata needs it");
                if (!info.Shape.SequenceEqual(spec.GgufShape))
                    throw new FileFormatException(path, $"tensor '{ggufName}'", $"shape [{string.Join(", ", info.Shape)}] does not match the metadata (expected [{string.Join(", ", spec.GgufShape)}])");
                if (!Core.Quantization.QuantCodecs.CanDequantize(info.Type))
                    throw new FileFormatException(path, $"tensor '{ggufName}'", $"type {GgmlTypes.Name(info.Type)} cannot be dequantised");
                var values = Destination(spec, into);
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
            return new ModelWeights(path, c, c.GgufPermutesQk ? RopeStyle.Interleaved : RopeStyle.Half, invFreq, specs, Read, file);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>One weight by its GGUF name ("blk.0.attn_q.weight"), float32, PyTorch layout, adapter merged.</summary>
    public float[] Read(string ggufName) => _read(ggufName, null);

    /// <summary>
    /// As <see cref="Read"/>, into <paramref name="destination"/>, which must hold exactly the tensor's elements. A caller
    /// streaming every tensor (the merged export) reuses a few buffers this way, instead of leaving a garbage array per
    /// tensor that the GC may keep until the whole model has passed through memory.
    /// </summary>
    public void ReadInto(string ggufName, float[] destination) => _read(ggufName, destination);

    private static float[] Destination(TensorSpec spec, float[]? into)
    {
        if (into is null) return new float[spec.Elements];
        if (into.LongLength != spec.Elements)
            throw new ArgumentException($"'{spec.GgufName}' has {spec.Elements} values, the buffer {into.LongLength}", nameof(into));
        return into;
    }

    public void Dispose() => _source.Dispose();
}
