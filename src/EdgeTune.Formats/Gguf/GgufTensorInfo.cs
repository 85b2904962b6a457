using EdgeTune.Core;

namespace EdgeTune.Formats.Gguf;

/// <summary>
/// A tensor's description in a GGUF file. <see cref="Shape"/> is ggml's ne[]: innermost dimension first,
/// so a PyTorch [out, in] weight has Shape = [in, out]. <see cref="Offset"/> is relative to the data section.
/// </summary>
public sealed record GgufTensorInfo(string Name, long[] Shape, GgmlType Type, long Offset)
{
    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (var d in Shape) n = checked(n * d);
            return n;
        }
    }

    /// <summary>Values per row (ne[0]).</summary>
    public long RowLength => Shape.Length == 0 ? 1 : Shape[0];

    /// <summary>Number of rows (product of ne[1..]).</summary>
    public long RowCount => RowLength == 0 ? 0 : ElementCount / RowLength;

    public long RowBytes => GgmlTypes.RowBytes(Type, RowLength);

    public long ByteLength => checked(RowBytes * RowCount);

    /// <summary>Shape written as ggml prints it, innermost first: "4096 x 32000".</summary>
    public string ShapeText => Shape.Length == 0 ? "scalar" : string.Join(" x ", Shape);
}
