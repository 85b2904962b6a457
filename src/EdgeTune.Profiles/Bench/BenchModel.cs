using EdgeTune.Core;
using EdgeTune.Formats.Onnx;
using EdgeTune.Profiles.Fit;

namespace EdgeTune.Profiles.Bench;

/// <summary>
/// What the benchmark reports about the model and needs for the bandwidth bound, from a GGUF file (llama.cpp)
/// or an exported ONNX Runtime GenAI folder (genai_config.json, model.onnx and its external data).
/// </summary>
public sealed record BenchModel
{
    public string? Name { get; init; }
    public required string Architecture { get; init; }
    public required string Type { get; init; }
    public required long FileBytes { get; init; }
    public required long WeightBytes { get; init; }
    public required long Parameters { get; init; }

    /// <summary>Weight bytes read to generate one token (one embedding row where the output matrix is separate).</summary>
    public required long WeightBytesReadPerToken { get; init; }

    /// <summary>KV cache bytes one position holds, all layers, keys and values.</summary>
    public required long KvBytesPerPosition { get; init; }

    /// <summary>The KV cache's element type when the model fixes it (ONNX: the graph's past inputs); null: the runtime's setting.</summary>
    public string? KvType { get; init; }

    public static BenchModel Read(string path) => Directory.Exists(path) ? ReadOnnx(path) : ReadGguf(path);

    private static BenchModel ReadGguf(string path)
    {
        var shape = ModelShape.Read(path);
        return new BenchModel
        {
            Name = shape.Name,
            Architecture = shape.Architecture,
            Type = FitPlanner.FileTypeName(shape),
            FileBytes = new FileInfo(path).Length,
            WeightBytes = shape.WeightBytes,
            Parameters = shape.Parameters,
            WeightBytesReadPerToken = MemoryMath.WeightBytesReadPerToken(shape.Tensors),
            KvBytesPerPosition = MemoryMath.KvCacheBytes(shape, 1, GgmlType.F16), // the benchmark's KV type
        };
    }

    private static BenchModel ReadOnnx(string folder)
    {
        var (config, graph) = OnnxFolder.Validate(folder);
        var initializers = graph.Initializers.ToDictionary(i => i.Name);
        static long Bytes(OnnxInitializer i) => i.External?.Length ?? i.Raw?.LongLength ?? i.Elements * OnnxDataTypes.Size(i.Type);

        // MatMulNBits packs K×N weights into uint8 blocks with scales (and zero points): count K×N parameters once.
        var packed = graph.Nodes.Where(n => n.OpType == "MatMulNBits").ToList();
        var quantParts = packed.SelectMany(n => n.Inputs.Skip(2)).ToHashSet();
        long Attr(OnnxNode n, string name) => n.Attributes.FirstOrDefault(a => a.Name == name)?.Value as long? ?? 0;
        long parameters = packed.Sum(n => Attr(n, "K") * Attr(n, "N"))
            + initializers.Values.Where(i => !quantParts.Contains(i.Name) && !packed.Any(n => n.Inputs.Count > 1 && n.Inputs[1] == i.Name)).Sum(i => i.Elements);
        long weightBytes = initializers.Values.Sum(Bytes);

        // An embedding table the output layer does not share is read one row per token.
        long perToken = weightBytes;
        if (graph.Nodes.FirstOrDefault(n => n.OpType is "Gather" or "GatherBlockQuantized" && n.Inputs.Count > 1 && n.Inputs[1] == "input_ids") is { } gather
            && initializers.TryGetValue(gather.Inputs[0], out var table) && graph.Nodes.Count(n => n.Inputs.Contains(table.Name)) == 1 && table.Dims.Count > 0)
            perToken -= Bytes(table) - Bytes(table) / Math.Max(1, table.Dims[0]);

        var pastKey = graph.Inputs.FirstOrDefault(i => i.Name == config.PastKeyNames.Replace("%d", "0", StringComparison.Ordinal));
        var kvType = pastKey?.Type ?? OnnxDataType.Float;
        string precision = packed.Count > 0 ? $"int4 (block {Attr(packed[0], "block_size")})"
            : initializers.Values.GroupBy(i => i.Type).MaxBy(g => g.Sum(Bytes))?.Key == OnnxDataType.Float16 ? "fp16" : "fp32";
        return new BenchModel
        {
            Architecture = config.Type,
            Type = "ONNX " + precision,
            FileBytes = Directory.EnumerateFiles(folder).Sum(f => new FileInfo(f).Length),
            WeightBytes = weightBytes,
            Parameters = parameters,
            WeightBytesReadPerToken = perToken,
            KvBytesPerPosition = 2L * config.Layers * config.KvHeads * config.HeadSize * OnnxDataTypes.Size(kvType),
            KvType = kvType == OnnxDataType.Float16 ? "f16" : kvType == OnnxDataType.Float ? "f32" : kvType.ToString().ToLowerInvariant(),
        };
    }
}
