namespace EdgeTune.Formats.Onnx;

/// <summary>ONNX TensorProto.DataType values this project writes or checks.</summary>
public enum OnnxDataType
{
    Float = 1,
    UInt8 = 2,
    Int8 = 3,
    Int32 = 6,
    Int64 = 7,
    Float16 = 10,
    Double = 11,
    BFloat16 = 16,
}

public static class OnnxDataTypes
{
    /// <summary>Bytes per element, or 0 for a type this project does not size.</summary>
    public static int Size(OnnxDataType type) => type switch
    {
        OnnxDataType.Float or OnnxDataType.Int32 => 4,
        OnnxDataType.UInt8 or OnnxDataType.Int8 => 1,
        OnnxDataType.Int64 or OnnxDataType.Double => 8,
        OnnxDataType.Float16 or OnnxDataType.BFloat16 => 2,
        _ => 0,
    };
}

/// <summary>One dimension of a graph input or output: a fixed size or a symbolic name ("batch_size").</summary>
public readonly record struct OnnxDim(long? Value, string? Param)
{
    public static implicit operator OnnxDim(long value) => new(value, null);
    public static implicit operator OnnxDim(string param) => new(null, param);
    public override string ToString() => Value?.ToString() ?? Param ?? "?";
}

public sealed record OnnxValueInfo(string Name, OnnxDataType Type, IReadOnlyList<OnnxDim> Shape);

/// <summary>A node attribute; <see cref="Value"/> is a float, long, string, long[] or float[].</summary>
public sealed record OnnxAttribute(string Name, object Value);

public sealed record OnnxNode(string OpType, string Name, IReadOnlyList<string> Inputs, IReadOnlyList<string> Outputs,
    IReadOnlyList<OnnxAttribute> Attributes, string Domain = "");

/// <summary>Where an initializer's bytes are in the external data file.</summary>
public sealed record OnnxExternalLocation(string File, long Offset, long Length);

/// <summary>A weight: inline bytes (small constants) or a place in the external data file.</summary>
public sealed record OnnxInitializer(string Name, OnnxDataType Type, IReadOnlyList<long> Dims, byte[]? Raw, OnnxExternalLocation? External)
{
    public long Elements => Dims.Aggregate(1L, (a, b) => a * b);
}

/// <summary>A graph as built or as read back: enough of ONNX's GraphProto for a decoder and its checks.</summary>
public sealed class OnnxGraph
{
    public string Name { get; set; } = "main_graph";
    public List<OnnxNode> Nodes { get; } = [];
    public List<OnnxValueInfo> Inputs { get; } = [];
    public List<OnnxValueInfo> Outputs { get; } = [];
    public List<OnnxInitializer> Initializers { get; } = [];
}
