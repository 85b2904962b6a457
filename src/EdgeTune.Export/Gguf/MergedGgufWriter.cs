using System.Runtime.InteropServices;
using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Models.Adapters;
using EdgeTune.Models.Reference;

namespace EdgeTune.Export.Gguf;

/// <summary>
/// Writes a GGUF model as float32 with a LoRA adapter merged in: the base's metadata (vocabulary, template) kept, every
/// tensor dequantised and merged through <see cref="ModelWeights"/> (the one merge the reference forward and the ONNX
/// export use), one tensor in memory at a time, written aside and renamed into place by <see cref="GgufWriter"/>. The result is what the quantiser takes for every candidate type, so a
/// quantised base is never merged into or re-quantised block by block.
/// </summary>
public static class MergedGgufWriter
{
    public static void Write(string baseGguf, LoraAdapter? adapter, string outPath, string? chatTemplate = null,
        IProgress<(int Done, int Total, string Name)>? progress = null, CancellationToken cancellationToken = default)
    {
        using var weights = ModelWeights.FromGguf(baseGguf, adapter);
        using var file = GgufFile.Open(baseGguf);
        var writer = new GgufWriter();
        foreach (var (key, value) in file.Metadata) writer.Metadata.Set(key, value);
        writer.Metadata.Remove("general.quantization_version");
        writer.Metadata.Set("general.file_type", GgufValue.U32(0)); // LLAMA_FTYPE_ALL_F32
        // The template the model was tuned and evaluated with travels in the file, so the device applies the same one.
        if (chatTemplate is not null) writer.Metadata.Set("tokenizer.chat_template", GgufValue.String(chatTemplate));

        var modelTensors = weights.Tensors.Select(t => t.GgufName).ToHashSet(StringComparer.Ordinal);
        // One buffer per tensor size, reused by every tensor of that size (a model has a handful of sizes): memory stays
        // at the largest tensor plus one of each layer shape, whatever the depth, and the GC has no garbage to sit on.
        var buffers = new Dictionary<long, float[]>();
        foreach (var info in file.Tensors)
        {
            var t = info;
            writer.AddTensor(t.Name, GgmlType.F32, t.Shape, stream =>
            {
                float[] values;
                if (modelTensors.Contains(t.Name))
                {
                    if (!buffers.TryGetValue(t.ElementCount, out values!)) buffers[t.ElementCount] = values = GC.AllocateUninitializedArray<float>(checked((int)t.ElementCount));
                    weights.ReadInto(t.Name, values);
                }
                else
                {
                    // Tensors outside the architecture's map (rope_freqs) are copied as float32; the header's size was checked against the file.
                    if (!Core.Quantization.QuantCodecs.CanDequantize(t.Type))
                        throw new FileFormatException(baseGguf, $"tensor '{t.Name}'", $"type {GgmlTypes.Name(t.Type)} cannot be dequantised");
                    values = new float[t.ElementCount];
                    file.ReadRows(t, 0, values);
                }
                stream.Write(MemoryMarshal.AsBytes(values.AsSpan()));
            });
        }
        writer.Write(outPath, progress, cancellationToken);
    }
}
