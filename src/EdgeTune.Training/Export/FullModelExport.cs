using System.Runtime.InteropServices;
using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Training.Model;

namespace EdgeTune.Training;

/// <summary>
/// A fully fine-tuned model as a GGUF llama.cpp loads: the base GGUF's metadata and vocabulary, every trained
/// tensor in float32 (quantise it afterwards with `edgetune quantize`), and untrained tensors (rope_freqs) copied.
/// </summary>
public static class FullModelExport
{
    public static void WriteGguf(string path, BaseWeights weights, TrainableLlama model)
    {
        if (weights.Gguf is not { } source)
            throw new EdgeTuneException($"{weights.Path}: full fine-tuning exports a GGUF from a GGUF base; convert the folder first (`edgetune convert {weights.Path} base.gguf`) and train from that");
        var writer = new GgufWriter();
        foreach (var (key, value) in source.Metadata)
            if (key != "general.file_type" && key != "general.alignment") writer.Metadata.Set(key, value);
        writer.Metadata.Set("general.file_type", GgufValue.U32(0));
        foreach (var info in source.Tensors)
        {
            if (model.Layout.Contains(info.Name))
            {
                var values = model.Read(info.Name);
                writer.AddTensor(info.Name, GgmlType.F32, info.Shape.ToArray(), MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
            }
            else
            {
                var bytes = source.GetData(info).Span(0, checked((int)info.ByteLength)).ToArray();
                writer.AddTensor(info.Name, info.Type, info.Shape.ToArray(), bytes);
            }
        }
        writer.Write(path);
    }
}
