using EdgeTune.Core;
using EdgeTune.Formats.Safetensors;

namespace EdgeTune.Models.Architectures;

/// <summary>
/// A Hugging Face checkpoint folder opened and checked against its config.json: every tensor the
/// architecture needs is present with the shape the config implies and a float dtype, and nothing
/// unexpected is there. Both the reference model and the converter read weights through it.
/// </summary>
public sealed class HfModelFolder : IDisposable
{
    private HfModelFolder(string folder, ModelConfig config, SafetensorsCheckpoint checkpoint, IReadOnlyList<TensorSpec> tensors)
    {
        Folder = folder;
        Config = config;
        Checkpoint = checkpoint;
        Tensors = tensors;
    }

    public string Folder { get; }
    public string ConfigPath => Path.Combine(Folder, "config.json");
    public ModelConfig Config { get; }
    public SafetensorsCheckpoint Checkpoint { get; }
    public IReadOnlyList<TensorSpec> Tensors { get; }

    public static HfModelFolder Open(string folder)
    {
        if (!Directory.Exists(folder)) throw new EdgeTuneException($"{folder}: no such folder (expected a Hugging Face checkpoint folder)");
        var config = ModelConfig.FromHuggingFace(folder);
        var checkpoint = SafetensorsCheckpoint.Open(folder);
        try
        {
            var tensors = TensorMap.Tensors(config);
            Check(config, checkpoint, tensors);
            return new HfModelFolder(folder, config, checkpoint, tensors);
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    private static void Check(ModelConfig config, SafetensorsCheckpoint checkpoint, IReadOnlyList<TensorSpec> tensors)
    {
        string source = checkpoint.IndexPath ?? checkpoint.Shards[0].Path;
        foreach (var spec in tensors)
        {
            if (!checkpoint.Contains(spec.HfName))
                throw new FileFormatException(source, $"tensor '{spec.HfName}'", $"missing; a {config.HfModelType} model with this config.json needs it");
            var info = checkpoint.GetTensor(spec.HfName);
            string file = checkpoint.GetShard(spec.HfName).Path;
            if (!info.Shape.SequenceEqual(spec.Shape))
                throw new FileFormatException(file, $"tensor '{spec.HfName}'",
                    $"shape [{string.Join(", ", info.Shape)}] does not match config.json (expected [{string.Join(", ", spec.Shape)}])");
            if (info.DType is not (SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16 or SafetensorsDType.F64))
                throw new FileFormatException(file, $"tensor '{spec.HfName}'", $"dtype {info.DType.Name()} is not a float type");
        }
        var expected = tensors.Select(t => t.HfName).ToHashSet(StringComparer.Ordinal);
        foreach (var info in checkpoint.Tensors)
        {
            if (expected.Contains(info.Name) || TensorMap.IsIgnoredHfTensor(info.Name)) continue;
            // Some tied checkpoints still save lm_head (a copy of the embeddings); transformers ignores it too.
            if (config.TiedEmbeddings && info.Name == "lm_head.weight") continue;
            throw new FileFormatException(checkpoint.GetShard(info.Name).Path, $"tensor '{info.Name}'",
                $"not part of a {config.HfModelType} model as config.json describes it");
        }
    }

    /// <summary>A whole tensor as float32, PyTorch layout (row-major [out, in]).</summary>
    public float[] ReadFloat32(TensorSpec spec)
    {
        var values = new float[spec.Elements];
        Checkpoint.ReadAsFloat32(spec.HfName, values);
        return values;
    }

    /// <summary>Values [firstElement, firstElement + destination.Length) of a tensor as float32, PyTorch layout.</summary>
    public void ReadFloat32(TensorSpec spec, long firstElement, Span<float> destination) =>
        Checkpoint.ReadAsFloat32(spec.HfName, firstElement, destination);

    public void Dispose() => Checkpoint.Dispose();
}
