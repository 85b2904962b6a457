// Q8_K: mirrors ggml-quants.c quantize_row_q8_K_ref and dequantize_row_q8_K (llama.cpp c0c7e147).
// ggml uses it for intermediate (activation) quantisation in the K-quant dot products.
//
// Block of 256 values, 292 bytes (ggml-common.h block_q8_K):
//   float   d;          // bytes 0-3: scale, 1 / iscale with iscale = -127 / max (max: first value of largest magnitude)
//   int8_t  qs[256];    // bytes 4-259: q = MIN(127, nearest_int(iscale * x)); value = d * q
//   int16_t bsums[16];  // bytes 260-291: sum of qs in each group of 16
//
// All-zero blocks: ggml sets d = 0 and qs = 0 but leaves bsums as they were in the destination. We write
// zeros there, which is their true value and what ggml leaves in a zeroed buffer.

using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using static EdgeTune.Core.Quantization.LegacyQuantMath;

namespace EdgeTune.Core.Quantization;

internal static class Q8_K
{
    public const int BlockSize = 256;
    public const int BlockBytes = 292;
    private const int QsOffset = 4;
    private const int BsumsOffset = 4 + BlockSize;

    /// <summary>Quantises whole blocks: the bytes of <see cref="QuantizeReference"/>, with SIMD where the hardware has it.</summary>
    public static void Quantize(ReadOnlySpan<float> x, Span<byte> y)
    {
        if (Vector256.IsHardwareAccelerated) QuantizeVector256(x, y);
        else QuantizeReference(x, y);
    }

    /// <summary>quantize_row_q8_K_ref, transliterated (plus zero bsums for all-zero blocks, see the header).</summary>
    public static void QuantizeReference(ReadOnlySpan<float> x, Span<byte> y)
    {
        int nb = QuantizeBlockCount(x, y, BlockSize, BlockBytes);
        for (int i = 0; i < nb; i++)
            QuantizeBlockReference(x.Slice(i * BlockSize, BlockSize), y.Slice(i * BlockBytes, BlockBytes));
    }

    private static void QuantizeBlockReference(ReadOnlySpan<float> x, Span<byte> y)
    {
        float max = 0;
        float amax = 0;
        for (int j = 0; j < BlockSize; j++)
        {
            float ax = MathF.Abs(x[j]);
            if (ax > amax)
            {
                amax = ax;
                max = x[j];
            }
        }

        if (amax == 0f)
        {
            y.Clear(); // d = 0, qs = 0 (and bsums = 0, our choice)
            return;
        }

        // ggml: "We need this change for IQ2_XXS, else the AVX implementation becomes very awkward" (-127, not -128).
        float iscale = -127f / max;
        var qs = y.Slice(QsOffset, BlockSize);
        for (int j = 0; j < BlockSize; j++)
        {
            int v = NearestInt(iscale * x[j]);
            qs[j] = (byte)Math.Min(127, v); // (int8_t)MIN(127, v)
        }

        WriteBsums(y);
        BinaryPrimitives.WriteSingleLittleEndian(y, 1 / iscale);
    }

    private static void WriteBsums(Span<byte> y)
    {
        for (int j = 0; j < BlockSize / 16; j++)
        {
            int sum = 0;
            for (int ii = 0; ii < 16; ii++)
                sum += (sbyte)y[QsOffset + j * 16 + ii];
            BinaryPrimitives.WriteInt16LittleEndian(y[(BsumsOffset + 2 * j)..], (short)sum);
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
            var yblock = y.Slice(i * BlockBytes, BlockBytes);

            // The block's largest |x|, 32 values at a time.
            uint amaxBits = 0;
            for (int k = 0; k < BlockSize; k += 32)
            {
                ref float xk = ref Unsafe.Add(ref xb, k);
                amaxBits = Math.Max(amaxBits, MaxBits(AbsBits(Load256(ref xk, 0)), AbsBits(Load256(ref xk, 1)),
                                                      AbsBits(Load256(ref xk, 2)), AbsBits(Load256(ref xk, 3))));
            }

            // All-zero blocks, and blocks with a NaN, an infinity or a tiny maximum, take the scalar path.
            if (amaxBits == 0 || !IsTameAbsMax(amaxBits))
            {
                QuantizeBlockReference(x.Slice(i * BlockSize, BlockSize), yblock);
                continue;
            }

            float max = Unsafe.Add(ref xb, FirstIndexOf(amaxBits, ref xb));
            float iscale = -127f / max;

            // |iscale * x| <= 127 up to rounding, well inside nearest_int's range, so the quants are within
            // [-127, 127]: the int32 lanes narrow to int8 unchanged and their sums are the bsums.
            var vscale = Vector256.Create(iscale);
            ref byte qs = ref Unsafe.Add(ref yr, i * BlockBytes + QsOffset);
            for (int k = 0; k < BlockSize; k += 32)
            {
                ref float xk = ref Unsafe.Add(ref xb, k);
                var q0 = Quant(Load256(ref xk, 0), vscale); var q1 = Quant(Load256(ref xk, 1), vscale);
                var q2 = Quant(Load256(ref xk, 2), vscale); var q3 = Quant(Load256(ref xk, 3), vscale);
                Vector256.Narrow(Vector256.Narrow(q0, q1), Vector256.Narrow(q2, q3)).AsByte().StoreUnsafe(ref Unsafe.Add(ref qs, k));
                BinaryPrimitives.WriteInt16LittleEndian(yblock[(BsumsOffset + k / 8)..], (short)Vector256.Sum(q0 + q1));
                BinaryPrimitives.WriteInt16LittleEndian(yblock[(BsumsOffset + k / 8 + 2)..], (short)Vector256.Sum(q2 + q3));
            }

            BinaryPrimitives.WriteSingleLittleEndian(yblock, 1 / iscale);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Quant(Vector256<float> v, Vector256<float> iscale)
    {
        // nearest_int: add 1.5 * 2^23 so the integer lands in the low mantissa bits. The product is rounded
        // before the sum, as in C (the JIT does not fuse them into an FMA).
        var bits = (v * iscale + Vector256.Create(12582912f)).AsInt32();
        return Vector256.Min((bits & Vector256.Create(0x007fffff)) - Vector256.Create(0x00400000), Vector256.Create(127));
    }

    /// <summary>Index of the first of 256 values whose |x| bits equal <paramref name="bits"/>; the block must hold one.</summary>
    private static int FirstIndexOf(uint bits, ref float xb)
    {
        for (int k = 0; ; k += 32)
        {
            ref float xk = ref Unsafe.Add(ref xb, k);
            var a0 = AbsBits(Load256(ref xk, 0)); var a1 = AbsBits(Load256(ref xk, 1));
            var a2 = AbsBits(Load256(ref xk, 2)); var a3 = AbsBits(Load256(ref xk, 3));
            if (MaxBits(a0, a1, a2, a3) == bits)
                return k + LegacyQuantMath.FirstIndexOf(bits, a0, a1, a2, a3);
        }
    }

    /// <summary>dequantize_row_q8_K: y = d * qs[j].</summary>
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
            float d = BinaryPrimitives.ReadSingleLittleEndian(b);
            for (int j = 0; j < BlockSize; j++)
                o[j] = d * (sbyte)b[QsOffset + j];
        }
    }

    internal static void DequantizeVector256(ReadOnlySpan<byte> x, Span<float> y)
    {
        int nb = DequantizeBlockCount(x, y, BlockSize, BlockBytes);
        ref byte xr = ref MemoryMarshal.GetReference(x);
        ref float yr = ref MemoryMarshal.GetReference(y);
        for (int i = 0; i < nb; i++)
        {
            var vd = Vector256.Create(BinaryPrimitives.ReadSingleLittleEndian(x.Slice(i * BlockBytes, 4)));
            ref byte qs = ref Unsafe.Add(ref xr, i * BlockBytes + QsOffset);
            for (int k = 0; k < BlockSize; k += 32)
            {
                var (s0, s1) = Vector256.Widen(Vector256.LoadUnsafe(ref Unsafe.Add(ref qs, k)).AsSByte());
                var (i0, i1) = Vector256.Widen(s0);
                var (i2, i3) = Vector256.Widen(s1);
                StoreBlock(ref Unsafe.Add(ref yr, i * BlockSize + k),
                    vd * Vector256.ConvertToSingle(i0), vd * Vector256.ConvertToSingle(i1),
                    vd * Vector256.ConvertToSingle(i2), vd * Vector256.ConvertToSingle(i3));
            }
        }
    }
}
