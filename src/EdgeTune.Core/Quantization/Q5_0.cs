// Q5_0: mirrors ggml-quants.c quantize_row_q5_0_ref and dequantize_row_q5_0 (llama.cpp c0c7e147).
//
// Block of 32 values, 22 bytes (ggml-common.h block_q5_0):
//   ggml_half d;       // bytes 0-1: scale, max / -16 where max is the first value of largest magnitude
//   uint8_t   qh[4];   // bytes 2-5: bit k (little-endian uint32) = bit 4 of q[k]
//   uint8_t   qs[16];  // bytes 6-21: qs[j] low nibble = q[j] & 15, high nibble = q[j + 16] & 15
// value = (q - 16) * d

using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using static EdgeTune.Core.Quantization.LegacyQuantMath;

namespace EdgeTune.Core.Quantization;

internal static class Q5_0
{
    public const int BlockSize = 32;
    public const int BlockBytes = 22;

    /// <summary>Quantises whole blocks: the bytes of <see cref="QuantizeReference"/>, with SIMD where the hardware has it.</summary>
    public static void Quantize(ReadOnlySpan<float> x, Span<byte> y)
    {
        if (Vector256.IsHardwareAccelerated) QuantizeVector256(x, y);
        else QuantizeReference(x, y);
    }

    /// <summary>quantize_row_q5_0_ref, transliterated.</summary>
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

        float d = max / -16;
        float id = d != 0f ? 1.0f / d : 0.0f;

        WriteHalf(y, d);
        uint qh = 0;
        for (int j = 0; j < BlockSize / 2; j++)
        {
            float x0 = x[j] * id;
            float x1 = x[BlockSize / 2 + j] * id;

            byte xi0 = (byte)Math.Min(31, ToInt8(x0 + 16.5f));
            byte xi1 = (byte)Math.Min(31, ToInt8(x1 + 16.5f));

            y[6 + j] = (byte)(xi0 & 0x0F | (xi1 & 0x0F) << 4);

            // the fifth bit of each quant goes to qh, at the value's own index
            qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
            qh |= ((xi1 & 0x10u) >> 4) << (j + BlockSize / 2);
        }

        BinaryPrimitives.WriteUInt32LittleEndian(y[2..], qh);
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

            // An all-zero block never updates max, so it stays +0 (and d = -0).
            float max = amaxBits == 0 ? 0.0f : Unsafe.Add(ref xb, FirstIndexOf(amaxBits, a0, a1, a2, a3));
            float d = max / -16;
            float id = d != 0f ? 1.0f / d : 0.0f;
            WriteHalf(MemoryMarshal.CreateSpan(ref yb, 2), d);

            // x * id lies in [-16, 16] up to rounding, so x * id + 16.5 truncates to 0..32 and MIN(31, .) is all the clamp needed.
            var vid = Vector256.Create(id);
            var q0 = Quant(v0, vid); var q1 = Quant(v1, vid); var q2 = Quant(v2, vid); var q3 = Quant(v3, vid);

            // Bit 4 of each quant, moved to the sign bit, gives qh one lane per bit.
            uint qh = (q0 << 27).ExtractMostSignificantBits()
                | (q1 << 27).ExtractMostSignificantBits() << 8
                | (q2 << 27).ExtractMostSignificantBits() << 16
                | (q3 << 27).ExtractMostSignificantBits() << 24;
            BinaryPrimitives.WriteUInt32LittleEndian(MemoryMarshal.CreateSpan(ref Unsafe.Add(ref yb, 2), 4), qh);

            var nibble = Vector256.Create((ushort)0x0F);
            var lo = Vector256.Narrow(q0, q1) & nibble;
            var hi = Vector256.Narrow(q2, q3) & nibble;
            var packed = lo | hi << 4;
            Vector128.Narrow(packed.GetLower(), packed.GetUpper()).StoreUnsafe(ref Unsafe.Add(ref yb, 6));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> Quant(Vector256<float> v, Vector256<float> id) =>
        Vector256.Min(Vector256.ConvertToInt32Native(v * id + Vector256.Create(16.5f)), Vector256.Create(31)).AsUInt32();

    /// <summary>dequantize_row_q5_0: y[k] = ((nibble | fifth bit) - 16) * d.</summary>
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
            uint qh = BinaryPrimitives.ReadUInt32LittleEndian(b[2..]);
            for (int j = 0; j < BlockSize / 2; j++)
            {
                int xh0 = (int)(qh >> (j + 0) << 4 & 0x10);
                int xh1 = (int)(qh >> (j + 12) & 0x10);
                int x0 = (b[6 + j] & 0x0F | xh0) - 16;
                int x1 = (b[6 + j] >> 4 | xh1) - 16;
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
            var (h0, h1, h2, h3) = HighBits(BinaryPrimitives.ReadUInt32LittleEndian(MemoryMarshal.CreateReadOnlySpan(ref Unsafe.Add(ref xb, 2), 4)));
            var (q0, q1, q2, q3) = Nibbles(Vector128.LoadUnsafe(ref Unsafe.Add(ref xb, 6)));
            var sixteen = Vector256.Create(16);
            StoreBlock(ref Unsafe.Add(ref yr, i * BlockSize),
                Vector256.ConvertToSingle((q0 | h0) - sixteen) * vd, Vector256.ConvertToSingle((q1 | h1) - sixteen) * vd,
                Vector256.ConvertToSingle((q2 | h2) - sixteen) * vd, Vector256.ConvertToSingle((q3 | h3) - sixteen) * vd);
        }
    }
}
