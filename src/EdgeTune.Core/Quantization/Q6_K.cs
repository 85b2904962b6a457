using System.Runtime.Intrinsics;
using static EdgeTune.Core.Quantization.KQuantMath;

namespace EdgeTune.Core.Quantization;

/// <summary>
/// Q6_K: mirrors ggml-quants.c quantize_row_q6_K_ref and dequantize_row_q6_K (llama.cpp c0c7e147).
/// Value = d*scale[j]*(q - 32) with q in [0, 63], 16 sub-blocks of 16 values, int8 scales.
/// </summary>
/// <remarks>
/// Block (210 bytes, 256 values), per 128 values (two halves, ql += 64, qh += 32):
///   0    ql     128 bytes: ql[l] = low 4 bits of values l (low nibble) and l+64 (high nibble);
///                          ql[l+32] = those of values l+32 and l+96 (l &lt; 32)
///   128  qh     64 bytes: qh[l] = high 2 bits of values l, l+32, l+64, l+96 in bits 0-1, 2-3, 4-5, 6-7
///   192  scales 16 int8 sub-block scales
///   208  d      fp16 super-block scale
/// </remarks>
internal static class Q6_K
{
    public const int BlockBytes = 210;

    /// <summary>
    /// Quantises like quantize_row_q6_K_ref, byte for byte. The searches of all 16 sub-blocks run at once,
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
        float* w = stackalloc float[QK_K];
        float* wx = stackalloc float[QK_K];
        float* lt = stackalloc float[QK_K];
        float* laux = stackalloc float[QK_K];
        int* L = stackalloc int[QK_K];
        float* scales = stackalloc float[16];
        fixed (float* xp = x)
        fixed (byte* yp = y)
        {
            for (int i = 0; i < nb; i++)
            {
                float* xb = xp + (long)i * QK_K;
                byte* yb = yp + (long)i * BlockBytes;
                var block = new Span<byte>(yb, BlockBytes);

                // Lane g of row r = value r of sub-block g (16 lanes).
                KQuantSimd.Transpose(xb, xt, 16, 16);
                for (int r = 0; r < QK_K; r += 8)
                {
                    var v = Vector256.Load(xt + r);
                    var vv = v * v;               // make_qx_quants' weight w = x*x (rmse_type 1)
                    Vector256.Store(vv, w + r);
                    Vector256.Store(vv * v, wx + r); // and w*x[i]
                }
                KQuantSimd.MakeQxQuantsRmse1(xt, w, wx, 16, 32, lt, laux).Store(scales);

                float maxScale = 0, maxAbsScale = 0;
                for (int ib = 0; ib < 16; ++ib)
                {
                    float absScale = MathF.Abs(scales[ib]);
                    if (absScale > maxAbsScale)
                    {
                        maxAbsScale = absScale;
                        maxScale = scales[ib];
                    }
                }
                if (maxAbsScale < GroupMaxEps)
                {
                    block.Clear(); // d = fp16(0) is all zero bits too
                    continue;
                }

                float iscale = -128f / maxScale;
                WriteHalf(block, 208, 1 / iscale);
                for (int ib = 0; ib < 16; ++ib)
                    yb[192 + ib] = (byte)(sbyte)Math.Min(127, NearestInt(iscale * scales[ib]));

                float dAll = ReadHalf(block, 208);
                var lo = Vector256.Create(-32);
                var hi = Vector256.Create(31);
                var bias = Vector256.Create(32);
                for (int j = 0; j < 16; ++j)
                {
                    float d = dAll * (sbyte)yb[192 + j];
                    if (d == 0)
                    {
                        for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = (int)lt[ii * 16 + j];
                        continue;
                    }
                    var dv = Vector256.Create(d);
                    for (int k = 0; k < 16; k += 8)
                    {
                        var l = KQuantSimd.NearestInt(Vector256.Load(xb + 16 * j + k) / dv);
                        Vector256.Store(Vector256.Max(lo, Vector256.Min(hi, l)) + bias, L + 16 * j + k);
                    }
                }

                var nib = Vector256.Create(0xF);
                for (int c = 0; c < 2; ++c)
                {
                    int* Lc = L + 128 * c;
                    byte* ql = yb + 64 * c;
                    byte* qh = yb + 128 + 32 * c;
                    for (int part = 0; part < 2; ++part)
                    {
                        // part 0: ql[l] from values l and l+64; part 1: ql[l+32] from values l+32 and l+96.
                        int* a = Lc + 32 * part;
                        KQuantSimd.NarrowToBytes(
                            (Vector256.Load(a) & nib) | ((Vector256.Load(a + 64) & nib) << 4),
                            (Vector256.Load(a + 8) & nib) | ((Vector256.Load(a + 72) & nib) << 4),
                            (Vector256.Load(a + 16) & nib) | ((Vector256.Load(a + 80) & nib) << 4),
                            (Vector256.Load(a + 24) & nib) | ((Vector256.Load(a + 88) & nib) << 4),
                            ql + 32 * part);
                    }
                    KQuantSimd.NarrowToBytes(High(Lc), High(Lc + 8), High(Lc + 16), High(Lc + 24), qh);
                }
            }
        }

        static Vector256<int> High(int* l) =>
            (Vector256.Load(l) >> 4) | ((Vector256.Load(l + 32) >> 4) << 2)
            | ((Vector256.Load(l + 64) >> 4) << 4) | ((Vector256.Load(l + 96) >> 4) << 6);
    }

    /// <summary>quantize_row_q6_K_ref transliterated: the scalar reference the fast path must equal.</summary>
    public static void QuantizeReference(ReadOnlySpan<float> x, Span<byte> y)
    {
        int nb = BlockCount(x.Length, y.Length, BlockBytes);
        Span<sbyte> L = stackalloc sbyte[QK_K];
        Span<float> scales = stackalloc float[QK_K / 16];

        for (int i = 0; i < nb; i++)
        {
            var xb = x.Slice(i * QK_K, QK_K);
            var yb = y.Slice(i * BlockBytes, BlockBytes);

            float maxScale = 0;
            float maxAbsScale = 0;
            for (int ib = 0; ib < QK_K / 16; ++ib)
            {
                float scale = MakeQxQuants(16, 32, xb.Slice(16 * ib, 16), L.Slice(16 * ib, 16), 1, default);
                scales[ib] = scale;
                float absScale = MathF.Abs(scale);
                if (absScale > maxAbsScale)
                {
                    maxAbsScale = absScale;
                    maxScale = scale;
                }
            }

            if (maxAbsScale < GroupMaxEps)
            {
                yb.Clear();
                WriteHalf(yb, 208, 0f);
                continue;
            }

            float iscale = -128f / maxScale;
            WriteHalf(yb, 208, 1 / iscale);
            var sc = yb.Slice(192, 16);
            for (int ib = 0; ib < QK_K / 16; ++ib)
                sc[ib] = (byte)(sbyte)Math.Min(127, NearestInt(iscale * scales[ib]));

            float dAll = ReadHalf(yb, 208);
            for (int j = 0; j < QK_K / 16; ++j)
            {
                float d = dAll * (sbyte)sc[j];
                if (d == 0) continue;
                for (int ii = 0; ii < 16; ++ii)
                {
                    int l = NearestInt(xb[16 * j + ii] / d);
                    l = Math.Max(-32, Math.Min(31, l));
                    L[16 * j + ii] = (sbyte)(l + 32);
                }
            }

            var ql = yb[..128];
            var qh = yb.Slice(128, 64);
            for (int j = 0; j < QK_K; j += 128)
            {
                for (int l = 0; l < 32; ++l)
                {
                    int q1 = L[j + l + 0] & 0xF;
                    int q2 = L[j + l + 32] & 0xF;
                    int q3 = L[j + l + 64] & 0xF;
                    int q4 = L[j + l + 96] & 0xF;
                    ql[l + 0] = (byte)(q1 | (q3 << 4));
                    ql[l + 32] = (byte)(q2 | (q4 << 4));
                    qh[l] = (byte)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
                }
                ql = ql[64..];
                qh = qh[32..];
            }
        }
    }

    /// <summary>dequantize_row_q6_K: value = (d*scale)*(q - 32), in that order.</summary>
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
                float d = ReadHalf(new ReadOnlySpan<byte>(b, BlockBytes), 208);
                byte* ql = b;
                byte* qh = b + 128;
                sbyte* sc = (sbyte*)(b + 192);
                for (int n = 0; n < QK_K; n += 128, ql += 64, qh += 32, sc += 8)
                {
                    if (Vector256.IsHardwareAccelerated)
                    {
                        var l0 = Vector256.Load(ql);
                        var l1 = Vector256.Load(ql + 32);
                        var h = Vector256.Load(qh);
                        var nib = Vector256.Create((byte)0x0F);
                        var two = Vector256.Create((byte)0x30);
                        Store32((l0 & nib) | (Vector256.ShiftLeft(h, 4) & two), d * sc[0], d * sc[1], yb + n);
                        Store32((l1 & nib) | (Vector256.ShiftLeft(h, 2) & two), d * sc[2], d * sc[3], yb + n + 32);
                        Store32(Vector256.ShiftRightLogical(l0, 4) | (h & two), d * sc[4], d * sc[5], yb + n + 64);
                        Store32(Vector256.ShiftRightLogical(l1, 4) | (Vector256.ShiftRightLogical(h, 2) & two), d * sc[6], d * sc[7], yb + n + 96);
                    }
                    else
                    {
                        for (int l = 0; l < 32; ++l)
                        {
                            int @is = l / 16;
                            int q1 = ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                            int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                            int q3 = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                            yb[n + l + 0] = d * sc[@is + 0] * q1;
                            yb[n + l + 32] = d * sc[@is + 2] * q2;
                            yb[n + l + 64] = d * sc[@is + 4] * q3;
                            yb[n + l + 96] = d * sc[@is + 6] * q4;
                        }
                    }
                }
            }
        }
    }

    // y[0..16) = d0*(q-32), y[16..32) = d1*(q-32) for 32 quants in [0, 63]; q-32 is exact in float.
    private static unsafe void Store32(Vector256<byte> q, float d0, float d1, float* y)
    {
        KQuantSimd.WidenToSingle(q, out var f0, out var f1, out var f2, out var f3);
        var bias = Vector256.Create(32f);
        var dv0 = Vector256.Create(d0);
        var dv1 = Vector256.Create(d1);
        Vector256.Store(dv0 * (f0 - bias), y);
        Vector256.Store(dv0 * (f1 - bias), y + 8);
        Vector256.Store(dv1 * (f2 - bias), y + 16);
        Vector256.Store(dv1 * (f3 - bias), y + 24);
    }
}
