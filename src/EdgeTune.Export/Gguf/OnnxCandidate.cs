using EdgeTune.Core;
using EdgeTune.Export.Onnx;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Onnx;
using EdgeTune.Profiles;
using EdgeTune.Profiles.Fit;

namespace EdgeTune.Export.Gguf;

/// <summary>
/// The ONNX int4 candidate of --type auto: the merged float32 model exported by <see cref="OnnxExporter"/> (MatMulNBits
/// weights, float32 embedding, KV cache and activations: the form ONNX Runtime GenAI runs on the CPU), sized with the same
/// arithmetic as the GGUF rows so the table compares like with like.
/// </summary>
public static class OnnxCandidate
{
    /// <summary>The row's name in the table (and --type), and the folder it ships as.</summary>
    public const string Type = "ONNX-int4";
    public const string Folder = "model-onnx-int4";
    public const string Runtime = "onnxruntime-genai";

    /// <summary>Why the row is left out for this profile and mode, or null when it is a candidate.</summary>
    public static string? NotConsideredBecause(DeviceProfile profile, GgufExportMode mode)
    {
        if (mode == GgufExportMode.Separate)
            return $"{Type}: not considered in a separate export: an ONNX folder carries the adapter merged into its weights, so the adapter could not stay hot-swappable (export with --merge to consider it)";
        if (!profile.Runtimes.Any(r => r.StartsWith("onnxruntime", StringComparison.Ordinal)))
            return $"{Type}: {profile.File} enables no ONNX Runtime ([runtimes] onnxruntime_cpu, onnxruntime_cuda or onnxruntime_tensorrt), so the device could not run it";
        return null;
    }

    /// <summary>Bytes of every file in the folder: what ships, and what the runtime maps.</summary>
    public static long FolderBytes(string folder) =>
        Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);

    /// <summary>
    /// The fit of an exported folder on the profile: weights are the folder's bytes; the KV cache is float32 (the int4
    /// export keeps its cache in float32, where llama.cpp's is F16); the runtime buffers are the GGUF rows' estimate
    /// (<paramref name="runtimeBytes"/>): ONNX Runtime's own are not modelled, and the board's budget should not differ
    /// between rows for want of a figure. The decode bound reads every initializer once per token except the embedding,
    /// of which one row is gathered (the int4 export always has its own quantised lm_head).
    /// </summary>
    public static FitRow Fit(DeviceProfile profile, ModelShape model, string folder, int context, long runtimeBytes)
    {
        long weights = FolderBytes(folder);
        long kv = MemoryMath.KvCacheBytes(model, context, GgmlType.F32);
        var (graph, _, _) = OnnxModelFile.Read(Path.Combine(folder, OnnxExporter.ModelFile));
        // Named as MemoryMath knows them: the embedding table (one row read per token) and a separate output matrix.
        var tensors = graph.Initializers.Select(i => (
            Name: i.Name switch { "model.embed_tokens.weight" => "token_embd.weight", "lm_head.weight_Q4" => "output.weight", _ => i.Name },
            Bytes: i.External?.Length ?? i.Raw?.LongLength ?? 0L,
            Rows: i.Dims.Count > 0 ? i.Dims[0] : 1L)).ToList();
        if (tensors.All(t => t.Name != "token_embd.weight") || tensors.All(t => t.Name != "output.weight"))
            throw new EdgeTuneException($"{Path.Combine(folder, OnnxExporter.ModelFile)}: no model.embed_tokens.weight or lm_head.weight_Q4 initializer (not an int4 export by EdgeTune)");
        long perToken = MemoryMath.WeightBytesReadPerToken(tensors) + kv;
        return FitPlanner.Candidate(profile, model.Parameters, Type, isFile: false, requantizes: false, weights, adapterBytes: 0, kv, runtimeBytes, perToken);
    }
}
