using System.Runtime.Intrinsics;
using static EdgeTune.Core.Quantization.KQuantMath;

namespace EdgeTune.Core.Quantization;

/// <summary>
/// Q2_K: mirrors ggml-quants.c quantize_row_q2_K_ref and dequantize_row_q2_K (llama.cpp c0c7e147).
/// Value = d*scale[j]*q - dmin*min[j] with q in [0, 3], 16 sub-blocks of 16 values, 4-bit scales and mins.
/// </summary>
/// <remarks>
/// Block (84 bytes, 256 values):
///   0  scales 16 bytes: low nibble the scale, high nibble the min of sub-block j
///  16  qs     64 bytes: per 128 values, byte l holds values l, l+32, l+64, l+96 in bits 0-1, 2-3, 4-5, 6-7
///  80  d      fp16 super-block scale of the scales
///  82  dmin   fp16 super-block scale of the mins
/// </remarks>
internal static class Q2_K
{
    public const int BlockBytes = 84;

    private const float Q4Scale = 15f;

    /// <summary>
    /// Quantises like quantize_row_q2_K_ref, byte for byte. The searches of all 16 sub-blocks run at once,
    /// one per vector lane (see <see cref="KQuantSimd"/>); the rest is vectorised over values.
    /// </summary>
    public static unsafe void Quantize(ReadOnlySpan<float> x, Span<byte> y)
    {
        if (!KQuantSimd.IsSupported)
        {
            QuantizeReference(x, y);
            return;
        }
        int nb = BlockCount(x.Length, y.Length, BlockBytes);
        float* xt = stackalloc float[QK_K];
        float* wt = stackalloc float[QK_K];
        float* lt = stackalloc float[QK_K];
        float* laux = stackalloc float[QK_K];
        int* L = stackalloc int[QK_K];
        float* scales = stackalloc float[16];
        float* mins = stackalloc float[16];
        fixed (float* xp = x)
        fixed (byte* yp = y)
        {
            for (int i = 0; i < nb; i++)
            {
                float* xb = xp + (long)i * QK_K;
                byte* yb = yp + (long)i * BlockBytes;
                var block = new Span<byte>(yb, BlockBytes);

                // Lane g of row r = value r of sub-block g (16 lanes); weights |x|.
                KQuantSimd.Transpose(xb, xt, 16, 16);
                for (int r = 0; r < QK_K; r += 8)
                    Vector256.Store(Vector256.Abs(Vector256.Load(xt + r)), wt + r);
                KQuantSimd.MakeQkx2Quants(xt, wt, 16, 3, -0.5f, 0.1f, 15, true, lt, laux, out var sv, out var mv);
                sv.Store(scales);
                mv.Store(mins);

                PackScales(new ReadOnlySpan<float>(scales, 16), new ReadOnlySpan<float>(mins, 16), block);

                float dAll = ReadHalf(block, 80), dminAll = ReadHalf(block, 82);
                var lo = Vector256<int>.Zero;
                var hi = Vector256.Create(3);
                for (int j = 0; j < 16; ++j)
                {
                    float d = dAll * (yb[j] & 0xF);
                    if (d == 0)
                    {
                        for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = (int)lt[ii * 16 + j];
                        continue;
                    }
                    var dv = Vector256.Create(d);
                    var dmv = Vector256.Create(dminAll * (yb[j] >> 4));
                    for (int k = 0; k < 16; k += 8)
                    {
                        var l = KQuantSimd.NearestInt((Vector256.Load(xb + 16 * j + k) + dmv) / dv);
                        Vector256.Store(Vector256.Max(lo, Vector256.Min(hi, l)), L + 16 * j + k);
                    }
                }
                KQuantSimd.Pack2Bit(L, yb + 16);
            }
        }
    }

    /// <summary>quantize_row_q2_K_ref transliterated: the scalar reference the fast path must equal.</summary>
    public static void QuantizeReference(ReadOnlySpan<float> x, Span<byte> y)
    {
        int nb = BlockCount(x.Length, y.Length, BlockBytes);
        Span<byte> L = stackalloc byte[QK_K];
        Span<byte> Laux = stackalloc byte[16];
        Span<float> weights = stackalloc float[16];
        Span<float> mins = stackalloc float[QK_K / 16];
        Span<float> scales = stackalloc float[QK_K / 16];

        for (int i = 0; i < nb; i++)
        {
            var xb = x.Slice(i * QK_K, QK_K);
            var yb = y.Slice(i * BlockBytes, BlockBytes);
            for (int j = 0; j < QK_K / 16; ++j)
            {
                for (int l = 0; l < 16; ++l) weights[l] = MathF.Abs(xb[16 * j + l]);
                scales[j] = MakeQkx2Quants(16, 3, xb.Slice(16 * j, 16), weights, L.Slice(16 * j, 16), out mins[j], Laux, -0.5f, 0.1f, 15, true);
            }

            PackScales(scales, mins, yb);

            float dAll = ReadHalf(yb, 80), dminAll = ReadHalf(yb, 82);
            for (int j = 0; j < QK_K / 16; ++j)
            {
                float d = dAll * (yb[j] & 0xF);
                if (d == 0) continue;
                float dm = dminAll * (yb[j] >> 4);
                for (int ii = 0; ii < 16; ++ii)
                {
                    int l = NearestInt((xb[16 * j + ii] + dm) / d);
                    L[16 * j + ii] = (byte)Math.Max(0, Math.Min(3, l));
                }
            }

            var qs = yb.Slice(16, 64);
            for (int j = 0; j < QK_K; j += 128)
            {
                for (int l = 0; l < 32; ++l)
                    qs[j / 4 + l] = (byte)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
            }
        }
    }

    /// <summary>
    /// The middle of quantize_row_q2_K_ref: the largest scale and min set d and dmin; each sub-block's
    /// scale and min become 4-bit integers in the low and high nibble of its scale byte.
    /// </summary>
    private static void PackScales(ReadOnlySpan<float> scales, ReadOnlySpan<float> mins, Span<byte> block)
    {
        float maxScale = 0; // as the min is deducted, scales are never negative
        float maxMin = 0;
        for (int j = 0; j < 16; ++j)
        {
            if (scales[j] > maxScale) maxScale = scales[j];
            if (mins[j] > maxMin) maxMin = mins[j];
        }
        if (maxScale > 0)
        {
            float iscale = Q4Scale / maxScale;
            for (int j = 0; j < 16; ++j) block[j] = (byte)NearestInt(iscale * scales[j]); // C: int into uint8_t
            WriteHalf(block, 80, maxScale / Q4Scale);
        }
        else
        {
            block[..16].Clear();
            WriteHalf(block, 80, 0f);
        }
        if (maxMin > 0)
        {
            float iscale = Q4Scale / maxMin;
            for (int j = 0; j < 16; ++j) block[j] |= (byte)(NearestInt(iscale * mins[j]) << 4);
            WriteHalf(block, 82, maxMin / Q4Scale);
        }
        else
        {
            WriteHalf(block, 82, 0f);
        }
    }

    /// <summary>dequantize_row_q2_K: value = (d*sc)*q - (dmin*m), 16 values per scale byte.</summary>
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
                float d = ReadHalf(block, 80), min = ReadHalf(block, 82);
                byte* q = b + 16;
                int @is = 0;
                for (int n = 0; n < QK_K; n += 128, q += 32)
                {
                    for (int shift = 0; shift < 8; shift += 2, @is += 2)
                    {
                        // Values n + 16*(shift) .. : two sub-blocks of 16 read bytes q[0..16) and q[16..32).
                        byte sc0 = b[@is], sc1 = b[@is + 1];
                        float dl0 = d * (sc0 & 0xF), ml0 = min * (sc0 >> 4);
                        float dl1 = d * (sc1 & 0xF), ml1 = min * (sc1 >> 4);
                        float* yo = yb + n + 16 * shift;
                        if (Vector256.IsHardwareAccelerated)
                        {
                            var qv = Vector256.ShiftRightLogical(Vector256.Load(q), shift) & Vector256.Create((byte)3);
                            KQuantSimd.WidenToSingle(qv, out var f0, out var f1, out var f2, out var f3);
                            Vector256.Store(Vector256.Create(dl0) * f0 - Vector256.Create(ml0), yo);
                            Vector256.Store(Vector256.Create(dl0) * f1 - Vector256.Create(ml0), yo + 8);
                            Vector256.Store(Vector256.Create(dl1) * f2 - Vector256.Create(ml1), yo + 16);
                            Vector256.Store(Vector256.Create(dl1) * f3 - Vector256.Create(ml1), yo + 24);
                        }
                        else
                        {
                            for (int l = 0; l < 16; ++l) yo[l] = dl0 * ((q[l] >> shift) & 3) - ml0;
                            for (int l = 0; l < 16; ++l) yo[16 + l] = dl1 * ((q[l + 16] >> shift) & 3) - ml1;
                        }
                    }
                }
            }
        }
    }
}
