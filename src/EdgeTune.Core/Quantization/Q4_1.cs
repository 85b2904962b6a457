// Q4_1: mirrors ggml-quants.c quantize_row_q4_1_ref and dequantize_row_q4_1 (llama.cpp c0c7e147).
//
// Block of 32 values, 20 bytes (ggml-common.h block_q4_1):
//   ggml_half d;       // bytes 0-1: scale, (max - min) / 15
//   ggml_half m;       // bytes 2-3: min
//   uint8_t   qs[16];  // bytes 4-19: qs[j] low nibble = q[j], high nibble = q[j + 16]; value = q * d + m

using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using static EdgeTune.Core.Quantization.LegacyQuantMath;

namespace EdgeTune.Core.Quantization;

internal static class Q4_1
{
    public const int BlockSize = 32;
    public const int BlockBytes = 20;

    /// <summary>Quantises whole blocks: the bytes of <see cref="QuantizeReference"/>, with SIMD where the hardware has it.</summary>
    public static void Quantize(ReadOnlySpan<float> x, Span<byte> y)
    {
        if (Vector256.IsHardwareAccelerated) QuantizeVector256(x, y);
        else QuantizeReference(x, y);
    }

    /// <summary>quantize_row_q4_1_ref, transliterated.</summary>
    public static void QuantizeReference(ReadOnlySpan<float> x, Span<byte> y)
    {
        int nb = QuantizeBlockCount(x, y, BlockSize, BlockBytes);
        for (int i = 0; i < nb; i++)
            QuantizeBlockReference(x.Slice(i * BlockSize, BlockSize), y.Slice(i * BlockBytes, BlockBytes));
    }

    private static void QuantizeBlockReference(ReadOnlySpan<float> x, Span<byte> y)
    {
        float min = float.MaxValue;  // FLT_MAX
        float max = -float.MaxValue;
        for (int j = 0; j < BlockSize; j++)
        {
            float v = x[j];
            if (v < min) min = v;
            if (v > max) max = v;
        }

        float d = (max - min) / ((1 << 4) - 1);
        float id = d != 0f ? 1.0f / d : 0.0f;

        WriteHalf(y, d);
        WriteHalf(y[2..], min);
        for (int j = 0; j < BlockSize / 2; j++)
        {
            float x0 = (x[j] - min) * id;
            float x1 = (x[BlockSize / 2 + j] - min) * id;

            byte xi0 = (byte)Math.Min(15, ToInt8(x0 + 0.5f));
            byte xi1 = (byte)Math.Min(15, ToInt8(x1 + 0.5f));
            y[4 + j] = (byte)(xi0 | xi1 << 4);
        }
    }

    internal static void QuantizeVector256(ReadOnlySpan<float> x, Span<byte> y)
    {
        int nb = QuantizeBlockCount(x, y, BlockSize, BlockBytes);
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref byte yr = ref MemoryMarshal.GetReference(y);
        for (int i = 0; i < nb; i++)
        {
            ref float xb = ref Unsafe.Add(ref xr, i * BlockSize);
            ref byte yb = ref Unsafe.Add(ref yr, i * BlockBytes);
            var v0 = Load256(ref xb, 0); var v1 = Load256(ref xb, 1);
            var v2 = Load256(ref xb, 2); var v3 = Load256(ref xb, 3);

            // Vector min/max give C's answer unless a NaN is present (C skips it) or the extreme is a zero
            // (C keeps the sign of the first zero it meets); infinities overflow max - min. Those go scalar.
            uint amaxBits = MaxBits(AbsBits(v0), AbsBits(v1), AbsBits(v2), AbsBits(v3));
            float min = HorizontalMin(Vector256.MinNative(Vector256.MinNative(v0, v1), Vector256.MinNative(v2, v3)));
            float max = HorizontalMax(Vector256.MaxNative(Vector256.MaxNative(v0, v1), Vector256.MaxNative(v2, v3)));
            float range = max - min;
            if (amaxBits >= InfinityBits || min == 0f || max == 0f || !IsTameAbsMax(BitConverter.SingleToUInt32Bits(range)))
            {
                QuantizeBlockReference(x.Slice(i * BlockSize, BlockSize), y.Slice(i * BlockBytes, BlockBytes));
                continue;
            }

            float d = range / ((1 << 4) - 1);
            float id = d != 0f ? 1.0f / d : 0.0f;
            WriteHalf(MemoryMarshal.CreateSpan(ref yb, 2), d);
            WriteHalf(MemoryMarshal.CreateSpan(ref Unsafe.Add(ref yb, 2), 2), min);

            // 0 <= (x - min) * id <= 15 up to rounding, so + 0.5 truncates to 0..15.
            var vmin = Vector256.Create(min);
            var vid = Vector256.Create(id);
            var lo = Vector256.Narrow(Quant(v0, vmin, vid), Quant(v1, vmin, vid));
            var hi = Vector256.Narrow(Quant(v2, vmin, vid), Quant(v3, vmin, vid));
            var packed = lo | hi << 4;
            Vector128.Narrow(packed.GetLower(), packed.GetUpper()).StoreUnsafe(ref Unsafe.Add(ref yb, 4));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> Quant(Vector256<float> v, Vector256<float> min, Vector256<float> id) =>
        Vector256.Min(Vector256.ConvertToInt32Native((v - min) * id + Vector256.Create(0.5f)), Vector256.Create(15)).AsUInt32();

    /// <summary>dequantize_row_q4_1: y[j] = (qs[j] &amp; 15) * d + m, y[j + 16] = (qs[j] &gt;&gt; 4) * d + m.</summary>
    public static void Dequantize(ReadOnlySpan<byte> x, Span<float> y)
    {
        if (Vector256.IsHardwareAccelerated) DequantizeVector256(x, y);
        else DequantizeReference(x, y);
    }

    internal static void DequantizeReference(ReadOnlySpan<byte> x, Span<float> y)
    {
        int nb = DequantizeBlockCount(x, y, BlockSize, BlockBytes);
        for (int i = 0; i < nb; i++)
        {
            var b = x.Slice(i * BlockBytes, BlockBytes);
            var o = y.Slice(i * BlockSize, BlockSize);
            float d = ReadHalf(b);
            float m = ReadHalf(b[2..]);
            for (int j = 0; j < BlockSize / 2; j++)
            {
                int x0 = b[4 + j] & 0x0F;
                int x1 = b[4 + j] >> 4;
                o[j] = x0 * d + m;
                o[j + BlockSize / 2] = x1 * d + m;
            }
        }
    }

    internal static void DequantizeVector256(ReadOnlySpan<byte> x, Span<float> y)
    {
        int nb = DequantizeBlockCount(x, y, BlockSize, BlockBytes);
        ref byte xr = ref MemoryMarshal.GetReference(x);
        ref float yr = ref MemoryMarshal.GetReference(y);
        for (int i = 0; i < nb; i++)
        {
            ref byte xb = ref Unsafe.Add(ref xr, i * BlockBytes);
            var vd = Vector256.Create(ReadHalf(MemoryMarshal.CreateReadOnlySpan(ref xb, 2)));
            var vm = Vector256.Create(ReadHalf(MemoryMarshal.CreateReadOnlySpan(ref Unsafe.Add(ref xb, 2), 2)));
            var (q0, q1, q2, q3) = Nibbles(Vector128.LoadUnsafe(ref Unsafe.Add(ref xb, 4)));
            // Multiply, then add: two roundings as in C (the JIT never fuses these into an FMA).
            StoreBlock(ref Unsafe.Add(ref yr, i * BlockSize),
                Vector256.ConvertToSingle(q0) * vd + vm, Vector256.ConvertToSingle(q1) * vd + vm,
                Vector256.ConvertToSingle(q2) * vd + vm, Vector256.ConvertToSingle(q3) * vd + vm);
        }
    }
}
