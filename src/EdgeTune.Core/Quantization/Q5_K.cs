using System.Runtime.Intrinsics;
using static EdgeTune.Core.Quantization.KQuantMath;

namespace EdgeTune.Core.Quantization;

/// <summary>
/// Q5_K: mirrors ggml-quants.c quantize_row_q5_K_ref and dequantize_row_q5_K (llama.cpp c0c7e147).
/// Value = d*scale[j]*q - dmin*min[j] with q in [0, 31], 8 sub-blocks of 32 values.
/// </summary>
/// <remarks>
/// Block (176 bytes, 256 values):
///   0  d      fp16 super-block scale of the sub-block scales
///   2  dmin   fp16 super-block scale of the sub-block mins
///   4  scales 12 bytes: eight 6-bit scales and mins, packed as in Q4_K (get_scale_min_k4)
///  16  qh     32 bytes: bit 2c of qh[l] is bit 4 of value 64c+l, bit 2c+1 that of value 64c+32+l
///  48  qs     128 bytes: low 4 bits, packed as Q4_K's qs
/// </remarks>
internal static class Q5_K
{
    public const int BlockBytes = 176;

    /// <summary>
    /// Quantises like quantize_row_q5_K_ref, byte for byte. The searches of two super-blocks run together,
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
                KQuantSimd.SearchQkx2Pair(xa, pair ? xa + QK_K : zeros, 31, -0.5f, 0.1f, 15, xt, wt, lt, laux, scales, mins);
                Finish(xa, yp + (long)i * BlockBytes, lt, scales, mins, L);
                if (pair) Finish(xa + QK_K, yp + (long)(i + 1) * BlockBytes, lt + 8, scales + 8, mins + 8, L);
            }
        }
    }

    // The rest of quantize_row_q5_K_ref after the searches; lt rows are 16 floats apart (see Q4_K).
    private static unsafe void Finish(float* xb, byte* yb, float* lt, float* scales, float* mins, int* L)
    {
        var block = new Span<byte>(yb, BlockBytes);
        Q4_K.PackScales(new ReadOnlySpan<float>(scales, 8), new ReadOnlySpan<float>(mins, 8), block);

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
                Vector256.Store(Vector256.Max(Vector256<int>.Zero, Vector256.Min(Vector256.Create(31), l)), L + 32 * j + k);
            }
        }

        // qs as in Q4_K from the low 4 bits; qh collects bit 4 of each value.
        var low = Vector256.Create(15);
        var h0 = Vector256<int>.Zero;
        var h1 = Vector256<int>.Zero;
        var h2 = Vector256<int>.Zero;
        var h3 = Vector256<int>.Zero;
        byte* ql = yb + 48;
        for (int c = 0; c < 4; ++c, ql += 32)
        {
            int* Lc = L + 64 * c;
            var a0 = Vector256.Load(Lc); var b0 = Vector256.Load(Lc + 32);
            var a1 = Vector256.Load(Lc + 8); var b1 = Vector256.Load(Lc + 40);
            var a2 = Vector256.Load(Lc + 16); var b2 = Vector256.Load(Lc + 48);
            var a3 = Vector256.Load(Lc + 24); var b3 = Vector256.Load(Lc + 56);
            KQuantSimd.NarrowToBytes((a0 & low) | ((b0 & low) << 4), (a1 & low) | ((b1 & low) << 4),
                (a2 & low) | ((b2 & low) << 4), (a3 & low) | ((b3 & low) << 4), ql);
            h0 |= ((a0 >> 4) << (2 * c)) | ((b0 >> 4) << (2 * c + 1));
            h1 |= ((a1 >> 4) << (2 * c)) | ((b1 >> 4) << (2 * c + 1));
            h2 |= ((a2 >> 4) << (2 * c)) | ((b2 >> 4) << (2 * c + 1));
            h3 |= ((a3 >> 4) << (2 * c)) | ((b3 >> 4) << (2 * c + 1));
        }
        KQuantSimd.NarrowToBytes(h0, h1, h2, h3, yb + 16);
    }

    /// <summary>quantize_row_q5_K_ref transliterated: the scalar reference the fast path must equal.</summary>
    public static void QuantizeReference(ReadOnlySpan<float> x, Span<byte> y)
    {
        int nb = BlockCount(x.Length, y.Length, BlockBytes);
        Span<byte> L = stackalloc byte[QK_K];
        Span<float> mins = stackalloc float[QK_K / 32];
        Span<float> scales = stackalloc float[QK_K / 32];
        Span<float> weights = stackalloc float[32];
        Span<byte> Laux = stackalloc byte[32];

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
                scales[j] = MakeQkx2Quants(32, 31, xb.Slice(32 * j, 32), weights, L.Slice(32 * j, 32), out mins[j], Laux, -0.5f, 0.1f, 15, false);
            }

            Q4_K.PackScales(scales, mins, yb);

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
                    L[32 * j + ii] = (byte)Math.Max(0, Math.Min(31, l));
                }
            }

            var qh = yb.Slice(16, 32);
            var ql = yb.Slice(48, 128);
            qh.Clear();
            byte m1 = 1, m2 = 2;
            for (int n = 0; n < QK_K; n += 64)
            {
                for (int j = 0; j < 32; ++j)
                {
                    int l1 = L[n + j];
                    if (l1 > 15)
                    {
                        l1 -= 16;
                        qh[j] |= m1;
                    }
                    int l2 = L[n + j + 32];
                    if (l2 > 15)
                    {
                        l2 -= 16;
                        qh[j] |= m2;
                    }
                    ql[j] = (byte)(l1 | (l2 << 4));
                }
                m1 <<= 2;
                m2 <<= 2;
                ql = ql[32..];
            }
        }
    }

    /// <summary>dequantize_row_q5_K: value = (d*sc)*(low4 + 16*high) - (dmin*m).</summary>
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
                byte* qh = b + 16;
                byte* ql = b + 48;
                int @is = 0;
                byte u1 = 1, u2 = 2;
                for (int j = 0; j < QK_K; j += 64, ql += 32, @is += 2)
                {
                    GetScaleMinK4(@is + 0, scales, out byte sc, out byte m);
                    float d1 = d * sc, m1 = min * m;
                    GetScaleMinK4(@is + 1, scales, out sc, out m);
                    float d2 = d * sc, m2 = min * m;
                    if (Vector256.IsHardwareAccelerated)
                    {
                        var qv = Vector256.Load(ql);
                        var hv = Vector256.Load(qh);
                        var sixteen = Vector256.Create((byte)16);
                        var hi1 = ~Vector256.Equals(hv & Vector256.Create(u1), Vector256<byte>.Zero) & sixteen;
                        var hi2 = ~Vector256.Equals(hv & Vector256.Create(u2), Vector256<byte>.Zero) & sixteen;
                        KQuantSimd.StoreAffine32((qv & Vector256.Create((byte)0x0F)) | hi1, d1, m1, yb + j);
                        KQuantSimd.StoreAffine32(Vector256.ShiftRightLogical(qv, 4) | hi2, d2, m2, yb + j + 32);
                    }
                    else
                    {
                        for (int l = 0; l < 32; ++l) yb[j + l] = d1 * ((ql[l] & 0xF) + ((qh[l] & u1) != 0 ? 16 : 0)) - m1;
                        for (int l = 0; l < 32; ++l) yb[j + 32 + l] = d2 * ((ql[l] >> 4) + ((qh[l] & u2) != 0 ? 16 : 0)) - m2;
                    }
                    u1 <<= 2;
                    u2 <<= 2;
                }
            }
        }
    }
}
