using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace EdgeTune.Core.Quantization;

/// <summary>
/// Vectorised forms of the K-quant search helpers in <see cref="KQuantMath"/> that stay bit-exact, plus the
/// small vector helpers the codecs share.
/// </summary>
/// <remarks>
/// The searches sum over the values of one group in order, so vectorising along a group would reorder
/// float additions and change results. Instead each of the 16 lanes of a <see cref="Vector512{T}"/> runs one
/// whole group (sub-block): lane g performs exactly the scalar sequence of operations for group g, and the
/// data-dependent branches of the C code become per-lane masks. The input is therefore transposed: row i of
/// a buffer holds element i of each of the 16 groups (<c>x[i*16 + g]</c>). Vector add, multiply, divide,
/// sqrt, abs and compares are IEEE-exact per lane and no fused multiply-add is used, so lane g equals the
/// scalar helper bit for bit (including the NaN and signed-zero behaviour of the comparisons).
/// Q2_K, Q3_K and Q6_K have 16 sub-blocks per super-block; Q4_K and Q5_K search two super-blocks at once.
/// Without AVX-512 .NET runs each Vector512 operation as two 256-bit ones, which measured as fast as a
/// hand-written pair of Vector256 (16 independent lanes also halve the serial add-chain latency).
/// </remarks>
internal static unsafe class KQuantSimd
{
    /// <summary>True when 256-bit vectors run in hardware; otherwise the codecs use their scalar reference.</summary>
    public static bool IsSupported => Vector256.IsHardwareAccelerated;

    /// <summary>Groups searched at once: the lanes of a Vector512 of floats.</summary>
    private const int Lanes = 16;

    /// <summary>nearest_int per lane, 8 lanes (same magic-number trick, same out-of-range garbage).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> NearestInt(Vector256<float> v) =>
        ((v + Vector256.Create(12582912f)).AsInt32() & Vector256.Create(0x007fffff)) - Vector256.Create(0x00400000);

    /// <summary>Converts 32 unsigned bytes to floats: <paramref name="f0"/> holds bytes 0-7, <paramref name="f1"/> 8-15, and so on.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void WidenToSingle(Vector256<byte> q, out Vector256<float> f0, out Vector256<float> f1, out Vector256<float> f2, out Vector256<float> f3)
    {
        var (lo, hi) = Vector256.Widen(q);
        var (a, b) = Vector256.Widen(lo);
        var (c, d) = Vector256.Widen(hi);
        f0 = Vector256.ConvertToSingle(a.AsInt32());
        f1 = Vector256.ConvertToSingle(b.AsInt32());
        f2 = Vector256.ConvertToSingle(c.AsInt32());
        f3 = Vector256.ConvertToSingle(d.AsInt32());
    }

    /// <summary>Packs 32 ints in [0, 255] (four vectors, in order) into 32 bytes at <paramref name="dst"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void NarrowToBytes(Vector256<int> a, Vector256<int> b, Vector256<int> c, Vector256<int> d, byte* dst) =>
        Vector256.Store(Vector256.Narrow(Vector256.Narrow(a.AsUInt32(), b.AsUInt32()), Vector256.Narrow(c.AsUInt32(), d.AsUInt32())), dst);

    /// <summary>y[0..32) = d*q - m for 32 small unsigned quants (the dequantise step of Q2_K, Q4_K and Q5_K).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreAffine32(Vector256<byte> q, float d, float m, float* y)
    {
        WidenToSingle(q, out var f0, out var f1, out var f2, out var f3);
        var dv = Vector256.Create(d);
        var mv = Vector256.Create(m);
        Vector256.Store(dv * f0 - mv, y);
        Vector256.Store(dv * f1 - mv, y + 8);
        Vector256.Store(dv * f2 - mv, y + 16);
        Vector256.Store(dv * f3 - mv, y + 24);
    }

    /// <summary>
    /// Packs 256 quants (ints, low two bits used) as Q2_K/Q3_K qs: per 128 values, byte l holds values
    /// l, l+32, l+64 and l+96 in bits 0-1, 2-3, 4-5 and 6-7.
    /// </summary>
    public static void Pack2Bit(int* L, byte* qs)
    {
        var three = Vector256.Create(3);
        for (int c = 0; c < 2; ++c)
        {
            int* Lc = L + 128 * c;
            var v0 = Pack4(Lc, three);
            var v1 = Pack4(Lc + 8, three);
            var v2 = Pack4(Lc + 16, three);
            var v3 = Pack4(Lc + 24, three);
            NarrowToBytes(v0, v1, v2, v3, qs + 32 * c);
        }

        static Vector256<int> Pack4(int* l, Vector256<int> mask) =>
            (Vector256.Load(l) & mask) | ((Vector256.Load(l + 32) & mask) << 2)
            | ((Vector256.Load(l + 64) & mask) << 4) | ((Vector256.Load(l + 96) & mask) << 6);
    }

    /// <summary>
    /// Transposes <paramref name="groups"/> consecutive groups of <paramref name="n"/> values into the
    /// 16-lane row layout of the searches: <c>dst[i*16 + g] = src[g*n + i]</c>.
    /// </summary>
    public static void Transpose(float* src, float* dst, int groups, int n)
    {
        for (int g = 0; g < groups; g++)
        {
            float* s = src + g * n;
            float* d = dst + g;
            for (int i = 0; i < n; i++) d[i * Lanes] = s[i];
        }
    }

    /// <summary>
    /// The make_qkx2_quants searches of quantize_row_q4_K_ref / q5_K_ref for two super-blocks at once
    /// (<paramref name="b"/> may be all zeros when there is no second block): lanes 0-7 are the sub-blocks
    /// of <paramref name="a"/>, lanes 8-15 those of <paramref name="b"/>. Weights are av_x + |x| with
    /// av_x = sqrtf(sum_x2/32) of the sub-block, summed in C's order.
    /// </summary>
    public static void SearchQkx2Pair(float* a, float* b, int nmax, float rmin, float rdelta, int nstep,
        float* xt, float* wt, float* lt, float* laux, float* scales, float* mins)
    {
        Transpose(a, xt, 8, 32);
        Transpose(b, xt + 8, 8, 32);
        var sumX2 = Vector512<float>.Zero;
        for (int l = 0; l < 32; ++l)
        {
            var v = Vector512.Load(xt + l * Lanes);
            sumX2 += v * v;
        }
        var avX = Vector512.Sqrt(sumX2 / Vector512.Create(32f));
        for (int l = 0; l < 32; ++l)
            Vector512.Store(avX + Vector512.Abs(Vector512.Load(xt + l * Lanes)), wt + l * Lanes);
        MakeQkx2Quants(xt, wt, 32, nmax, rmin, rdelta, nstep, false, lt, laux, out var sv, out var mv);
        sv.Store(scales);
        mv.Store(mins);
    }

    /// <summary>nearest_int per lane, 16 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> NearestInt(Vector512<float> v) =>
        ((v + Vector512.Create(12582912f)).AsInt32() & Vector512.Create(0x007fffff)) - Vector512.Create(0x00400000);

    /// <summary>True when no lane of a compare mask is set.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool None(Vector512<float> mask) => Vector512.ExtractMostSignificantBits(mask) == 0;

    /// <summary>Flips the sign bit (C's unary minus; unlike 0 - v this keeps -0 and +0 apart).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Negate(Vector512<float> v) => v ^ Vector512.Create(-0.0f);

    /// <summary>C's MAX(lo, MIN(hi, l)) on ints, then converted to float (exact for these small ints).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> ClampToFloat(Vector512<int> l, Vector512<int> lo, Vector512<int> hi) =>
        Vector512.ConvertToSingle(Vector512.Max(lo, Vector512.Min(hi, l)));

    /// <summary>
    /// make_qkx2_quants for 16 groups at once. <paramref name="x"/>, <paramref name="w"/>, <paramref name="L"/>
    /// and <paramref name="laux"/> are n rows of 16 lanes.
    /// <paramref name="L"/> receives the chosen quants as floats.
    /// </summary>
    public static void MakeQkx2Quants(float* x, float* w, int n, int nmax, float rmin, float rdelta, int nstep,
        bool useMad, float* L, float* laux, out Vector512<float> scaleOut, out Vector512<float> theMinOut)
    {
        var zero = Vector512<float>.Zero;
        var min = Vector512.Load(x);
        var max = min;
        var sumW = Vector512.Load(w);
        var sumX = sumW * min;
        for (int i = 1; i < n; ++i)
        {
            var xi = Vector512.Load(x + i * Lanes);
            min = Vector512.ConditionalSelect(Vector512.LessThan(xi, min), xi, min);
            max = Vector512.ConditionalSelect(Vector512.GreaterThan(xi, max), xi, max);
            var wi = Vector512.Load(w + i * Lanes);
            sumW += wi;
            sumX += wi * xi;
        }
        min = Vector512.ConditionalSelect(Vector512.GreaterThan(min, zero), zero, min);
        // Lanes where C returns early (max == min): all quants 0, scale 0, the_min = -min.
        var degenerate = Vector512.Equals(max, min);
        var firstMin = min;

        var lo = Vector512<int>.Zero;
        var hi = Vector512.Create(nmax);
        var iscale = Vector512.Create((float)nmax) / (max - min);
        var scale = Vector512<float>.One / iscale;
        var bestError = zero;
        for (int i = 0; i < n; ++i)
        {
            var xi = Vector512.Load(x + i * Lanes);
            var l = ClampToFloat(NearestInt(iscale * (xi - min)), lo, hi);
            Vector512.Store(l, L + i * Lanes);
            var diff = scale * l + min - xi;
            diff = useMad ? Vector512.Abs(diff) : diff * diff;
            bestError += Vector512.Load(w + i * Lanes) * diff;
        }

        for (int @is = 0; @is <= nstep; ++@is)
        {
            iscale = Vector512.Create(rmin + rdelta * @is + nmax) / (max - min);
            var sumL = zero;
            var sumL2 = zero;
            var sumXL = zero;
            for (int i = 0; i < n; ++i)
            {
                var xi = Vector512.Load(x + i * Lanes);
                var l = ClampToFloat(NearestInt(iscale * (xi - min)), lo, hi);
                Vector512.Store(l, laux + i * Lanes);
                var wl = Vector512.Load(w + i * Lanes) * l;   // C: w*l, then *l and *x[i]
                sumL += wl;
                sumL2 += wl * l;
                sumXL += wl * xi;
            }
            var D = sumW * sumL2 - sumL * sumL;
            var dPositive = Vector512.GreaterThan(D, zero);
            if (None(dPositive)) continue;
            var thisScale = (sumW * sumXL - sumX * sumL) / D;
            var thisMin = (sumL2 * sumX - sumL * sumXL) / D;
            var minPositive = Vector512.GreaterThan(thisMin, zero);
            thisMin = Vector512.ConditionalSelect(minPositive, zero, thisMin);
            thisScale = Vector512.ConditionalSelect(minPositive, sumXL / sumL2, thisScale);
            var curError = zero;
            for (int i = 0; i < n; ++i)
            {
                var diff = thisScale * Vector512.Load(laux + i * Lanes) + thisMin - Vector512.Load(x + i * Lanes);
                diff = useMad ? Vector512.Abs(diff) : diff * diff;
                curError += Vector512.Load(w + i * Lanes) * diff;
            }
            var better = dPositive & Vector512.LessThan(curError, bestError);
            if (None(better)) continue;
            for (int i = 0; i < n; ++i)
                Vector512.Store(Vector512.ConditionalSelect(better, Vector512.Load(laux + i * Lanes), Vector512.Load(L + i * Lanes)), L + i * Lanes);
            bestError = Vector512.ConditionalSelect(better, curError, bestError);
            scale = Vector512.ConditionalSelect(better, thisScale, scale);
            min = Vector512.ConditionalSelect(better, thisMin, min);
        }

        if (!None(degenerate))
        {
            for (int i = 0; i < n; ++i)
                Vector512.Store(Vector512.ConditionalSelect(degenerate, zero, Vector512.Load(L + i * Lanes)), L + i * Lanes);
        }
        scaleOut = Vector512.ConditionalSelect(degenerate, zero, scale);
        theMinOut = Negate(Vector512.ConditionalSelect(degenerate, firstMin, min));
    }

    /// <summary>
    /// make_qx_quants(n, nmax, x, L, rmse_type = 1, qw = NULL) for 16 groups at once (the only form the K-quant
    /// reference quantisers use). <paramref name="w"/> and <paramref name="wx"/> must hold x*x and (x*x)*x per
    /// element (C's w and w*x[i]). <paramref name="L"/> receives the quants already biased by nmax, as floats.
    /// </summary>
    public static Vector512<float> MakeQxQuantsRmse1(float* x, float* w, float* wx, int n, int nmax, float* L, float* laux)
    {
        var zero = Vector512<float>.Zero;
        var max = zero;
        var amax = zero;
        for (int i = 0; i < n; ++i)
        {
            var xi = Vector512.Load(x + i * Lanes);
            var ax = Vector512.Abs(xi);
            var gt = Vector512.GreaterThan(ax, amax);
            amax = Vector512.ConditionalSelect(gt, ax, amax);
            max = Vector512.ConditionalSelect(gt, xi, max);
        }
        var allZero = Vector512.LessThan(amax, Vector512.Create(KQuantMath.GroupMaxEps));

        var lo = Vector512.Create(-nmax);
        var hi = Vector512.Create(nmax - 1);
        var iscale = Vector512.Create((float)-nmax) / max;
        var sumlx = zero;
        var suml2 = zero;
        for (int i = 0; i < n; ++i)
        {
            var l = ClampToFloat(NearestInt(iscale * Vector512.Load(x + i * Lanes)), lo, hi);
            Vector512.Store(l, L + i * Lanes);
            sumlx += Vector512.Load(wx + i * Lanes) * l;
            suml2 += Vector512.Load(w + i * Lanes) * l * l;
        }
        // C: suml2 ? sumlx/suml2 : 0 -- NaN counts as non-zero, hence "not equal" rather than "greater".
        var scale = Vector512.ConditionalSelect(~Vector512.Equals(suml2, zero), sumlx / suml2, zero);
        var best = scale * sumlx;
        for (int @is = -9; @is <= 9; ++@is)
        {
            if (@is == 0) continue;
            iscale = Vector512.Create(-(nmax + 0.1f * @is)) / max;
            sumlx = zero;
            suml2 = zero;
            for (int i = 0; i < n; ++i)
            {
                var l = ClampToFloat(NearestInt(iscale * Vector512.Load(x + i * Lanes)), lo, hi);
                Vector512.Store(l, laux + i * Lanes);
                sumlx += Vector512.Load(wx + i * Lanes) * l;
                suml2 += Vector512.Load(w + i * Lanes) * l * l;
            }
            var better = Vector512.GreaterThan(suml2, zero) & Vector512.GreaterThan(sumlx * sumlx, best * suml2);
            if (None(better)) continue;
            for (int i = 0; i < n; ++i)
                Vector512.Store(Vector512.ConditionalSelect(better, Vector512.Load(laux + i * Lanes), Vector512.Load(L + i * Lanes)), L + i * Lanes);
            scale = Vector512.ConditionalSelect(better, sumlx / suml2, scale);
            best = Vector512.ConditionalSelect(better, scale * sumlx, best);
        }

        // Bias by nmax; all-zero groups keep quants 0 (not nmax) as in C.
        var bias = Vector512.Create((float)nmax);
        for (int i = 0; i < n; ++i)
            Vector512.Store(Vector512.ConditionalSelect(allZero, zero, Vector512.Load(L + i * Lanes) + bias), L + i * Lanes);
        return Vector512.ConditionalSelect(allZero, zero, scale);
    }

    /// <summary>
    /// make_q3_quants(n, nmax, x, L, do_rmse = true) for 16 groups at once. <paramref name="w"/> and
    /// <paramref name="wx"/> hold x*x and (x*x)*x. <paramref name="L"/> receives quants biased by nmax, as floats.
    /// </summary>
    public static Vector512<float> MakeQ3QuantsRmse(float* x, float* w, float* wx, int n, int nmax, float* L)
    {
        var zero = Vector512<float>.Zero;
        var max = zero;
        var amax = zero;
        for (int i = 0; i < n; ++i)
        {
            var xi = Vector512.Load(x + i * Lanes);
            var ax = Vector512.Abs(xi);
            var gt = Vector512.GreaterThan(ax, amax);
            amax = Vector512.ConditionalSelect(gt, ax, amax);
            max = Vector512.ConditionalSelect(gt, xi, max);
        }
        var allZero = Vector512.LessThan(amax, Vector512.Create(KQuantMath.GroupMaxEps));

        var lo = Vector512.Create(-nmax);
        var hi = Vector512.Create(nmax - 1);
        var iscale = Vector512.Create((float)-nmax) / max;
        var sumlx = zero;
        var suml2 = zero;
        for (int i = 0; i < n; ++i)
        {
            var l = ClampToFloat(NearestInt(iscale * Vector512.Load(x + i * Lanes)), lo, hi);
            Vector512.Store(l, L + i * Lanes);
            sumlx += Vector512.Load(wx + i * Lanes) * l;
            suml2 += Vector512.Load(w + i * Lanes) * l * l;
        }

        // Each lane leaves the loop after a pass that changed nothing, as C breaks out; all-zero lanes never run.
        var active = ~allZero;
        for (int itry = 0; itry < 5 && !None(active); ++itry)
        {
            var changed = zero;
            for (int i = 0; i < n; ++i)
            {
                var xi = Vector512.Load(x + i * Lanes);
                var wi = Vector512.Load(w + i * Lanes);
                var wxi = Vector512.Load(wx + i * Lanes);
                var li = Vector512.Load(L + i * Lanes);
                var slx = sumlx - wxi * li;
                var sl2 = suml2 - wi * li * li;
                var newL = ClampToFloat(NearestInt(xi * sl2 / slx), lo, hi);
                var slxNew = slx + wxi * newL;
                var sl2New = sl2 + wi * newL * newL;
                var update = active
                    & Vector512.GreaterThan(slx, zero)
                    & ~Vector512.Equals(newL, li)
                    & Vector512.GreaterThan(sl2New, zero)
                    & Vector512.GreaterThan(slxNew * slxNew * suml2, sumlx * sumlx * sl2New);
                if (None(update)) continue;
                Vector512.Store(Vector512.ConditionalSelect(update, newL, li), L + i * Lanes);
                sumlx = Vector512.ConditionalSelect(update, slxNew, sumlx);
                suml2 = Vector512.ConditionalSelect(update, sl2New, suml2);
                changed |= update;
            }
            active &= changed;
        }

        var bias = Vector512.Create((float)nmax);
        for (int i = 0; i < n; ++i)
            Vector512.Store(Vector512.ConditionalSelect(allZero, zero, Vector512.Load(L + i * Lanes) + bias), L + i * Lanes);
        var scale = Vector512.ConditionalSelect(Vector512.GreaterThan(suml2, zero), sumlx / suml2, zero);
        return Vector512.ConditionalSelect(allZero, zero, scale);
    }
}
