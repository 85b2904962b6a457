// Q8_0: mirrors ggml-quants.c quantize_row_q8_0_ref and dequantize_row_q8_0 (llama.cpp c0c7e147).
//
// Block of 32 values, 34 bytes (ggml-common.h block_q8_0):
//   ggml_half d;       // bytes 0-1: scale, amax / 127
//   int8_t    qs[32];  // bytes 2-33: q = roundf(x / d); value = q * d

using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using static EdgeTune.Core.Quantization.LegacyQuantMath;

namespace EdgeTune.Core.Quantization;

internal static class Q8_0
{
    public const int BlockSize = 32;
    public const int BlockBytes = 34;

    /// <summary>Quantises whole blocks: the bytes of <see cref="QuantizeReference"/>, with SIMD where the hardware has it.</summary>
    public static void Quantize(ReadOnlySpan<float> x, Span<byte> y)
    {
        if (Vector256.IsHardwareAccelerated) QuantizeVector256(x, y);
        else if (Vector128.IsHardwareAccelerated) QuantizeVector128(x, y);
        else QuantizeReference(x, y);
    }

    /// <summary>quantize_row_q8_0_ref, transliterated.</summary>
    public static void QuantizeReference(ReadOnlySpan<float> x, Span<byte> y)
    {
        int nb = QuantizeBlockCount(x, y, BlockSize, BlockBytes);
        for (int i = 0; i < nb; i++)
            QuantizeBlockReference(x.Slice(i * BlockSize, BlockSize), y.Slice(i * BlockBytes, BlockBytes));
    }

    private static void QuantizeBlockReference(ReadOnlySpan<float> x, Span<byte> y)
    {
        float amax = 0.0f;
        for (int j = 0; j < BlockSize; j++)
        {
            // MAX(a, b) is ((a) > (b) ? (a) : (b)): a NaN replaces amax, and the next value replaces the NaN.
            float a = MathF.Abs(x[j]);
            amax = amax > a ? amax : a;
        }

        float d = amax / ((1 << 7) - 1);
        float id = d != 0f ? 1.0f / d : 0.0f;

        WriteHalf(y, d);
        for (int j = 0; j < BlockSize; j++)
            y[2 + j] = (byte)TruncToInt32(RoundF(x[j] * id)); // (int8_t)roundf(x0)
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

            uint amaxBits = MaxBits(AbsBits(v0), AbsBits(v1), AbsBits(v2), AbsBits(v3));
            if (!IsTameAbsMax(amaxBits))
            {
                QuantizeBlockReference(x.Slice(i * BlockSize, BlockSize), y.Slice(i * BlockBytes, BlockBytes));
                continue;
            }

            float d = BitConverter.UInt32BitsToSingle(amaxBits) / ((1 << 7) - 1);
            float id = d != 0f ? 1.0f / d : 0.0f;
            WriteHalf(MemoryMarshal.CreateSpan(ref yb, 2), d);

            // |x * id| <= ~127, so the int32 -> int8 narrowing keeps every value.
            var vid = Vector256.Create(id);
            var q01 = Vector256.Narrow(RoundAwayToInt(v0 * vid), RoundAwayToInt(v1 * vid));
            var q23 = Vector256.Narrow(RoundAwayToInt(v2 * vid), RoundAwayToInt(v3 * vid));
            Vector256.Narrow(q01, q23).AsByte().StoreUnsafe(ref Unsafe.Add(ref yb, 2));
        }
    }

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

            float d = BitConverter.UInt32BitsToSingle(amaxBits) / ((1 << 7) - 1);
            float id = d != 0f ? 1.0f / d : 0.0f;
            WriteHalf(MemoryMarshal.CreateSpan(ref yb, 2), d);

            var vid = Vector128.Create(id);
            for (int h = 0; h < 2; h++)
            {
                var q01 = Vector128.Narrow(RoundAwayToInt(Load128(ref xb, 4 * h + 0) * vid), RoundAwayToInt(Load128(ref xb, 4 * h + 1) * vid));
                var q23 = Vector128.Narrow(RoundAwayToInt(Load128(ref xb, 4 * h + 2) * vid), RoundAwayToInt(Load128(ref xb, 4 * h + 3) * vid));
                Vector128.Narrow(q01, q23).AsByte().StoreUnsafe(ref Unsafe.Add(ref yb, 2 + 16 * h));
            }
        }
    }

    /// <summary>dequantize_row_q8_0: y = qs[j] * d.</summary>
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
            for (int j = 0; j < BlockSize; j++)
                o[j] = (sbyte)b[2 + j] * d;
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
            ref float yb = ref Unsafe.Add(ref yr, i * BlockSize);
            var vd = Vector256.Create(ReadHalf(MemoryMarshal.CreateReadOnlySpan(ref xb, 2)));
            var (s0, s1) = Vector256.Widen(Vector256.LoadUnsafe(ref Unsafe.Add(ref xb, 2)).AsSByte());
            var (i0, i1) = Vector256.Widen(s0);
            var (i2, i3) = Vector256.Widen(s1);
            (Vector256.ConvertToSingle(i0) * vd).StoreUnsafe(ref yb, 0);
            (Vector256.ConvertToSingle(i1) * vd).StoreUnsafe(ref yb, 8);
            (Vector256.ConvertToSingle(i2) * vd).StoreUnsafe(ref yb, 16);
            (Vector256.ConvertToSingle(i3) * vd).StoreUnsafe(ref yb, 24);
        }
    }
}
