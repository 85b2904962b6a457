namespace EdgeTune.Formats.Safetensors;

/// <summary>
/// Element types of the safetensors format, spelled as in the header. The declaration order is the one of
/// the reference implementation (huggingface/safetensors, enum Dtype, increasing alignment): the writer sorts
/// by it, so keep new members in that order.
/// </summary>
public enum SafetensorsDType
{
    BOOL,
    U8,
    I8,
    F8_E5M2,
    F8_E4M3,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
}

public static class SafetensorsDTypes
{
    /// <summary>Bytes per element.</summary>
    public static int Size(this SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.BOOL or SafetensorsDType.U8 or SafetensorsDType.I8
            or SafetensorsDType.F8_E5M2 or SafetensorsDType.F8_E4M3 => 1,
        SafetensorsDType.I16 or SafetensorsDType.U16 or SafetensorsDType.F16 or SafetensorsDType.BF16 => 2,
        SafetensorsDType.I32 or SafetensorsDType.U32 or SafetensorsDType.F32 => 4,
        SafetensorsDType.F64 or SafetensorsDType.I64 or SafetensorsDType.U64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not a safetensors dtype"),
    };

    /// <summary>The name used in the header ("F32", "BF16", "F8_E4M3", ...).</summary>
    public static string Name(this SafetensorsDType dtype) =>
        Enum.IsDefined(dtype) ? dtype.ToString() : throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not a safetensors dtype");

    /// <summary>Parses a header dtype name; exact and case-sensitive, as the reference implementation is.</summary>
    public static bool TryParse(string name, out SafetensorsDType dtype)
    {
        foreach (var candidate in Enum.GetValues<SafetensorsDType>())
        {
            if (string.Equals(candidate.ToString(), name, StringComparison.Ordinal))
            {
                dtype = candidate;
                return true;
            }
        }
        dtype = default;
        return false;
    }

    /// <summary>Byte length of a tensor, or null when the element count or byte count overflows a long.</summary>
    public static long? ByteLength(SafetensorsDType dtype, ReadOnlySpan<long> shape)
    {
        try
        {
            long count = 1;
            foreach (long dim in shape)
            {
                if (dim < 0) return null;
                count = checked(count * dim);
            }
            return checked(count * dtype.Size());
        }
        catch (OverflowException)
        {
            return null;
        }
    }
}
