using System.Buffers.Binary;
using System.Runtime.Intrinsics;
using static EdgeTune.Core.Quantization.KQuantMath;

namespace EdgeTune.Core.Quantization;

/// <summary>
/// Q3_K: mirrors ggml-quants.c quantize_row_q3_K_ref and dequantize_row_q3_K (llama.cpp c0c7e147).
/// Value = d*(scale[j] - 32)*(q - 4) with q in [0, 7], 16 sub-blocks of 16 values, 6-bit scales.
/// </summary>
/// <remarks>
/// Block (110 bytes, 256 values):
///    0  hmask  32 bytes: bit k of hmask[m] is bit 2 of value 32k+m
///   32  qs     64 bytes: low two bits, packed as Q2_K's qs
///   96  scales 12 bytes: low nibbles of scales 0-7 in bytes 0-7, of 8-15 in the high nibbles of bytes 0-7;
///                        the top two bits of scale j in bits 2*(j/4) of byte 8 + j%4
///  108  d      fp16 super-block scale
/// </remarks>
internal static class Q3_K
{
    public const int BlockBytes = 110;

    /// <summary>
    /// Quantises like quantize_row_q3_K_ref, byte for byte. The searches of all 16 sub-blocks run at once,
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

                // Lane g of row r = value r of sub-block g (16 lanes); w = x*x, wx = w*x.
                KQuantSimd.Transpose(xb, xt, 16, 16);
                for (int r = 0; r < QK_K; r += 8)
                {
                    var v = Vector256.Load(xt + r);
                    var vv = v * v;
                    Vector256.Store(vv, w + r);
                    Vector256.Store(vv * v, wx + r);
                }
                KQuantSimd.MakeQ3QuantsRmse(xt, w, wx, 16, 4, lt).Store(scales);

                PackScales(new ReadOnlySpan<float>(scales, 16), block);

                float dAll = ReadHalf(block, 108);
                var lo = Vector256.Create(-4);
                var hi = Vector256.Create(3);
                var bias = Vector256.Create(4);
                for (int j = 0; j < 16; ++j)
                {
                    float d = dAll * Scale(block.Slice(96, 12), j);
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

                // hmask takes bit 2 of each quant; Pack2Bit keeps the low two bits.
                KQuantSimd.NarrowToBytes(HighBits(L), HighBits(L + 8), HighBits(L + 16), HighBits(L + 24), yb);
                KQuantSimd.Pack2Bit(L, yb + 32);
            }
        }
    }

    // hmask bytes m..m+7 from quants in [0, 7]: bit k of byte m is bit 2 of value 32k+m.
    private static unsafe Vector256<int> HighBits(int* l)
    {
        var h = Vector256<int>.Zero;
        for (int k = 0; k < 8; ++k) h |= ((Vector256.Load(l + 32 * k) >> 2) & Vector256<int>.One) << k;
        return h;
    }

    /// <summary>quantize_row_q3_K_ref transliterated: the scalar reference the fast path must equal.</summary>
    public static void QuantizeReference(ReadOnlySpan<float> x, Span<byte> y)
    {
        int nb = BlockCount(x.Length, y.Length, BlockBytes);
        Span<sbyte> L = stackalloc sbyte[QK_K];
        Span<float> scales = stackalloc float[QK_K / 16];

        for (int i = 0; i < nb; i++)
        {
            var xb = x.Slice(i * QK_K, QK_K);
            var yb = y.Slice(i * BlockBytes, BlockBytes);
            for (int j = 0; j < QK_K / 16; ++j)
                scales[j] = MakeQ3Quants(16, 4, xb.Slice(16 * j, 16), L.Slice(16 * j, 16), true);

            PackScales(scales, yb);

            float dAll = ReadHalf(yb, 108);
            for (int j = 0; j < QK_K / 16; ++j)
            {
                float d = dAll * Scale(yb.Slice(96, 12), j);
                if (d == 0) continue;
                for (int ii = 0; ii < 16; ++ii)
                {
                    int l = NearestInt(xb[16 * j + ii] / d);
                    l = Math.Max(-4, Math.Min(3, l));
                    L[16 * j + ii] = (sbyte)(l + 4);
                }
            }

            var hmask = yb[..32];
            hmask.Clear();
            // The high bit of the first 32 quants goes to bit 0 of hmask[0..32), of the next 32 to bit 1, etc.
            int m = 0;
            byte hm = 1;
            for (int j = 0; j < QK_K; ++j)
            {
                if (L[j] > 3)
                {
                    hmask[m] |= hm;
                    L[j] -= 4;
                }
                if (++m == QK_K / 8)
                {
                    m = 0;
                    hm <<= 1;
                }
            }
            var qs = yb.Slice(32, 64);
            for (int j = 0; j < QK_K; j += 128)
            {
                for (int l = 0; l < 32; ++l)
                    qs[j / 4 + l] = (byte)((byte)L[j + l] | ((byte)L[j + l + 32] << 2) | ((byte)L[j + l + 64] << 4) | ((byte)L[j + l + 96] << 6));
            }
        }
    }

    /// <summary>
    /// The middle of quantize_row_q3_K_ref: the scale of largest magnitude sets d = -max/32 and each
    /// sub-block scale becomes a 6-bit integer (biased by 32) in the 12 scale bytes at offset 96.
    /// </summary>
    private static void PackScales(ReadOnlySpan<float> scales, Span<byte> block)
    {
        float maxScale = 0;
        float amax = 0;
        for (int j = 0; j < 16; ++j)
        {
            float scale = MathF.Abs(scales[j]);
            if (scale > amax)
            {
                amax = scale;
                maxScale = scales[j];
            }
        }
        var packed = block.Slice(96, 12);
        packed.Clear();
        if (maxScale != 0)
        {
            float iscale = -32f / maxScale;
            for (int j = 0; j < 16; ++j)
            {
                sbyte l = (sbyte)NearestInt(iscale * scales[j]); // C: int8_t l = nearest_int(...)
                l = (sbyte)(Math.Max(-32, Math.Min(31, (int)l)) + 32);
                if (j < 8) packed[j] = (byte)(l & 0xF);
                else packed[j - 8] |= (byte)((l & 0xF) << 4);
                l >>= 4;
                packed[j % 4 + 8] |= (byte)(l << (2 * (j / 4)));
            }
            WriteHalf(block, 108, 1 / iscale);
        }
        else
        {
            WriteHalf(block, 108, 0f);
        }
    }

    /// <summary>The signed 6-bit scale of sub-block j (the sc expression of quantize_row_q3_K_ref).</summary>
    private static int Scale(ReadOnlySpan<byte> packed, int j)
    {
        int sc = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4;
        return (sc | (((packed[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
    }

    /// <summary>dequantize_row_q3_K: value = (d*(scale-32))*(q - 4), 16 values per scale.</summary>
    public static unsafe void Dequantize(ReadOnlySpan<byte> x, Span<float> y)
    {
        int nb = x.Length / BlockBytes;
        if (y.Length < nb * QK_K) throw new ArgumentException("destination too short", nameof(y));
        Span<sbyte> scales = stackalloc sbyte[16];
        fixed (byte* xp = x)
        fixed (float* yp = y)
        {
            for (int i = 0; i < nb; i++)
            {
                byte* b = xp + (long)i * BlockBytes;
                float* yb = yp + (long)i * QK_K;
                var block = new ReadOnlySpan<byte>(b, BlockBytes);
                float dAll = ReadHalf(block, 108);
                UnpackScales(block.Slice(96, 12), scales);
                byte* q = b + 32;
                byte* hm = b;
                int @is = 0;
                byte m = 1;
                for (int n = 0; n < QK_K; n += 128, q += 32)
                {
                    for (int shift = 0; shift < 8; shift += 2, @is += 2, m <<= 1)
                    {
                        float dl0 = dAll * (scales[@is] - 32);
                        float dl1 = dAll * (scales[@is + 1] - 32);
                        float* yo = yb + n + 16 * shift;
                        if (Vector256.IsHardwareAccelerated)
                        {
                            // q | 4 when the hmask bit is set, so (q | 4*bit) - 4 = q - (bit ? 0 : 4), exact in float.
                            var low = Vector256.ShiftRightLogical(Vector256.Load(q), shift) & Vector256.Create((byte)3);
                            var high = ~Vector256.Equals(Vector256.Load(hm) & Vector256.Create(m), Vector256<byte>.Zero) & Vector256.Create((byte)4);
                            KQuantSimd.WidenToSingle(low | high, out var f0, out var f1, out var f2, out var f3);
                            var four = Vector256.Create(4f);
                            Vector256.Store(Vector256.Create(dl0) * (f0 - four), yo);
                            Vector256.Store(Vector256.Create(dl0) * (f1 - four), yo + 8);
                            Vector256.Store(Vector256.Create(dl1) * (f2 - four), yo + 16);
                            Vector256.Store(Vector256.Create(dl1) * (f3 - four), yo + 24);
                        }
                        else
                        {
                            for (int l = 0; l < 16; ++l) yo[l] = dl0 * (((q[l] >> shift) & 3) - ((hm[l] & m) != 0 ? 0 : 4));
                            for (int l = 0; l < 16; ++l) yo[16 + l] = dl1 * (((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) != 0 ? 0 : 4));
                        }
                    }
                }
            }
        }
    }

    // The aux[] shuffle of dequantize_row_q3_K: 16 scales (biased by 32) from the 12 packed bytes.
    private static void UnpackScales(ReadOnlySpan<byte> packed, Span<sbyte> scales)
    {
        const uint kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
        uint a0 = BinaryPrimitives.ReadUInt32LittleEndian(packed);
        uint a1 = BinaryPrimitives.ReadUInt32LittleEndian(packed[4..]);
        uint tmp = BinaryPrimitives.ReadUInt32LittleEndian(packed[8..]);
        uint aux0 = (a0 & kmask2) | (((tmp >> 0) & kmask1) << 4);
        uint aux1 = (a1 & kmask2) | (((tmp >> 2) & kmask1) << 4);
        uint aux2 = ((a0 >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
        uint aux3 = ((a1 >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
        for (int b = 0; b < 4; ++b)
        {
            scales[b] = (sbyte)(aux0 >> (8 * b));
            scales[4 + b] = (sbyte)(aux1 >> (8 * b));
            scales[8 + b] = (sbyte)(aux2 >> (8 * b));
            scales[12 + b] = (sbyte)(aux3 >> (8 * b));
        }
    }
}
