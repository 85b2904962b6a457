using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using EdgeTune.Core.Numerics;

namespace EdgeTune.Core.Quantization;

/// <summary>
/// Scalar helpers shared by the K-quant codecs, transliterated from llama.cpp's ggml/src/ggml-quants.c
/// (commit c0c7e147): nearest_int, make_qx_quants, make_q3_quants, make_qkx2_quants and get_scale_min_k4.
/// </summary>
/// <remarks>
/// Byte-exactness with ggml rests on doing every operation as C does it: in float (never double), in the
/// same left-to-right order, without fused multiply-add (RyuJIT never contracts a*b+c by itself), with
/// integer operands converted to float at the same points. Comments name the C line where that is subtle.
/// </remarks>
internal static class KQuantMath
{
    /// <summary>Values per super-block (QK_K).</summary>
    public const int QK_K = 256;

    /// <summary>ggml's GROUP_MAX_EPS: a group whose largest magnitude is below this counts as all zero.</summary>
    public const float GroupMaxEps = 1e-15f;

    /// <summary>
    /// ggml's nearest_int: adding 1.5*2^23 makes the FPU round to an integer (half to even) into the low
    /// mantissa bits. Only meaningful for |fval| &lt;= 4194303; ggml asserts that in debug builds only, so
    /// out-of-range inputs give the same garbage here as in a release build of ggml.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int NearestInt(float fval)
    {
        float val = fval + 12582912f;
        return (BitConverter.SingleToInt32Bits(val) & 0x007fffff) - 0x00400000;
    }

    /// <summary>
    /// make_qx_quants: symmetric quants in [-nmax, nmax-1] (stored biased by nmax in <paramref name="L"/>),
    /// scale searched over 19 candidate inverse scales. <paramref name="qw"/> empty stands for C's NULL.
    /// </summary>
    public static float MakeQxQuants(int n, int nmax, ReadOnlySpan<float> x, Span<sbyte> L, int rmseType, ReadOnlySpan<float> qw)
    {
        float max = 0;
        float amax = 0;
        for (int i = 0; i < n; ++i)
        {
            float ax = MathF.Abs(x[i]);
            if (ax > amax) { amax = ax; max = x[i]; }
        }
        if (amax < GroupMaxEps)
        {
            L[..n].Clear(); // all zero: quants 0, not nmax
            return 0f;
        }
        float iscale = -nmax / max;
        if (rmseType == 0)
        {
            for (int i = 0; i < n; ++i)
            {
                int l = NearestInt(iscale * x[i]);
                L[i] = (sbyte)(nmax + Math.Max(-nmax, Math.Min(nmax - 1, l)));
            }
            return 1 / iscale;
        }
        bool returnEarly = false;
        if (rmseType < 0)
        {
            rmseType = -rmseType;
            returnEarly = true;
        }
        float sumlx = 0;
        float suml2 = 0;
        for (int i = 0; i < n; ++i)
        {
            int l = NearestInt(iscale * x[i]);
            l = Math.Max(-nmax, Math.Min(nmax - 1, l));
            L[i] = (sbyte)(l + nmax);
            float w = QxWeight(x[i], i, rmseType, qw);
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        float scale = suml2 != 0 ? sumlx / suml2 : 0.0f; // C: suml2 ? ... (NaN counts as true)
        if (returnEarly) return suml2 > 0 ? 0.5f * (scale + 1 / iscale) : 1 / iscale;
        float best = scale * sumlx;
        for (int @is = -9; @is <= 9; ++@is)
        {
            if (@is == 0) continue;
            iscale = -(nmax + 0.1f * @is) / max;
            sumlx = suml2 = 0;
            for (int i = 0; i < n; ++i)
            {
                int l = NearestInt(iscale * x[i]);
                l = Math.Max(-nmax, Math.Min(nmax - 1, l));
                float w = QxWeight(x[i], i, rmseType, qw);
                sumlx += w * x[i] * l;
                suml2 += w * l * l;
            }
            if (suml2 > 0 && sumlx * sumlx > best * suml2)
            {
                for (int i = 0; i < n; ++i)
                {
                    int l = NearestInt(iscale * x[i]);
                    L[i] = (sbyte)(nmax + Math.Max(-nmax, Math.Min(nmax - 1, l)));
                }
                scale = sumlx / suml2;
                best = scale * sumlx;
            }
        }
        return scale;
    }

    // C: qw ? qw[i] : rmse_type == 1 ? x*x : rmse_type == 2 ? 1 : rmse_type == 3 ? fabsf(x) : sqrtf(fabsf(x))
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float QxWeight(float x, int i, int rmseType, ReadOnlySpan<float> qw) =>
        !qw.IsEmpty ? qw[i]
        : rmseType == 1 ? x * x
        : rmseType == 2 ? 1
        : rmseType == 3 ? MathF.Abs(x)
        : MathF.Sqrt(MathF.Abs(x));

    /// <summary>
    /// make_q3_quants: symmetric quants in [-nmax, nmax-1] (stored biased by nmax), refined with up to five
    /// passes of coordinate descent on the x^2-weighted error when <paramref name="doRmse"/>.
    /// </summary>
    public static float MakeQ3Quants(int n, int nmax, ReadOnlySpan<float> x, Span<sbyte> L, bool doRmse)
    {
        float max = 0;
        float amax = 0;
        for (int i = 0; i < n; ++i)
        {
            float ax = MathF.Abs(x[i]);
            if (ax > amax) { amax = ax; max = x[i]; }
        }
        if (amax < GroupMaxEps)
        {
            L[..n].Clear();
            return 0f;
        }
        float iscale = -nmax / max;
        if (doRmse)
        {
            float sumlx = 0;
            float suml2 = 0;
            for (int i = 0; i < n; ++i)
            {
                int l = NearestInt(iscale * x[i]);
                l = Math.Max(-nmax, Math.Min(nmax - 1, l));
                L[i] = (sbyte)l;
                float w = x[i] * x[i];
                sumlx += w * x[i] * l;
                suml2 += w * l * l;
            }
            for (int itry = 0; itry < 5; ++itry)
            {
                int nChanged = 0;
                for (int i = 0; i < n; ++i)
                {
                    float w = x[i] * x[i];
                    float slx = sumlx - w * x[i] * L[i];
                    if (slx > 0)
                    {
                        float sl2 = suml2 - w * L[i] * L[i];
                        int newL = NearestInt(x[i] * sl2 / slx);
                        newL = Math.Max(-nmax, Math.Min(nmax - 1, newL));
                        if (newL != L[i])
                        {
                            slx += w * x[i] * newL;
                            sl2 += w * newL * newL;
                            if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2)
                            {
                                L[i] = (sbyte)newL;
                                sumlx = slx;
                                suml2 = sl2;
                                ++nChanged;
                            }
                        }
                    }
                }
                if (nChanged == 0) break;
            }
            for (int i = 0; i < n; ++i) L[i] += (sbyte)nmax;
            return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
        }
        for (int i = 0; i < n; ++i)
        {
            int l = NearestInt(iscale * x[i]);
            l = Math.Max(-nmax, Math.Min(nmax - 1, l));
            L[i] = (sbyte)(l + nmax);
        }
        return 1 / iscale;
    }

    /// <summary>
    /// make_qkx2_quants: asymmetric quants in [0, nmax] with x ≈ scale*L - theMin, minimising the weighted
    /// squared (or absolute, <paramref name="useMad"/>) error over nstep+1 candidate scales.
    /// </summary>
    public static float MakeQkx2Quants(int n, int nmax, ReadOnlySpan<float> x, ReadOnlySpan<float> weights,
        Span<byte> L, out float theMin, Span<byte> Laux, float rmin, float rdelta, int nstep, bool useMad)
    {
        float min = x[0];
        float max = x[0];
        float sumW = weights[0];
        float sumX = sumW * x[0];
        for (int i = 1; i < n; ++i)
        {
            if (x[i] < min) min = x[i];
            if (x[i] > max) max = x[i];
            float w = weights[i];
            sumW += w;
            sumX += w * x[i];
        }
        if (min > 0) min = 0;
        if (max == min)
        {
            L[..n].Clear();
            theMin = -min;
            return 0f;
        }
        float iscale = nmax / (max - min);
        float scale = 1 / iscale;
        float bestError = 0;
        for (int i = 0; i < n; ++i)
        {
            int l = NearestInt(iscale * (x[i] - min));
            L[i] = (byte)Math.Max(0, Math.Min(nmax, l));
            float diff = scale * L[i] + min - x[i];
            diff = useMad ? MathF.Abs(diff) : diff * diff;
            float w = weights[i];
            bestError += w * diff;
        }
        if (nstep < 1)
        {
            theMin = -min;
            return scale;
        }
        for (int @is = 0; @is <= nstep; ++@is)
        {
            iscale = (rmin + rdelta * @is + nmax) / (max - min); // min may have moved: C reads it each pass
            float sumL = 0, sumL2 = 0, sumXL = 0;
            for (int i = 0; i < n; ++i)
            {
                int l = NearestInt(iscale * (x[i] - min));
                l = Math.Max(0, Math.Min(nmax, l));
                Laux[i] = (byte)l;
                float w = weights[i];
                sumL += w * l;
                sumL2 += w * l * l;
                sumXL += w * l * x[i];
            }
            float D = sumW * sumL2 - sumL * sumL;
            if (D > 0)
            {
                float thisScale = (sumW * sumXL - sumX * sumL) / D;
                float thisMin = (sumL2 * sumX - sumL * sumXL) / D;
                if (thisMin > 0)
                {
                    thisMin = 0;
                    thisScale = sumXL / sumL2;
                }
                float curError = 0;
                for (int i = 0; i < n; ++i)
                {
                    float diff = thisScale * Laux[i] + thisMin - x[i];
                    diff = useMad ? MathF.Abs(diff) : diff * diff;
                    float w = weights[i];
                    curError += w * diff;
                }
                if (curError < bestError)
                {
                    Laux[..n].CopyTo(L);
                    bestError = curError;
                    scale = thisScale;
                    min = thisMin;
                }
            }
        }
        theMin = -min;
        return scale;
    }

    /// <summary>get_scale_min_k4: the 6-bit scale and min of sub-block <paramref name="j"/> from the 12 packed bytes of Q4_K/Q5_K.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void GetScaleMinK4(int j, ReadOnlySpan<byte> q, out byte d, out byte m)
    {
        if (j < 4)
        {
            d = (byte)(q[j] & 63);
            m = (byte)(q[j + 4] & 63);
        }
        else
        {
            d = (byte)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
            m = (byte)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
        }
    }

    /// <summary>
    /// Packs eight 6-bit scales and mins into the 12 bytes that <see cref="GetScaleMinK4"/> reads
    /// (the inner loop of quantize_row_q4_K_ref / q5_K_ref). Call for j = 0..7 in order: sub-blocks 0-3
    /// assign the bytes that 4-7 later OR their top bits into.
    /// </summary>
    public static void PackScaleMinK4(int j, byte ls, byte lm, Span<byte> q)
    {
        if (j < 4)
        {
            q[j] = ls;
            q[j + 4] = lm;
        }
        else
        {
            q[j + 4] = (byte)((ls & 0xF) | ((lm & 0xF) << 4));
            q[j - 4] |= (byte)((ls >> 4) << 6);
            q[j - 0] |= (byte)((lm >> 4) << 6);
        }
    }

    /// <summary>Reads an fp16 field of a block as float (GGML_FP16_TO_FP32).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ReadHalf(ReadOnlySpan<byte> block, int offset) =>
        Fp16.ToFloat(BinaryPrimitives.ReadUInt16LittleEndian(block[offset..]));

    /// <summary>Writes GGML_FP32_TO_FP16(value) into a block (round to nearest even).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void WriteHalf(Span<byte> block, int offset, float value) =>
        BinaryPrimitives.WriteUInt16LittleEndian(block[offset..], Fp16.FromFloat(value));

    /// <summary>Number of super-blocks; throws unless x is whole super-blocks and y holds them.</summary>
    public static int BlockCount(int values, int bytes, int blockBytes)
    {
        if (values % QK_K != 0)
            throw new ArgumentException($"{values} values are not whole super-blocks of {QK_K}");
        int nb = values / QK_K;
        if (bytes < (long)nb * blockBytes)
            throw new ArgumentException($"{bytes} bytes cannot hold {nb} blocks of {blockBytes} bytes");
        return nb;
    }
}
