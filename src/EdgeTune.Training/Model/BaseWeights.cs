using EdgeTune.Core;
using EdgeTune.Core.Quantization;
using EdgeTune.Formats.Gguf;
using EdgeTune.Kernels;
using EdgeTune.Models.Architectures;
using EdgeTune.Models.Reference;

namespace EdgeTune.Training.Model;

/// <summary>
/// The base model's weights as the trainer reads them: float32 rows by GGUF tensor name, the rope pairing the
/// weights need (HF folders and qwen2 GGUFs: half; llama GGUFs, whose Q/K rows are permuted: interleaved) and
/// the rope frequencies. For a GGUF, <see cref="TryRaw"/> gives a tensor's stored blocks, so a QLoRA run over
/// the GGUF-quantised base trains against exactly the bytes that will ship.
/// </summary>
public sealed class BaseWeights : IDisposable
{
    private readonly GgufFile? _gguf;
    private readonly HfModelFolder? _hf;
    private readonly Dictionary<string, TensorSpec> _specs;

    private BaseWeights(string path, ModelConfig config, RopeLayout rope, float[] invFreq, GgufFile? gguf, HfModelFolder? hf, IReadOnlyList<TensorSpec> specs)
    {
        Path = path;
        Config = config;
        Rope = rope;
        InverseFrequencies = invFreq;
        _gguf = gguf;
        _hf = hf;
        _specs = specs.ToDictionary(s => s.GgufName, StringComparer.Ordinal);
    }

    public string Path { get; }
    public ModelConfig Config { get; }
    public RopeLayout Rope { get; }
    public float[] InverseFrequencies { get; }
    public bool IsGguf => _gguf is not null;
    public GgufFile? Gguf => _gguf;

    public static BaseWeights Open(string path)
    {
        if (Directory.Exists(path))
        {
            var hf = HfModelFolder.Open(path);
            var c = hf.Config;
            var inv = Ops.RopeInverseFrequencies(c.RopeTheta, c.HeadDim, c.RopeScaling?.FrequencyFactors(c.RopeTheta, c.HeadDim));
            return new BaseWeights(path, c, RopeLayout.Half, Array.ConvertAll(inv, d => (float)d), null, hf, hf.Tensors);
        }
        if (!File.Exists(path)) throw new EdgeTuneException($"{path}: no such base model (a GGUF file or a Hugging Face folder)");
        var file = GgufFile.Open(path);
        try
        {
            var c = ModelConfig.FromGguf(file);
            float[]? factors = null;
            if (file.FindTensor("rope_freqs.weight") is { } rf)
            {
                if (rf.ElementCount != c.HeadDim / 2)
                    throw new FileFormatException(path, "tensor 'rope_freqs.weight'", $"has {rf.ElementCount} values, head_dim/2 = {c.HeadDim / 2} expected");
                factors = new float[rf.ElementCount];
                file.ReadRows(rf, 0, factors);
            }
            var inv = Ops.RopeInverseFrequencies(c.RopeTheta, c.HeadDim, factors);
            return new BaseWeights(path, c, c.GgufPermutesQk ? RopeLayout.Interleaved : RopeLayout.Half, Array.ConvertAll(inv, d => (float)d), file, null, TensorMap.Tensors(c));
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    public TensorSpec Spec(string ggufName) =>
        _specs.TryGetValue(ggufName, out var s) ? s : throw new EdgeTuneException($"{Path}: the model has no tensor '{ggufName}'");

    public bool Has(string ggufName) => _specs.ContainsKey(ggufName);

    /// <summary>The tensor in float32, PyTorch's [out][in] row-major order (GGUF's [ne1][ne0] is the same).</summary>
    public float[] Read(string ggufName)
    {
        var spec = Spec(ggufName);
        if (_hf is not null) return _hf.ReadFloat32(spec);
        var info = Checked(ggufName, spec);
        var values = new float[spec.Elements];
        _gguf!.ReadRows(info, 0, values);
        return values;
    }

    private GgufTensorInfo Checked(string ggufName, TensorSpec spec)
    {
        var info = _gguf!.FindTensor(ggufName) ?? throw new FileFormatException(Path, $"tensor '{ggufName}'", $"missing; a {Config.Architecture} model with this metadata needs it");
        if (!info.Shape.SequenceEqual(spec.GgufShape))
            throw new FileFormatException(Path, $"tensor '{ggufName}'", $"shape [{string.Join(", ", info.Shape)}] does not match the metadata (expected [{string.Join(", ", spec.GgufShape)}])");
        if (!QuantCodecs.CanDequantize(info.Type))
            throw new FileFormatException(Path, $"tensor '{ggufName}'", $"type {GgmlTypes.Name(info.Type)} cannot be dequantised");
        return info;
    }

    /// <summary>
    /// Values [first, first + destination.Length) of the tensor in float32 ([out][in] row-major), dequantised from the
    /// mapping as they are read: how large tensors stream into quantised or device storage without a float32 copy.
    /// </summary>
    public void Read(string ggufName, long first, Span<float> destination)
    {
        var spec = Spec(ggufName);
        if (first < 0 || first + destination.Length > spec.Elements)
            throw new ArgumentOutOfRangeException(nameof(first), $"[{first}, {first + destination.Length}) lies outside the {spec.Elements} values of '{ggufName}'");
        if (_hf is not null)
        {
            _hf.ReadFloat32(spec, first, destination);
            return;
        }
        var info = Checked(ggufName, spec);
        long rowLength = info.RowLength;
        float[]? row = null;
        while (destination.Length > 0)
        {
            long r = first / rowLength, offset = first % rowLength;
            if (offset == 0 && destination.Length >= rowLength)
            {
                int whole = (int)(destination.Length / rowLength * rowLength);
                _gguf!.ReadRows(info, r, destination[..whole]);
                destination = destination[whole..];
                first += whole;
                continue;
            }
            row ??= new float[rowLength];
            _gguf!.ReadRows(info, r, row);
            int take = (int)Math.Min(rowLength - offset, destination.Length);
            row.AsSpan((int)offset, take).CopyTo(destination);
            destination = destination[take..];
            first += take;
        }
    }

    /// <summary>The type a GGUF stores the tensor in; null for a Hugging Face folder or a tensor the file lacks.</summary>
    public GgmlType? StoredType(string ggufName) => _gguf?.FindTensor(ggufName)?.Type;

    /// <summary>The stored bytes of a GGUF tensor of type <paramref name="type"/>, or null (HF folder, or another type).</summary>
    public byte[]? TryRaw(string ggufName, GgmlType type)
    {
        if (_gguf?.FindTensor(ggufName) is not { } info || info.Type != type) return null;
        return _gguf.GetData(info).Span(0, checked((int)info.ByteLength)).ToArray();
    }

    public void Dispose()
    {
        _gguf?.Dispose();
        _hf?.Dispose();
    }
}
