// Q4_0: mirrors ggml-quants.c quantize_row_q4_0_ref and dequantize_row_q4_0 (llama.cpp c0c7e147).
//
// Block of 32 values, 18 bytes (ggml-common.h block_q4_0):
//   ggml_half d;       // bytes 0-1: scale, max / -8 where max is the first value of largest magnitude
//   uint8_t   qs[16];  // bytes 2-17: qs[j] low nibble = q[j], high nibble = q[j + 16]; value = (q - 8) * d

using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using static EdgeTune.Core.Quantization.LegacyQuantMath;

namespace EdgeTune.Core.Quantization;

internal static class Q4_0
{
    public const int BlockSize = 32;
    public const int BlockBytes = 18;

    /// <summary>Quantises whole blocks: the bytes of <see cref="QuantizeReference"/>, with SIMD where the hardware has it.</summary>
    public static void Quantize(ReadOnlySpan<float> x, Span<byte> y)
    {
        if (Vector256.IsHardwareAccelerated) QuantizeVector256(x, y);
        else if (Vector128.IsHardwareAccelerated) QuantizeVector128(x, y);
        else QuantizeReference(x, y);
    }

    /// <summary>quantize_row_q4_0_ref, transliterated.</summary>
    public static void QuantizeReference(ReadOnlySpan<float> x, Span<byte> y)
    {
        int nb = QuantizeBlockCount(x, y, BlockSize, BlockBytes);
        for (int i = 0; i < nb; i++)
            QuantizeBlockReference(x.Slice(i * BlockSize, BlockSize), y.Slice(i * BlockBytes, BlockBytes));
    }

    private static void QuantizeBlockReference(ReadOnlySpan<float> x, Span<byte> y)
    {
        float amax = 0.0f; // absolute max
        float max = 0.0f;  // the signed value it came from; strict < keeps the first of equal magnitudes
        for (int j = 0; j < BlockSize; j++)
        {
            float v = x[j];
            if (amax < MathF.Abs(v))
            {
                amax = MathF.Abs(v);
                max = v;
            }
        }

        float d = max / -8;
        float id = d != 0f ? 1.0f / d : 0.0f;

        WriteHalf(y, d);
        for (int j = 0; j < BlockSize / 2; j++)
        {
            float x0 = x[j] * id;
            float x1 = x[BlockSize / 2 + j] * id;

            // uint8_t xi = MIN(15, (int8_t)(x + 8.5f)); qs = xi0 | xi1 << 4, kept to a byte.
            byte xi0 = (byte)Math.Min(15, ToInt8(x0 + 8.5f));
            byte xi1 = (byte)Math.Min(15, ToInt8(x1 + 8.5f));
            y[2 + j] = (byte)(xi0 | xi1 << 4);
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
            var a0 = AbsBits(v0); var a1 = AbsBits(v1); var a2 = AbsBits(v2); var a3 = AbsBits(v3);

            uint amaxBits = MaxBits(a0, a1, a2, a3);
            if (!IsTameAbsMax(amaxBits))
            {
                QuantizeBlockReference(x.Slice(i * BlockSize, BlockSize), y.Slice(i * BlockBytes, BlockBytes));
                continue;
            }

            // An all-zero block never updates max, so it stays +0 (and d = -0), whatever zeros the block holds.
            float max = amaxBits == 0 ? 0.0f : Unsafe.Add(ref xb, FirstIndexOf(amaxBits, a0, a1, a2, a3));
            float d = max / -8;
            float id = d != 0f ? 1.0f / d : 0.0f;
            WriteHalf(MemoryMarshal.CreateSpan(ref yb, 2), d);

            // x * id lies in [-8, 8] up to rounding, so x * id + 8.5 truncates to 0..16 and MIN(15, .) is all the clamp needed.
            var vid = Vector256.Create(id);
            var lo = Vector256.Narrow(Quant(v0, vid), Quant(v1, vid)); // q[0..15]
            var hi = Vector256.Narrow(Quant(v2, vid), Quant(v3, vid)); // q[16..31]
            var packed = lo | hi << 4;
            Vector128.Narrow(packed.GetLower(), packed.GetUpper()).StoreUnsafe(ref Unsafe.Add(ref yb, 2));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> Quant(Vector256<float> v, Vector256<float> id) =>
        Vector256.Min(Vector256.ConvertToInt32Native(v * id + Vector256.Create(8.5f)), Vector256.Create(15)).AsUInt32();

    internal static void QuantizeVector128(ReadOnlySpan<float> x, Span<byte> y)
    {
        int nb = QuantizeBlockCount(x, y, BlockSize, BlockBytes);
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref byte yr = ref MemoryMarshal.GetReference(y);
        for (int i = 0; i < nb; i++)
        {
            ref float xb = ref Unsafe.Add(ref xr, i * BlockSize);
            ref byte yb = ref Unsafe.Add(ref yr, i * BlockBytes);

            uint amaxBits = MaxBits128(ref xb);
            if (!IsTameAbsMax(amaxBits))
            {
                QuantizeBlockReference(x.Slice(i * BlockSize, BlockSize), y.Slice(i * BlockBytes, BlockBytes));
                continue;
            }

            float max = amaxBits == 0 ? 0.0f : Unsafe.Add(ref xb, FirstIndexOf128(amaxBits, ref xb));
            float d = max / -8;
            float id = d != 0f ? 1.0f / d : 0.0f;
            WriteHalf(MemoryMarshal.CreateSpan(ref yb, 2), d);

            var vid = Vector128.Create(id);
            var lo = Vector128.Narrow(Vector128.Narrow(Quant(Load128(ref xb, 0), vid), Quant(Load128(ref xb, 1), vid)),
                                      Vector128.Narrow(Quant(Load128(ref xb, 2), vid), Quant(Load128(ref xb, 3), vid)));
            var hi = Vector128.Narrow(Vector128.Narrow(Quant(Load128(ref xb, 4), vid), Quant(Load128(ref xb, 5), vid)),
                                      Vector128.Narrow(Quant(Load128(ref xb, 6), vid), Quant(Load128(ref xb, 7), vid)));
            (lo | hi << 4).StoreUnsafe(ref Unsafe.Add(ref yb, 2));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<uint> Quant(Vector128<float> v, Vector128<float> id) =>
        Vector128.Min(Vector128.ConvertToInt32Native(v * id + Vector128.Create(8.5f)), Vector128.Create(15)).AsUInt32();

    /// <summary>dequantize_row_q4_0: y[j] = ((qs[j] &amp; 15) - 8) * d, y[j + 16] = ((qs[j] &gt;&gt; 4) - 8) * d.</summary>
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
            for (int j = 0; j < BlockSize / 2; j++)
            {
                int x0 = (b[2 + j] & 0x0F) - 8;
                int x1 = (b[2 + j] >> 4) - 8;
                o[j] = x0 * d;
                o[j + BlockSize / 2] = x1 * d;
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
            var (q0, q1, q2, q3) = Nibbles(Vector128.LoadUnsafe(ref Unsafe.Add(ref xb, 2)));
            var eight = Vector256.Create(8);
            StoreBlock(ref Unsafe.Add(ref yr, i * BlockSize),
                Vector256.ConvertToSingle(q0 - eight) * vd, Vector256.ConvertToSingle(q1 - eight) * vd,
                Vector256.ConvertToSingle(q2 - eight) * vd, Vector256.ConvertToSingle(q3 - eight) * vd);
        }
    }
}
