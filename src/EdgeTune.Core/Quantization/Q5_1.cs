// Q5_1: mirrors ggml-quants.c quantize_row_q5_1_ref and dequantize_row_q5_1 (llama.cpp c0c7e147).
//
// Block of 32 values, 24 bytes (ggml-common.h block_q5_1):
//   ggml_half d;       // bytes 0-1: scale, (max - min) / 31
//   ggml_half m;       // bytes 2-3: min
//   uint8_t   qh[4];   // bytes 4-7: bit k (little-endian uint32) = bit 4 of q[k]
//   uint8_t   qs[16];  // bytes 8-23: qs[j] low nibble = q[j] & 15, high nibble = q[j + 16] & 15
// value = q * d + m

using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using static EdgeTune.Core.Quantization.LegacyQuantMath;

namespace EdgeTune.Core.Quantization;

internal static class Q5_1
{
    public const int BlockSize = 32;
    public const int BlockBytes = 24;

    /// <summary>Quantises whole blocks: the bytes of <see cref="QuantizeReference"/>, with SIMD where the hardware has it.</summary>
    public static void Quantize(ReadOnlySpan<float> x, Span<byte> y)
    {
        if (Vector256.IsHardwareAccelerated) QuantizeVector256(x, y);
        else QuantizeReference(x, y);
    }

    /// <summary>quantize_row_q5_1_ref, transliterated.</summary>
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

        float d = (max - min) / ((1 << 5) - 1);
        float id = d != 0f ? 1.0f / d : 0.0f;

        WriteHalf(y, d);
        WriteHalf(y[2..], min);
        uint qh = 0;
        for (int j = 0; j < BlockSize / 2; j++)
        {
            float x0 = (x[j] - min) * id;
            float x1 = (x[BlockSize / 2 + j] - min) * id;

            // (uint8_t)(x + 0.5f): no MIN here, unlike Q4_1.
            byte xi0 = (byte)TruncToInt32(x0 + 0.5f);
            byte xi1 = (byte)TruncToInt32(x1 + 0.5f);

            y[8 + j] = (byte)(xi0 & 0x0F | (xi1 & 0x0F) << 4);

            qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
            qh |= ((xi1 & 0x10u) >> 4) << (j + BlockSize / 2);
        }

        BinaryPrimitives.WriteUInt32LittleEndian(y[4..], qh);
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

            // As in Q4_1: NaNs, infinities and zero extremes take the scalar path.
            uint amaxBits = MaxBits(AbsBits(v0), AbsBits(v1), AbsBits(v2), AbsBits(v3));
            float min = HorizontalMin(Vector256.MinNative(Vector256.MinNative(v0, v1), Vector256.MinNative(v2, v3)));
            float max = HorizontalMax(Vector256.MaxNative(Vector256.MaxNative(v0, v1), Vector256.MaxNative(v2, v3)));
            float range = max - min;
            if (amaxBits >= InfinityBits || min == 0f || max == 0f || !IsTameAbsMax(BitConverter.SingleToUInt32Bits(range)))
            {
                QuantizeBlockReference(x.Slice(i * BlockSize, BlockSize), y.Slice(i * BlockBytes, BlockBytes));
                continue;
            }

            float d = range / ((1 << 5) - 1);
            float id = d != 0f ? 1.0f / d : 0.0f;
            WriteHalf(MemoryMarshal.CreateSpan(ref yb, 2), d);
            WriteHalf(MemoryMarshal.CreateSpan(ref Unsafe.Add(ref yb, 2), 2), min);

            // 0 <= (x - min) * id <= 31 up to rounding, so + 0.5 truncates to 0..31.
            var vmin = Vector256.Create(min);
            var vid = Vector256.Create(id);
            var q0 = Quant(v0, vmin, vid); var q1 = Quant(v1, vmin, vid); var q2 = Quant(v2, vmin, vid); var q3 = Quant(v3, vmin, vid);

            uint qh = (q0 << 27).ExtractMostSignificantBits()
                | (q1 << 27).ExtractMostSignificantBits() << 8
                | (q2 << 27).ExtractMostSignificantBits() << 16
                | (q3 << 27).ExtractMostSignificantBits() << 24;
            BinaryPrimitives.WriteUInt32LittleEndian(MemoryMarshal.CreateSpan(ref Unsafe.Add(ref yb, 4), 4), qh);

            var nibble = Vector256.Create((ushort)0x0F);
            var lo = Vector256.Narrow(q0, q1) & nibble;
            var hi = Vector256.Narrow(q2, q3) & nibble;
            var packed = lo | hi << 4;
            Vector128.Narrow(packed.GetLower(), packed.GetUpper()).StoreUnsafe(ref Unsafe.Add(ref yb, 8));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> Quant(Vector256<float> v, Vector256<float> min, Vector256<float> id) =>
        Vector256.ConvertToInt32Native((v - min) * id + Vector256.Create(0.5f)).AsUInt32();

    /// <summary>dequantize_row_q5_1: y[k] = (nibble | fifth bit) * d + m.</summary>
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
            uint qh = BinaryPrimitives.ReadUInt32LittleEndian(b[4..]);
            for (int j = 0; j < BlockSize / 2; j++)
            {
                int xh0 = (int)(qh >> (j + 0) << 4 & 0x10);
                int xh1 = (int)(qh >> (j + 12) & 0x10);
                int x0 = b[8 + j] & 0x0F | xh0;
                int x1 = b[8 + j] >> 4 | xh1;
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
            var (h0, h1, h2, h3) = HighBits(BinaryPrimitives.ReadUInt32LittleEndian(MemoryMarshal.CreateReadOnlySpan(ref Unsafe.Add(ref xb, 4), 4)));
            var (q0, q1, q2, q3) = Nibbles(Vector128.LoadUnsafe(ref Unsafe.Add(ref xb, 8)));
            // Multiply, then add: two roundings as in C (the JIT never fuses these into an FMA).
            StoreBlock(ref Unsafe.Add(ref yr, i * BlockSize),
                Vector256.ConvertToSingle(q0 | h0) * vd + vm, Vector256.ConvertToSingle(q1 | h1) * vd + vm,
                Vector256.ConvertToSingle(q2 | h2) * vd + vm, Vector256.ConvertToSingle(q3 | h3) * vd + vm);
        }
    }
}
