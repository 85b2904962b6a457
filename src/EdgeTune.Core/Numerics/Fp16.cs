using System.Numerics.Tensors;

namespace EdgeTune.Core.Numerics;

/// <summary>
/// IEEE binary16 conversions as ggml does them (round to nearest even; ggml_compute_fp32_to_fp16).
/// .NET's <see cref="Half"/> conversion rounds the same way, and TensorPrimitives vectorises rows of it.
/// </summary>
public static class Fp16
{
    public static ushort FromFloat(float value) => BitConverter.HalfToUInt16Bits((Half)value);

    public static float ToFloat(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    public static void FromFloatRow(ReadOnlySpan<float> source, Span<byte> destination)
    {
        if (destination.Length < source.Length * 2) throw new ArgumentException("destination too short", nameof(destination));
        var halves = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(destination[..(source.Length * 2)]);
        TensorPrimitives.ConvertToHalf(source, halves);
    }

    public static void ToFloatRow(ReadOnlySpan<byte> source, Span<float> destination)
    {
        var halves = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(source);
        if (destination.Length < halves.Length) throw new ArgumentException("destination too short", nameof(destination));
        TensorPrimitives.ConvertToSingle(halves, destination[..halves.Length]);
    }
}

/// <summary>
/// bfloat16 as ggml does it (ggml_compute_fp32_to_bf16): round to nearest even, NaN kept quiet.
/// </summary>
public static class BFloat16
{
    public static ushort FromFloat(float value)
    {
        uint u = BitConverter.SingleToUInt32Bits(value);
        if ((u & 0x7fffffffu) > 0x7f800000u)
            return (ushort)((u >> 16) | 64); // NaN: force quiet
        return (ushort)((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
    }

    public static float ToFloat(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    public static void FromFloatRow(ReadOnlySpan<float> source, Span<byte> destination)
    {
        var dst = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(destination[..(source.Length * 2)]);
        for (int i = 0; i < source.Length; i++) dst[i] = FromFloat(source[i]);
    }

    public static void ToFloatRow(ReadOnlySpan<byte> source, Span<float> destination)
    {
        var src = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(source);
        for (int i = 0; i < src.Length; i++) destination[i] = ToFloat(src[i]);
    }
}
