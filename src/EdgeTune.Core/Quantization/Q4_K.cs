using System.Runtime.Intrinsics;
using static EdgeTune.Core.Quantization.KQuantMath;

namespace EdgeTune.Core.Quantization;

/// <summary>
/// Q4_K: mirrors ggml-quants.c quantize_row_q4_K_ref and dequantize_row_q4_K (llama.cpp c0c7e147).
/// Value = d*scale[j]*q - dmin*min[j] with q in [0, 15], 8 sub-blocks of 32 values.
/// </summary>
/// <remarks>
/// Block (144 bytes, 256 values):
///   0  d      fp16 super-block scale of the sub-block scales
///   2  dmin   fp16 super-block scale of the sub-block mins
///   4  scales 12 bytes: eight 6-bit scales and eight 6-bit mins (see get_scale_min_k4)
///  16  qs     128 bytes: per 64 values, 32 bytes whose low nibbles are values 0-31 and high nibbles 32-63
/// </remarks>
internal static class Q4_K
{
    public const int BlockBytes = 144;

    /// <summary>
    /// Quantises like quantize_row_q4_K_ref, byte for byte. The searches of two super-blocks run together,
    /// one sub-block per vector lane (see <see cref="KQuantSimd"/>); the rest is vectorised over values.
    /// </summary>
    public static unsafe void Quantize(ReadOnlySpan<float> x, Span<byte> y)
    {
        if (!KQuantSimd.IsSupported)
        {
            QuantizeReference(x, y);
            return;
        }
        int nb = BlockCount(x.Length, y.Length, BlockBytes);
        // Scratch for two super-blocks, reused: transposed values and weights, quants, search buffer.
        float* xt = stackalloc float[2 * QK_K];
        float* wt = stackalloc float[2 * QK_K];
        float* lt = stackalloc float[2 * QK_K];
        float* laux = stackalloc float[2 * QK_K];
        float* zeros = stackalloc float[QK_K];
        new Span<float>(zeros, QK_K).Clear();
        int* L = stackalloc int[QK_K];
        float* scales = stackalloc float[16];
        float* mins = stackalloc float[16];
        fixed (float* xp = x)
        fixed (byte* yp = y)
        {
            for (int i = 0; i < nb; i += 2)
            {
                float* xa = xp + (long)i * QK_K;
                bool pair = i + 1 < nb;
                KQuantSimd.SearchQkx2Pair(xa, pair ? xa + QK_K : zeros, 15, -1f, 0.1f, 20, xt, wt, lt, laux, scales, mins);
                Finish(xa, yp + (long)i * BlockBytes, lt, scales, mins, L);
                if (pair) Finish(xa + QK_K, yp + (long)(i + 1) * BlockBytes, lt + 8, scales + 8, mins + 8, L);
            }
        }
    }

    // The rest of quantize_row_q4_K_ref after the searches. lt: the searched quants, row i lane j = value i
    // of sub-block j, rows 16 floats apart.
    private static unsafe void Finish(float* xb, byte* yb, float* lt, float* scales, float* mins, int* L)
    {
        var block = new Span<byte>(yb, BlockBytes);
        PackScales(new ReadOnlySpan<float>(scales, 8), new ReadOnlySpan<float>(mins, 8), block);

        // Requantise with the rounded scales (vectorised over values; each value is independent).
        float dAll = ReadHalf(block, 0), dminAll = ReadHalf(block, 2);
        for (int j = 0; j < 8; ++j)
        {
            GetScaleMinK4(j, block.Slice(4, 12), out byte sc, out byte m);
            float d = dAll * sc;
            if (d == 0)
            {
                for (int ii = 0; ii < 32; ++ii) L[32 * j + ii] = (int)lt[ii * 16 + j];
                continue;
            }
            var dv = Vector256.Create(d);
            var dmv = Vector256.Create(dminAll * m);
            for (int k = 0; k < 32; k += 8)
            {
                var l = KQuantSimd.NearestInt((Vector256.Load(xb + 32 * j + k) + dmv) / dv);
                Vector256.Store(Vector256.Max(Vector256<int>.Zero, Vector256.Min(Vector256.Create(15), l)), L + 32 * j + k);
            }
        }

        byte* q = yb + 16;
        for (int j = 0; j < QK_K; j += 64, q += 32)
        {
            var a = Vector256.Load(L + j) | (Vector256.Load(L + j + 32) << 4);
            var b = Vector256.Load(L + j + 8) | (Vector256.Load(L + j + 40) << 4);
            var c = Vector256.Load(L + j + 16) | (Vector256.Load(L + j + 48) << 4);
            var e = Vector256.Load(L + j + 24) | (Vector256.Load(L + j + 56) << 4);
            KQuantSimd.NarrowToBytes(a, b, c, e, q);
        }
    }

    /// <summary>quantize_row_q4_K_ref transliterated: the scalar reference the fast path must equal.</summary>
    public static void QuantizeReference(ReadOnlySpan<float> x, Span<byte> y)
    {
        int nb = BlockCount(x.Length, y.Length, BlockBytes);
        Span<byte> L = stackalloc byte[QK_K];
        Span<byte> Laux = stackalloc byte[32];
        Span<float> weights = stackalloc float[32];
        Span<float> mins = stackalloc float[QK_K / 32];
        Span<float> scales = stackalloc float[QK_K / 32];

        for (int i = 0; i < nb; i++)
        {
            var xb = x.Slice(i * QK_K, QK_K);
            var yb = y.Slice(i * BlockBytes, BlockBytes);
            for (int j = 0; j < QK_K / 32; ++j)
            {
                float sumX2 = 0;
                for (int l = 0; l < 32; ++l) sumX2 += xb[32 * j + l] * xb[32 * j + l];
                float avX = MathF.Sqrt(sumX2 / 32);
                for (int l = 0; l < 32; ++l) weights[l] = avX + MathF.Abs(xb[32 * j + l]);
                scales[j] = MakeQkx2Quants(32, 15, xb.Slice(32 * j, 32), weights, L.Slice(32 * j, 32), out mins[j], Laux, -1f, 0.1f, 20, false);
            }

            PackScales(scales, mins, yb);

            float dAll = ReadHalf(yb, 0), dminAll = ReadHalf(yb, 2);
            for (int j = 0; j < QK_K / 32; ++j)
            {
                GetScaleMinK4(j, yb.Slice(4, 12), out byte sc, out byte m);
                float d = dAll * sc;
                if (d == 0) continue;
                float dm = dminAll * m;
                for (int ii = 0; ii < 32; ++ii)
                {
                    int l = NearestInt((xb[32 * j + ii] + dm) / d);
                    L[32 * j + ii] = (byte)Math.Max(0, Math.Min(15, l));
                }
            }

            var q = yb.Slice(16, 128);
            for (int j = 0; j < QK_K; j += 64)
            {
                for (int l = 0; l < 32; ++l) q[l] = (byte)(L[j + l] | (L[j + l + 32] << 4));
                q = q[32..];
            }
        }
    }

    /// <summary>
    /// The middle of quantize_row_q4_K_ref (shared with Q5_K): the largest scale and min set d and dmin, each
    /// sub-block's scale and min become 6-bit integers packed into the 12 scale bytes at offset 4.
    /// </summary>
    internal static void PackScales(ReadOnlySpan<float> scales, ReadOnlySpan<float> mins, Span<byte> block)
    {
        float maxScale = 0; // as the min is deducted, scales are never negative
        float maxMin = 0;
        for (int j = 0; j < 8; ++j)
        {
            if (scales[j] > maxScale) maxScale = scales[j];
            if (mins[j] > maxMin) maxMin = mins[j];
        }
        float invScale = maxScale > 0 ? 63f / maxScale : 0f;
        float invMin = maxMin > 0 ? 63f / maxMin : 0f;
        var packed = block.Slice(4, 12);
        for (int j = 0; j < 8; ++j)
        {
            // C stores nearest_int into uint8_t (wrapping mod 256) before MIN(63, .).
            byte ls = (byte)NearestInt(invScale * scales[j]);
            byte lm = (byte)NearestInt(invMin * mins[j]);
            PackScaleMinK4(j, Math.Min((byte)63, ls), Math.Min((byte)63, lm), packed);
        }
        WriteHalf(block, 0, maxScale / 63f);
        WriteHalf(block, 2, maxMin / 63f);
    }

    /// <summary>dequantize_row_q4_K: value = (d*sc)*q - (dmin*m), in that order.</summary>
    public static unsafe void Dequantize(ReadOnlySpan<byte> x, Span<float> y)
    {
        int nb = x.Length / BlockBytes;
        if (y.Length < nb * QK_K) throw new ArgumentException("destination too short", nameof(y));
        fixed (byte* xp = x)
        fixed (float* yp = y)
        {
            for (int i = 0; i < nb; i++)
            {
                byte* b = xp + (long)i * BlockBytes;
                float* yb = yp + (long)i * QK_K;
                var block = new ReadOnlySpan<byte>(b, BlockBytes);
                float d = ReadHalf(block, 0), min = ReadHalf(block, 2);
                var scales = block.Slice(4, 12);
                byte* q = b + 16;
                for (int j = 0, @is = 0; j < QK_K; j += 64, @is += 2, q += 32)
                {
                    GetScaleMinK4(@is + 0, scales, out byte sc, out byte m);
                    float d1 = d * sc, m1 = min * m;
                    GetScaleMinK4(@is + 1, scales, out sc, out m);
                    float d2 = d * sc, m2 = min * m;
                    if (Vector256.IsHardwareAccelerated)
                    {
                        var qv = Vector256.Load(q);
                        KQuantSimd.StoreAffine32(qv & Vector256.Create((byte)0x0F), d1, m1, yb + j);
                        KQuantSimd.StoreAffine32(Vector256.ShiftRightLogical(qv, 4), d2, m2, yb + j + 32);
                    }
                    else
                    {
                        for (int l = 0; l < 32; ++l) yb[j + l] = d1 * (q[l] & 0xF) - m1;
                        for (int l = 0; l < 32; ++l) yb[j + 32 + l] = d2 * (q[l] >> 4) - m2;
                    }
                }
            }
        }
    }
}
