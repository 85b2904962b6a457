using System.Runtime.InteropServices;
using EdgeTune.Core.Numerics;

namespace EdgeTune.Core.Quantization;

/// <summary>
/// Quantise and dequantise rows of ggml types. Rows are whole blocks; the bytes written equal
/// llama.cpp's reference quantisers (ggml-quants.c, quantize_row_*_ref) for the same input.
/// Each type lives in its own file with its scalar reference beside any fast path.
/// </summary>
public static class QuantCodecs
{
    /// <summary>Types this codec table can write (and read).</summary>
    public static bool CanQuantize(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16
        or GgmlType.Q8_0 or GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1
        or GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.Q8_K;

    /// <summary>Types this codec table can read back to float.</summary>
    public static bool CanDequantize(GgmlType type) => CanQuantize(type) || type == GgmlType.F64;

    /// <summary>Quantise <paramref name="source"/> (a whole number of blocks) into <paramref name="destination"/>.</summary>
    public static void Quantize(GgmlType type, ReadOnlySpan<float> source, Span<byte> destination)
    {
        long bytes = GgmlTypes.RowBytes(type, source.Length);
        if (destination.Length < bytes)
            throw new ArgumentException($"destination holds {destination.Length} bytes, {type} needs {bytes}", nameof(destination));
        destination = destination[..(int)bytes];
        switch (type)
        {
            case GgmlType.F32: MemoryMarshal.AsBytes(source).CopyTo(destination); break;
            case GgmlType.F16: Fp16.FromFloatRow(source, destination); break;
            case GgmlType.BF16: BFloat16.FromFloatRow(source, destination); break;
            case GgmlType.Q8_0: Q8_0.Quantize(source, destination); break;
            case GgmlType.Q4_0: Q4_0.Quantize(source, destination); break;
            case GgmlType.Q4_1: Q4_1.Quantize(source, destination); break;
            case GgmlType.Q5_0: Q5_0.Quantize(source, destination); break;
            case GgmlType.Q5_1: Q5_1.Quantize(source, destination); break;
            case GgmlType.Q2_K: Q2_K.Quantize(source, destination); break;
            case GgmlType.Q3_K: Q3_K.Quantize(source, destination); break;
            case GgmlType.Q4_K: Q4_K.Quantize(source, destination); break;
            case GgmlType.Q5_K: Q5_K.Quantize(source, destination); break;
            case GgmlType.Q6_K: Q6_K.Quantize(source, destination); break;
            case GgmlType.Q8_K: Q8_K.Quantize(source, destination); break;
            default: throw new NotSupportedException($"quantising to {GgmlTypes.Name(type)} is not supported");
        }
    }

    /// <summary>Dequantise whole blocks of <paramref name="type"/> into floats.</summary>
    public static void Dequantize(GgmlType type, ReadOnlySpan<byte> source, Span<float> destination)
    {
        int blockSize = GgmlTypes.BlockSize(type), blockBytes = GgmlTypes.BlockBytes(type);
        if (source.Length % blockBytes != 0)
            throw new ArgumentException($"{source.Length} bytes are not whole {type} blocks of {blockBytes} bytes", nameof(source));
        long count = (long)source.Length / blockBytes * blockSize;
        if (destination.Length < count)
            throw new ArgumentException($"destination holds {destination.Length} values, {count} needed", nameof(destination));
        destination = destination[..(int)count];
        switch (type)
        {
            case GgmlType.F32: source.CopyTo(MemoryMarshal.AsBytes(destination)); break;
            case GgmlType.F64:
                var doubles = MemoryMarshal.Cast<byte, double>(source);
                for (int i = 0; i < doubles.Length; i++) destination[i] = (float)doubles[i];
                break;
            case GgmlType.F16: Fp16.ToFloatRow(source, destination); break;
            case GgmlType.BF16: BFloat16.ToFloatRow(source, destination); break;
            case GgmlType.Q8_0: Q8_0.Dequantize(source, destination); break;
            case GgmlType.Q4_0: Q4_0.Dequantize(source, destination); break;
            case GgmlType.Q4_1: Q4_1.Dequantize(source, destination); break;
            case GgmlType.Q5_0: Q5_0.Dequantize(source, destination); break;
            case GgmlType.Q5_1: Q5_1.Dequantize(source, destination); break;
            case GgmlType.Q2_K: Q2_K.Dequantize(source, destination); break;
            case GgmlType.Q3_K: Q3_K.Dequantize(source, destination); break;
            case GgmlType.Q4_K: Q4_K.Dequantize(source, destination); break;
            case GgmlType.Q5_K: Q5_K.Dequantize(source, destination); break;
            case GgmlType.Q6_K: Q6_K.Dequantize(source, destination); break;
            case GgmlType.Q8_K: Q8_K.Dequantize(source, destination); break;
            default: throw new NotSupportedException($"dequantising {GgmlTypes.Name(type)} is not supported");
        }
    }
}
