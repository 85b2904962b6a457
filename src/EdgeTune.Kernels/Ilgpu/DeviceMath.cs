using ILGPU;

namespace EdgeTune.Kernels.Ilgpu;

/// <summary>
/// exp, log, sin and cos for kernels, in plain float arithmetic (Cephes' single-precision algorithms: Cody–Waite
/// range reduction, then minimax polynomials; errors of a few ulp). ILGPU's PTX backend has no exp/log without
/// ILGPU.Algorithms, and its sin/cos map to PTX's sin.approx/cos.approx, whose error is only bounded for
/// |x| ≤ 100π, less than RoPE's angles (t·invFreq reaches the sequence length). These run identically on the CPU
/// accelerator and on CUDA (barring FMA contraction), and are tested against Math in float64.
/// </summary>
internal static class DeviceMath
{
    private const float Log2E = 1.44269504088896341f;
    private const float Ln2Hi = 0.693359375f, Ln2Lo = -2.12194440e-4f;

    /// <summary>eˣ; 0 below −87.34 (results that would be subnormal, and −∞), +∞ above 88.72.</summary>
    public static float Exp(float x)
    {
        if (x > 88.72283f) return float.PositiveInfinity;
        if (x < -87.33654f) return 0f;
        if ((Interop.FloatAsInt(x) & 0x7FFFFFFFu) > 0x7F800000u) return x; // NaN
        // x = k·ln 2 + r, |r| ≤ ln 2 / 2
        float t = x * Log2E;
        int k = (int)(t + (t >= 0f ? 0.5f : -0.5f));
        float fk = k;
        float r = x - fk * Ln2Hi;
        r -= fk * Ln2Lo;
        float p = 1.9875691500E-4f;
        p = p * r + 1.3981999507E-3f;
        p = p * r + 8.3334519073E-3f;
        p = p * r + 4.1665795894E-2f;
        p = p * r + 1.6666665459E-1f;
        p = p * r + 5.0000001201E-1f;
        float y = p * (r * r) + r + 1f;
        // y·2ᵏ in two steps so that k = 128 (x near the top) does not overflow the exponent field.
        int k1 = k / 2, k2 = k - k1;
        return y * Pow2(k1) * Pow2(k2);
    }

    /// <summary>ln x; −∞ at 0, NaN below 0, +∞ at +∞.</summary>
    public static float Log(float x)
    {
        if (!(x > 0f)) return x == 0f ? float.NegativeInfinity : float.NaN;
        if (x == float.PositiveInfinity) return x;
        int e = 0;
        if (x < 1.17549435e-38f)
        {
            x *= 8388608f; // 2²³: subnormals to normals
            e = -23;
        }
        uint bits = (uint)Interop.FloatAsInt(x);
        e += (int)((bits >> 23) & 255) - 127;
        float m = Interop.IntAsFloat((bits & 0x7FFFFFu) | 0x3F800000u); // [1, 2)
        if (m > 1.41421356f)
        {
            m *= 0.5f;
            e += 1;
        }
        float f = m - 1f, z = f * f, fe = e;
        float y = 7.0376836292E-2f;
        y = y * f - 1.1514610310E-1f;
        y = y * f + 1.1676998740E-1f;
        y = y * f - 1.2420140846E-1f;
        y = y * f + 1.4249322787E-1f;
        y = y * f - 1.6668057665E-1f;
        y = y * f + 2.0000714765E-1f;
        y = y * f - 2.4999993993E-1f;
        y = y * f + 3.3333331174E-1f;
        y = y * f * z;
        y += Ln2Lo * fe;
        y += -0.5f * z;
        return f + y + Ln2Hi * fe;
    }

    /// <summary>sin x and cos x; accurate to a few ulp for |x| up to about 10⁵ (RoPE's range), finite x only.</summary>
    public static void SinCos(float x, out float sin, out float cos)
    {
        // x = j·π/2 + y, |y| ≤ π/4, with π/2 in three parts (the first two exact in their products with j).
        float t = x * 0.636619772367581343f;
        int j = (int)(t + (t >= 0f ? 0.5f : -0.5f));
        float fj = j;
        float y = x - fj * 1.5703125f;
        y -= fj * 4.837512969970703125e-4f;
        y -= fj * 7.54978995489188216e-8f;
        float z = y * y;
        float s = ((-1.9515295891E-4f * z + 8.3321608736E-3f) * z - 1.6666654611E-1f) * z * y + y;
        float c = ((2.443315711809948E-5f * z - 1.388731625493765E-3f) * z + 4.166664568298827E-2f) * z * z - 0.5f * z + 1f;
        switch (j & 3)
        {
            case 0: sin = s; cos = c; break;
            case 1: sin = c; cos = -s; break;
            case 2: sin = -s; cos = -c; break;
            default: sin = -c; cos = s; break;
        }
    }

    /// <summary>2ⁿ for n in [−126, 127].</summary>
    private static float Pow2(int n) => Interop.IntAsFloat((uint)(n + 127) << 23);
}
