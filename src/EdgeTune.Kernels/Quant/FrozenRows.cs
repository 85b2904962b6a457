using System.Runtime.InteropServices;
using EdgeTune.Core;
using EdgeTune.Core.Quantization;

namespace EdgeTune.Kernels;

/// <summary>
/// Row access to a frozen weight's bytes in any <see cref="FrozenFormat"/>: what a frozen matmul expands into a
/// scratch row at a time. F32 and the GGUF types store whole rows one after another (GGUF rows are whole blocks,
/// so cols must be a multiple of the block size); NF4 is <see cref="Nf4Codec"/>'s layout over the flat matrix.
/// </summary>
public static class FrozenRows
{
    /// <summary>Values per block of a format (1 for F32; NF4 blocks run over the flat index, so any cols fit).</summary>
    public static int RowMultiple(FrozenFormat format) => format switch
    {
        FrozenFormat.F32 or FrozenFormat.Nf4 => 1,
        _ => GgmlTypes.BlockSize(ToGgml(format)),
    };

    /// <summary>Bytes of a rows×cols matrix in <paramref name="format"/>; throws when cols do not fit the format's blocks.</summary>
    public static long ByteCount(FrozenFormat format, int rows, int cols)
    {
        Validate(format, rows, cols);
        return format switch
        {
            FrozenFormat.F32 => 4L * rows * cols,
            FrozenFormat.Nf4 => Nf4Codec.ByteCount((long)rows * cols),
            _ => rows * GgmlTypes.RowBytes(ToGgml(format), cols),
        };
    }

    /// <summary>Checks the shape against the format; the message names the shape and the block size.</summary>
    public static void Validate(FrozenFormat format, int rows, int cols)
    {
        Shapes.Positive(rows, nameof(rows));
        Shapes.Positive(cols, nameof(cols));
        int multiple = RowMultiple(format);
        if (cols % multiple != 0)
            throw new ArgumentException($"a frozen {format} matrix of shape (rows={rows},cols={cols}) needs cols to be a multiple of its block size {multiple}", nameof(cols));
    }

    /// <summary>Writes row <paramref name="row"/> (cols values) of the matrix in <paramref name="data"/> to <paramref name="destination"/>.</summary>
    public static void DequantizeRow(FrozenFormat format, ReadOnlySpan<byte> data, int rows, int row, int cols, Span<float> destination)
    {
        if ((uint)row >= (uint)rows) throw new ArgumentOutOfRangeException(nameof(row), row, $"row outside the {rows} rows");
        Shapes.Require(destination.Length, cols, nameof(destination), $"(cols={cols})");
        destination = destination[..cols];
        switch (format)
        {
            case FrozenFormat.F32:
                MemoryMarshal.Cast<byte, float>(data.Slice(checked(4 * row * cols), 4 * cols)).CopyTo(destination);
                break;
            case FrozenFormat.Nf4:
                Nf4Codec.DequantizeRange(data, (long)rows * cols, (long)row * cols, destination);
                break;
            default:
                var type = ToGgml(format);
                int rowBytes = (int)GgmlTypes.RowBytes(type, cols);
                QuantCodecs.Dequantize(type, data.Slice(checked(row * rowBytes), rowBytes), destination);
                break;
        }
    }

    /// <summary>Bytes per row for the row-major formats (not NF4, whose blocks run across rows).</summary>
    internal static long RowBytes(FrozenFormat format, int cols) => format switch
    {
        FrozenFormat.F32 => 4L * cols,
        FrozenFormat.Nf4 => throw new InvalidOperationException("NF4 rows are not byte-aligned units"),
        _ => GgmlTypes.RowBytes(ToGgml(format), cols),
    };

    internal static GgmlType ToGgml(FrozenFormat format) => format switch
    {
        FrozenFormat.F32 => GgmlType.F32,
        FrozenFormat.Q8_0 => GgmlType.Q8_0,
        FrozenFormat.Q4_0 => GgmlType.Q4_0,
        FrozenFormat.Q4_K => GgmlType.Q4_K,
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, "not a GGUF block type"),
    };
}
