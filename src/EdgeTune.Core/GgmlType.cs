namespace EdgeTune.Core;

/// <summary>ggml tensor element types, numbered as in ggml.h (enum ggml_type). The numbers are on-disk values.</summary>
public enum GgmlType : uint
{
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
}

/// <summary>Block geometry of each ggml type (ggml.c type_traits: blck_size and type_size).</summary>
public static class GgmlTypes
{
    /// <summary>K-quant super-block length (QK_K).</summary>
    public const int QK_K = 256;

    /// <summary>True when EdgeTune knows the block geometry of the type (every type in ggml's table).</summary>
    public static bool IsKnown(GgmlType type) => TryGetLayout(type, out _, out _);

    /// <summary>Values per block.</summary>
    public static int BlockSize(GgmlType type) => Layout(type).BlockSize;

    /// <summary>Bytes per block.</summary>
    public static int BlockBytes(GgmlType type) => Layout(type).BlockBytes;

    /// <summary>True for block-quantised types (everything that is not a plain scalar element).</summary>
    public static bool IsQuantized(GgmlType type) => type switch
    {
        GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.F64
            or GgmlType.I8 or GgmlType.I16 or GgmlType.I32 or GgmlType.I64 => false,
        _ => true,
    };

    /// <summary>Bytes of a row of <paramref name="elements"/> values; throws when the row is not whole blocks.</summary>
    public static long RowBytes(GgmlType type, long elements)
    {
        var (blockSize, blockBytes) = Layout(type);
        if (elements < 0 || elements % blockSize != 0)
            throw new ArgumentException($"{elements} values are not a whole number of {type} blocks of {blockSize}", nameof(elements));
        return checked(elements / blockSize * blockBytes);
    }

    /// <summary>The on-disk name ggml prints for a type ("q4_K", "f16", ...).</summary>
    public static string Name(GgmlType type) =>
        Enum.IsDefined(type)
            ? type.ToString().ToLowerInvariant().Replace("_k", "_K", StringComparison.Ordinal)
            : $"type{(uint)type}";

    public static bool TryGetLayout(GgmlType type, out int blockSize, out int blockBytes)
    {
        (blockSize, blockBytes) = type switch
        {
            GgmlType.F32 => (1, 4),
            GgmlType.F16 => (1, 2),
            GgmlType.BF16 => (1, 2),
            GgmlType.F64 => (1, 8),
            GgmlType.I8 => (1, 1),
            GgmlType.I16 => (1, 2),
            GgmlType.I32 => (1, 4),
            GgmlType.I64 => (1, 8),
            GgmlType.Q4_0 => (32, 18),
            GgmlType.Q4_1 => (32, 20),
            GgmlType.Q5_0 => (32, 22),
            GgmlType.Q5_1 => (32, 24),
            GgmlType.Q8_0 => (32, 34),
            GgmlType.Q8_1 => (32, 36),
            GgmlType.Q2_K => (QK_K, 84),
            GgmlType.Q3_K => (QK_K, 110),
            GgmlType.Q4_K => (QK_K, 144),
            GgmlType.Q5_K => (QK_K, 176),
            GgmlType.Q6_K => (QK_K, 210),
            GgmlType.Q8_K => (QK_K, 292),
            GgmlType.IQ2_XXS => (QK_K, 66),
            GgmlType.IQ2_XS => (QK_K, 74),
            GgmlType.IQ3_XXS => (QK_K, 98),
            GgmlType.IQ1_S => (QK_K, 50),
            GgmlType.IQ4_NL => (32, 18),
            GgmlType.IQ3_S => (QK_K, 110),
            GgmlType.IQ2_S => (QK_K, 82),
            GgmlType.IQ4_XS => (QK_K, 136),
            GgmlType.IQ1_M => (QK_K, 56),
            GgmlType.TQ1_0 => (QK_K, 54),
            GgmlType.TQ2_0 => (QK_K, 66),
            GgmlType.MXFP4 => (32, 17),
            _ => (0, 0),
        };
        return blockSize != 0;
    }

    private static (int BlockSize, int BlockBytes) Layout(GgmlType type) =>
        TryGetLayout(type, out var size, out var bytes)
            ? (size, bytes)
            : throw new ArgumentOutOfRangeException(nameof(type), $"unknown ggml type {(uint)type}");
}
