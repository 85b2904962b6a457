using System.Runtime.InteropServices;
using EdgeTune.Core;
using EdgeTune.Core.Quantization;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Safetensors;
using EdgeTune.Models.Architectures;

namespace EdgeTune.Models.Conversion;

/// <summary>
/// Hugging Face folder → GGUF, as convert_hf_to_gguf.py writes it for the llama family: llama.cpp's
/// metadata keys with their exact value types, its tensor names, the Q/K row permutation for the "llama"
/// graph, 1-D tensors kept F32, and rope_freqs for llama-3 rope scaling. Streaming: each tensor is read
/// from the memory-mapped safetensors and converted a chunk at a time while the GGUF is written, so memory
/// stays at a few megabytes whatever the model size.
/// </summary>
public static class HfToGgufConverter
{
    /// <summary>Elements converted per chunk (4 MiB of float32): large enough for throughput, small for memory.</summary>
    private const int ChunkElements = 1 << 20;

    /// <summary>
    /// Convert <paramref name="hfFolder"/> to <paramref name="outPath"/> with 2-D weights stored as
    /// <paramref name="outType"/> (F32, F16, BF16 or Q8_0). <paramref name="addVocabulary"/> adds the tokenizer
    /// keys (tokenizer.ggml.*); without them llama.cpp will not load the file. Returns the model's config.
    /// </summary>
    public static ModelConfig Convert(string hfFolder, string outPath, GgmlType outType, Action<GgufMetadata>? addVocabulary = null,
        IProgress<(int Done, int Total, string Name)>? progress = null, CancellationToken cancellationToken = default)
    {
        uint fileType = outType switch
        {
            GgmlType.F32 => 0,   // LLAMA_FTYPE_ALL_F32
            GgmlType.F16 => 1,   // LLAMA_FTYPE_MOSTLY_F16
            GgmlType.Q8_0 => 7,  // LLAMA_FTYPE_MOSTLY_Q8_0
            GgmlType.BF16 => 32, // LLAMA_FTYPE_MOSTLY_BF16
            _ => throw new EdgeTuneException($"output type {GgmlTypes.Name(outType)} is not supported for conversion (use F32, F16, BF16 or Q8_0)"),
        };
        using var hf = HfModelFolder.Open(hfFolder);
        var c = hf.Config;
        if (c.RopeScaling is not null && !c.GgufPermutesQk)
            throw FileFormatException.AtKey(hf.ConfigPath, "rope_scaling", $"llama-3 rope scaling has no GGUF form for llama.cpp's {c.Architecture} graph");

        var writer = new GgufWriter();
        WriteMetadata(writer.Metadata, hf, fileType, outType);
        if (addVocabulary is not null) addVocabulary(writer.Metadata);

        if (c.RopeScaling is { } scaling)
        {
            // convert_hf_to_gguf.py emits rope_freqs before the model's own tensors.
            var factors = scaling.FrequencyFactors(c.RopeTheta, c.HeadDim);
            writer.AddTensor("rope_freqs.weight", GgmlType.F32, [factors.Length], MemoryMarshal.AsBytes(factors.AsSpan()).ToArray());
        }
        foreach (var spec in hf.Tensors)
        {
            var type = TensorType(spec, outType);
            writer.AddTensor(spec.GgufName, type, spec.GgufShape, stream => WriteTensor(stream, hf, spec, type));
        }
        writer.Write(outPath, progress, cancellationToken);
        return c;
    }

    /// <summary>convert_hf_to_gguf.py's choice: 1-D tensors F32; 2-D the requested type, F16 where rows are not whole Q8_0 blocks.</summary>
    public static GgmlType TensorType(TensorSpec spec, GgmlType outType)
    {
        if (spec.Shape.Length == 1) return GgmlType.F32;
        if (GgmlTypes.IsQuantized(outType) && spec.Shape[^1] % GgmlTypes.BlockSize(outType) != 0) return GgmlType.F16;
        return outType;
    }

    private static void WriteMetadata(GgufMetadata m, HfModelFolder hf, uint fileType, GgmlType outType)
    {
        var c = hf.Config;
        string a = c.Architecture;
        var card = ModelCard.Read(hf.Folder);
        m.Set("general.architecture", GgufValue.String(a));
        m.Set("general.type", GgufValue.String("model"));
        // convert_hf_to_gguf.py falls back to the folder's name when the card names no model.
        m.Set("general.name", GgufValue.String(card.Name ?? Path.GetFileName(Path.GetFullPath(hf.Folder).TrimEnd(Path.DirectorySeparatorChar))));
        if (card.License is { } license) m.Set("general.license", GgufValue.String(license));
        m.Set($"{a}.block_count", GgufValue.U32((uint)c.Layers));
        m.Set($"{a}.context_length", GgufValue.U32((uint)c.ContextLength));
        m.Set($"{a}.embedding_length", GgufValue.U32((uint)c.HiddenSize));
        m.Set($"{a}.feed_forward_length", GgufValue.U32((uint)c.IntermediateSize));
        m.Set($"{a}.attention.head_count", GgufValue.U32((uint)c.Heads));
        m.Set($"{a}.attention.head_count_kv", GgufValue.U32((uint)c.KvHeads));
        m.Set($"{a}.rope.freq_base", GgufValue.F32((float)c.RopeTheta));
        m.Set($"{a}.attention.layer_norm_rms_epsilon", GgufValue.F32((float)c.RmsEpsilon));
        if (c.HeadDim * c.Heads != c.HiddenSize)
        {
            // llama.cpp assumes embedding_length / head_count unless told otherwise.
            m.Set($"{a}.attention.key_length", GgufValue.U32((uint)c.HeadDim));
            m.Set($"{a}.attention.value_length", GgufValue.U32((uint)c.HeadDim));
        }
        m.Set("general.file_type", GgufValue.U32(fileType));
        if (a == "llama")
        {
            m.Set($"{a}.vocab_size", GgufValue.U32((uint)c.VocabSize));
            m.Set($"{a}.rope.dimension_count", GgufValue.U32((uint)c.HeadDim));
        }
        if (GgmlTypes.IsQuantized(outType)) m.Set("general.quantization_version", GgufValue.U32(2));
    }

    /// <summary>Stream one tensor: read float32 a chunk at a time (one head at a time when rows are permuted), permute, encode.</summary>
    private static void WriteTensor(Stream stream, HfModelFolder hf, TensorSpec spec, GgmlType type)
    {
        var info = hf.Checkpoint.GetTensor(spec.HfName);
        if (spec.PermuteHeads == 0 && SameEncoding(info.DType, type))
        {
            // Same bytes on both sides: copy straight from the mapping.
            var data = hf.Checkpoint.GetData(spec.HfName);
            for (long done = 0; done < data.Length; done += ChunkElements)
                stream.Write(data.Slice(done, (int)Math.Min(ChunkElements, data.Length - done)));
            return;
        }

        long rowLength = spec.Shape.Length == 2 ? spec.Shape[1] : 1, rows = spec.Shape[0];
        // The permutation only moves rows within a head, so a head is the natural chunk when permuting.
        long chunkRows = spec.PermuteHeads > 0 ? rows / spec.PermuteHeads : Math.Max(1, ChunkElements / rowLength);
        var source = new float[chunkRows * rowLength];
        var permuted = spec.PermuteHeads > 0 ? new float[source.Length] : source;
        var bytes = new byte[GgmlTypes.RowBytes(type, rowLength) * chunkRows];
        for (long row = 0; row < rows; row += chunkRows)
        {
            int n = (int)Math.Min(chunkRows, rows - row);
            var chunk = source.AsSpan(0, (int)(n * rowLength));
            hf.Checkpoint.ReadAsFloat32(spec.HfName, row * rowLength, chunk);
            if (spec.PermuteHeads > 0)
                for (int r = 0; r < n; r++)
                {
                    int target = TensorMap.PermutedRow(r, n, 1);
                    chunk.Slice((int)(r * rowLength), (int)rowLength).CopyTo(permuted.AsSpan((int)(target * rowLength), (int)rowLength));
                }
            int byteCount = (int)(GgmlTypes.RowBytes(type, rowLength) * n);
            QuantCodecs.Quantize(type, permuted.AsSpan(0, chunk.Length), bytes.AsSpan(0, byteCount));
            stream.Write(bytes, 0, byteCount);
        }
    }

    private static bool SameEncoding(SafetensorsDType dtype, GgmlType type) =>
        (dtype, type) is (SafetensorsDType.F32, GgmlType.F32) or (SafetensorsDType.F16, GgmlType.F16) or (SafetensorsDType.BF16, GgmlType.BF16);
}
