// Helpers shared by the legacy block codecs (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) and Q8_K.
//
// The scalar helpers reproduce what llama.cpp's x86-64 build of ggml-quants.c computes, including
// the cases C leaves undefined: the bytes ggml writes are those of the compiled code, so those are
// what we copy. The vector helpers work on one 32-value block and feed the fast paths; a fast path
// only takes a block whose scale keeps every intermediate in range, and hands any other block to
// the scalar reference, so fast and reference bytes are the same by construction.

using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using EdgeTune.Core.Numerics;

namespace EdgeTune.Core.Quantization;

internal static class LegacyQuantMath
{
    /// <summary>Bits of +infinity; absolute-value bit patterns above it are NaNs.</summary>
    public const uint InfinityBits = 0x7f800000;

    /// <summary>
    /// Bits of 2^-100. A block whose largest magnitude (or Q4_1/Q5_1 range) is at least this and finite
    /// has a normal scale d and a finite inverse scale, so x*id stays within rounding error of the quant
    /// range and every float-to-int conversion on the fast path is exact. Smaller maxima make d subnormal
    /// and id huge or infinite, where C's casts overflow; those rare blocks take the scalar path.
    /// </summary>
    public const uint TameMinBits = (127 - 100) << 23;

    /// <summary>True when a block with this largest |x| (as bits) can take a vector path: zero, or tame and finite.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool IsTameAbsMax(uint absBits) => absBits == 0 || (absBits >= TameMinBits && absBits < InfinityBits);

    /// <summary>Blocks in <paramref name="x"/>; throws unless it is whole blocks and <paramref name="y"/> can hold them.</summary>
    public static int QuantizeBlockCount(ReadOnlySpan<float> x, Span<byte> y, int blockSize, int blockBytes)
    {
        if (x.Length % blockSize != 0)
            throw new ArgumentException($"{x.Length} values are not whole blocks of {blockSize}", nameof(x));
        int nb = x.Length / blockSize;
        if (y.Length < (long)nb * blockBytes)
            throw new ArgumentException($"destination holds {y.Length} bytes, {(long)nb * blockBytes} needed", nameof(y));
        return nb;
    }

    /// <summary>Blocks in <paramref name="x"/>; throws unless it is whole blocks and <paramref name="y"/> can hold their values.</summary>
    public static int DequantizeBlockCount(ReadOnlySpan<byte> x, Span<float> y, int blockSize, int blockBytes)
    {
        if (x.Length % blockBytes != 0)
            throw new ArgumentException($"{x.Length} bytes are not whole blocks of {blockBytes}", nameof(x));
        int nb = x.Length / blockBytes;
        if (y.Length < (long)nb * blockSize)
            throw new ArgumentException($"destination holds {y.Length} values, {(long)nb * blockSize} needed", nameof(y));
        return nb;
    }

    /// <summary>C's roundf: round half away from zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float RoundF(float x) => MathF.Round(x, MidpointRounding.AwayFromZero);

    /// <summary>
    /// A C float-to-integer cast as x86-64 runs it (cvttss2si): truncate toward zero, and NaN or a
    /// value outside int32 gives int.MinValue. .NET's own cast saturates instead, which would give
    /// different bytes for the blocks where ggml's cast overflows (subnormal scales, infinities).
    /// A cast to int8_t/uint8_t then keeps the low byte of this result.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int TruncToInt32(float x) => x >= -2147483648f && x < 2147483648f ? (int)x : int.MinValue;

    /// <summary>C's (int8_t)x on x86-64: the low byte of <see cref="TruncToInt32"/>, sign-extended.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int ToInt8(float x) => (sbyte)TruncToInt32(x);

    /// <summary>ggml-quants.c nearest_int: round half to even via the 1.5*2^23 trick (valid for |x| &lt;= 2^22 - 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int NearestInt(float fval)
    {
        float val = fval + 12582912f;
        int i = BitConverter.SingleToInt32Bits(val);
        return (i & 0x007fffff) - 0x00400000;
    }

    /// <summary>
    /// GGML_FP32_TO_FP16 as built into libggml-base (ggml_compute_fp32_to_fp16, the portable bit
    /// version): round to nearest even like <see cref="Half"/>, except that every NaN becomes the
    /// quiet NaN 0x7e00 with the input's sign, where <see cref="Half"/> would keep payload bits.
    /// (Compared with ggml_fp32_to_fp16_row for all 2^32 inputs during development.)
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort FloatToHalf(float f)
    {
        uint w = BitConverter.SingleToUInt32Bits(f);
        if ((w & 0x7fffffffu) > InfinityBits)
            return (ushort)((w >> 16 & 0x8000u) | 0x7e00u);
        return Fp16.FromFloat(f);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void WriteHalf(Span<byte> destination, float value) =>
        BinaryPrimitives.WriteUInt16LittleEndian(destination, FloatToHalf(value));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ReadHalf(ReadOnlySpan<byte> source) => Fp16.ToFloat(BinaryPrimitives.ReadUInt16LittleEndian(source));

    // ---- Vector256 helpers over one 32-float block held as four vectors ----

    /// <summary>
    /// The float just below 0.5. trunc(v + copysign(HalfBelow, v)) is roundf(v): adding a full 0.5 would take
    /// 0.49999997f to 1 (the sum is a tie that goes to even), while one ulp less never crosses an integer
    /// wrongly, and true halves still reach the next integer because the sum rounds up to it. Checked against
    /// MathF.Round(v, AwayFromZero) for every float with |v| &lt; 2^31 during development (and that against C's
    /// roundf); the tests probe the edges.
    /// </summary>
    public const float HalfBelow = 0.49999997f;

    /// <summary>|x| as bits (sign cleared). For non-negative floats integer order is float order, NaNs sort above infinity.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<uint> AbsBits(Vector256<float> v) => v.AsUInt32() & Vector256.Create(0x7fffffffu);

    /// <summary>Largest |x| bit pattern of the block: integer max, so NaNs show up (above infinity) instead of being dropped.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint MaxBits(Vector256<uint> a0, Vector256<uint> a1, Vector256<uint> a2, Vector256<uint> a3)
    {
        var m = Vector256.Max(Vector256.Max(a0, a1), Vector256.Max(a2, a3));
        return HorizontalMax(Vector128.Max(m.GetLower(), m.GetUpper()));
    }

    /// <summary>Smallest lane; for lanes free of NaN (callers check), so the reduction order cannot matter.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HorizontalMin(Vector256<float> v)
    {
        var m = Vector128.MinNative(v.GetLower(), v.GetUpper());
        m = Vector128.MinNative(m, Vector128.Shuffle(m, Vector128.Create(2, 3, 0, 1)));
        m = Vector128.MinNative(m, Vector128.Shuffle(m, Vector128.Create(1, 0, 3, 2)));
        return m.ToScalar();
    }

    /// <summary>Largest lane; for lanes free of NaN (callers check).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HorizontalMax(Vector256<float> v)
    {
        var m = Vector128.MaxNative(v.GetLower(), v.GetUpper());
        m = Vector128.MaxNative(m, Vector128.Shuffle(m, Vector128.Create(2, 3, 0, 1)));
        m = Vector128.MaxNative(m, Vector128.Shuffle(m, Vector128.Create(1, 0, 3, 2)));
        return m.ToScalar();
    }

    /// <summary>Index of the first lane (in memory order) whose |x| bits equal <paramref name="bits"/>; the block must hold one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int FirstIndexOf(uint bits, Vector256<uint> a0, Vector256<uint> a1, Vector256<uint> a2, Vector256<uint> a3)
    {
        var b = Vector256.Create(bits);
        uint mask = Vector256.Equals(a0, b).ExtractMostSignificantBits()
            | Vector256.Equals(a1, b).ExtractMostSignificantBits() << 8
            | Vector256.Equals(a2, b).ExtractMostSignificantBits() << 16
            | Vector256.Equals(a3, b).ExtractMostSignificantBits() << 24;
        return System.Numerics.BitOperations.TrailingZeroCount(mask);
    }

    /// <summary>(int)roundf(v) lane-wise, for |v| &lt; 2^31 (the callers keep |v| near the quant range).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> RoundAwayToInt(Vector256<float> v) =>
        Vector256.ConvertToInt32Native(v + (v & Vector256.Create(-0f) | Vector256.Create(HalfBelow)));

    // ---- Vector128 versions of the same, for 128-bit SIMD (SSE, Arm64 AdvSimd): eight vectors per block ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<uint> AbsBits(Vector128<float> v) => v.AsUInt32() & Vector128.Create(0x7fffffffu);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint HorizontalMax(Vector128<uint> m)
    {
        m = Vector128.Max(m, Vector128.Shuffle(m, Vector128.Create(2u, 3u, 0u, 1u)));
        m = Vector128.Max(m, Vector128.Shuffle(m, Vector128.Create(1u, 0u, 3u, 2u)));
        return m.ToScalar();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> RoundAwayToInt(Vector128<float> v) =>
        Vector128.ConvertToInt32Native(v + (v & Vector128.Create(-0f) | Vector128.Create(HalfBelow)));

    /// <summary>Largest |x| bit pattern of a 32-float block, read as eight Vector128s.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint MaxBits128(ref float block)
    {
        var m = Vector128.Max(Vector128.Max(AbsBits(Load128(ref block, 0)), AbsBits(Load128(ref block, 1))),
                              Vector128.Max(AbsBits(Load128(ref block, 2)), AbsBits(Load128(ref block, 3))));
        m = Vector128.Max(m, Vector128.Max(Vector128.Max(AbsBits(Load128(ref block, 4)), AbsBits(Load128(ref block, 5))),
                                           Vector128.Max(AbsBits(Load128(ref block, 6)), AbsBits(Load128(ref block, 7)))));
        return HorizontalMax(m);
    }

    /// <summary>Index of the first value of a 32-float block whose |x| bits equal <paramref name="bits"/>; the block must hold one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int FirstIndexOf128(uint bits, ref float block)
    {
        var b = Vector128.Create(bits);
        uint mask = 0;
        for (int k = 0; k < 8; k++)
            mask |= Vector128.Equals(AbsBits(Load128(ref block, k)), b).ExtractMostSignificantBits() << (4 * k);
        return System.Numerics.BitOperations.TrailingZeroCount(mask);
    }

    /// <summary>Loads the <paramref name="index"/>-th group of four floats from <paramref name="block"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Load128(ref float block, int index) => Vector128.LoadUnsafe(ref block, (nuint)(index * 4));

    /// <summary>Loads the <paramref name="index"/>-th group of eight floats from <paramref name="block"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(ref float block, int index) => Vector256.LoadUnsafe(ref block, (nuint)(index * 8));

    // ---- Dequantisation helpers ----

    /// <summary>
    /// The 32 nibbles of a 4-bit block as ints in value order: low nibbles of qs[0..15] are values 0..15,
    /// high nibbles are values 16..31.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector256<int> Q0, Vector256<int> Q1, Vector256<int> Q2, Vector256<int> Q3) Nibbles(Vector128<byte> qs)
    {
        var (lo, hi) = Vector256.Widen(Vector256.Create(qs & Vector128.Create((byte)0x0F), Vector128.ShiftRightLogical(qs, 4)));
        var (q0, q1) = Vector256.Widen(lo);
        var (q2, q3) = Vector256.Widen(hi);
        return (q0.AsInt32(), q1.AsInt32(), q2.AsInt32(), q3.AsInt32());
    }

    /// <summary>
    /// The fifth bits of a 5-bit block, bit k of <paramref name="qh"/> for value k, as 0 or 16 per lane in value order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector256<int> H0, Vector256<int> H1, Vector256<int> H2, Vector256<int> H3) HighBits(uint qh)
    {
        var bits = Vector256.Create(1, 2, 4, 8, 16, 32, 64, 128);
        var sixteen = Vector256.Create(16);
        var h = Vector256.Create((int)qh);
        return (Vector256.Equals(h & bits, bits) & sixteen,
                Vector256.Equals(h & bits << 8, bits << 8) & sixteen,
                Vector256.Equals(h & bits << 16, bits << 16) & sixteen,
                Vector256.Equals(h & bits << 24, bits << 24) & sixteen);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreBlock(ref float y, Vector256<float> y0, Vector256<float> y1, Vector256<float> y2, Vector256<float> y3)
    {
        y0.StoreUnsafe(ref y, 0);
        y1.StoreUnsafe(ref y, 8);
        y2.StoreUnsafe(ref y, 16);
        y3.StoreUnsafe(ref y, 24);
    }
}
