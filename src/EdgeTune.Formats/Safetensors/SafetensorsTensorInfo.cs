namespace EdgeTune.Formats.Safetensors;

/// <summary>One tensor of a safetensors file, as its header describes it (already validated).</summary>
public sealed class SafetensorsTensorInfo
{
    internal SafetensorsTensorInfo(string name, SafetensorsDType dtype, long[] shape, long dataOffset, long byteLength, long fileOffset)
    {
        Name = name;
        DType = dtype;
        Shape = shape;
        DataOffset = dataOffset;
        ByteLength = byteLength;
        FileOffset = fileOffset;
    }

    public string Name { get; }
    public SafetensorsDType DType { get; }

    /// <summary>Dimensions, outermost first (row-major, as in the file). Empty for a scalar.</summary>
    public long[] Shape { get; }

    /// <summary>Start of the data relative to the data buffer: data_offsets[0] of the header.</summary>
    public long DataOffset { get; }

    /// <summary>Start of the data in the file: 8 + header length + <see cref="DataOffset"/>.</summary>
    public long FileOffset { get; }

    public long ByteLength { get; }

    public long ElementCount => ByteLength / DType.Size();

    public override string ToString() => $"{Name} {DType.Name()} [{string.Join(", ", Shape)}]";
}
