using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Numerics;

namespace EdgeTune.Kernels.Cpu;

/// <summary>
/// The two register-blocked inner kernels every matmul of the CPU backend is made of, single-threaded over one tile
/// of the output; the callers split the output between threads so that each element is written by one thread, in a
/// fixed order (the results do not depend on the thread count).
/// <list type="bullet">
/// <item><b>Dot</b> (y = x·wᵀ, both operands K-contiguous): 4 x-rows × 3 w-rows of Vector&lt;float&gt; accumulators (12 of the
/// 16 AVX2 registers; NEON has 32), reduced once per K-block.</item>
/// <item><b>Axpy</b> (out = coef·src, src rows contiguous): 4 output rows × 2 vectors of columns held in 8 accumulators while
/// the summed index runs, so each output tile is loaded and stored once per call.</item>
/// </list>
/// Edges (fewer than 4 rows, 3 columns, 2 vectors of columns) fall back to TensorPrimitives / scalar loops.
/// Vector&lt;float&gt; rather than Vector256: the same code is 256-bit on x64 and 128-bit NEON on the Jetsons this trains on.
/// </summary>
internal static unsafe class Gemm
{
    /// <summary>K is split into blocks of this many values: a 4+3-row tile (14 KiB) stays in L1 and a 96-row panel block (192 KiB) in L2.</summary>
    public const int DotDepthBlock = 512;

    /// <summary>Lanes of the SIMD vector (8 with AVX2, 4 with NEON or SSE) and the Axpy tile width, two vectors.</summary>
    private static int W => Vector<float>.Count;
    private static int Strip => 2 * Vector<float>.Count;

    /// <summary>
    /// y[i·ldy + j] (= or +=) Σ_{t&lt;depth} x[i·ldx + t]·w[j·ldw + t] for i &lt; rows, j &lt; cols.
    /// </summary>
    public static void Dot(float* x, int ldx, float* w, int ldw, float* y, int ldy, int rows, int cols, int depth, bool overwrite)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && depth >= W)
            for (; i + 4 <= rows; i += 4)
            {
                int j = 0;
                for (; j + 3 <= cols; j += 3)
                    Dot4x3(x + (long)i * ldx, ldx, w + (long)j * ldw, ldw, y + (long)i * ldy + j, ldy, depth, overwrite);
                for (; j < cols; j++)
                    for (int r = 0; r < 4; r++)
                        Store(y + (long)(i + r) * ldy + j, DotScalarRow(x + (long)(i + r) * ldx, w + (long)j * ldw, depth), overwrite);
            }
        for (; i < rows; i++)
            for (int j = 0; j < cols; j++)
                Store(y + (long)i * ldy + j, DotScalarRow(x + (long)i * ldx, w + (long)j * ldw, depth), overwrite);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* at, float value, bool overwrite) => *at = overwrite ? value : *at + value;

    private static float DotScalarRow(float* a, float* b, int depth) =>
        TensorPrimitives.Dot(new ReadOnlySpan<float>(a, depth), new ReadOnlySpan<float>(b, depth));

    private static void Dot4x3(float* x, int ldx, float* w, int ldw, float* y, int ldy, int depth, bool overwrite)
    {
        float* x0 = x, x1 = x + ldx, x2 = x + 2 * ldx, x3 = x + 3 * ldx;
        float* w0 = w, w1 = w + ldw, w2 = w + 2 * ldw;
        Vector<float> a00 = default, a01 = default, a02 = default, a10 = default, a11 = default, a12 = default;
        Vector<float> a20 = default, a21 = default, a22 = default, a30 = default, a31 = default, a32 = default;
        int t = 0;
        for (; t + W <= depth; t += W)
        {
            var v0 = Vector.Load(w0 + t);
            var v1 = Vector.Load(w1 + t);
            var v2 = Vector.Load(w2 + t);
            var u = Vector.Load(x0 + t);
            a00 = Vector.MultiplyAddEstimate(u, v0, a00); a01 = Vector.MultiplyAddEstimate(u, v1, a01); a02 = Vector.MultiplyAddEstimate(u, v2, a02);
            u = Vector.Load(x1 + t);
            a10 = Vector.MultiplyAddEstimate(u, v0, a10); a11 = Vector.MultiplyAddEstimate(u, v1, a11); a12 = Vector.MultiplyAddEstimate(u, v2, a12);
            u = Vector.Load(x2 + t);
            a20 = Vector.MultiplyAddEstimate(u, v0, a20); a21 = Vector.MultiplyAddEstimate(u, v1, a21); a22 = Vector.MultiplyAddEstimate(u, v2, a22);
            u = Vector.Load(x3 + t);
            a30 = Vector.MultiplyAddEstimate(u, v0, a30); a31 = Vector.MultiplyAddEstimate(u, v1, a31); a32 = Vector.MultiplyAddEstimate(u, v2, a32);
        }
        float s00 = Vector.Sum(a00), s01 = Vector.Sum(a01), s02 = Vector.Sum(a02);
        float s10 = Vector.Sum(a10), s11 = Vector.Sum(a11), s12 = Vector.Sum(a12);
        float s20 = Vector.Sum(a20), s21 = Vector.Sum(a21), s22 = Vector.Sum(a22);
        float s30 = Vector.Sum(a30), s31 = Vector.Sum(a31), s32 = Vector.Sum(a32);
        for (; t < depth; t++)
        {
            float v0 = w0[t], v1 = w1[t], v2 = w2[t];
            s00 += x0[t] * v0; s01 += x0[t] * v1; s02 += x0[t] * v2;
            s10 += x1[t] * v0; s11 += x1[t] * v1; s12 += x1[t] * v2;
            s20 += x2[t] * v0; s21 += x2[t] * v1; s22 += x2[t] * v2;
            s30 += x3[t] * v0; s31 += x3[t] * v1; s32 += x3[t] * v2;
        }
        Store(y, s00, overwrite); Store(y + 1, s01, overwrite); Store(y + 2, s02, overwrite);
        y += ldy;
        Store(y, s10, overwrite); Store(y + 1, s11, overwrite); Store(y + 2, s12, overwrite);
        y += ldy;
        Store(y, s20, overwrite); Store(y + 1, s21, overwrite); Store(y + 2, s22, overwrite);
        y += ldy;
        Store(y, s30, overwrite); Store(y + 1, s31, overwrite); Store(y + 2, s32, overwrite);
    }

    /// <summary>
    /// out[r·ldo + c] (= or +=) Σ_{j&lt;depth} coef[r·coefRow + j·coefStep]·src[j·lds + c] for r &lt; rows, c &lt; cols.
    /// Both operands are packed first: the coefficients of each 4-row group as [j][4], and each strip of src (two
    /// vectors of columns) as [j][Strip], so the inner loop streams two contiguous arrays however large the strides are (a 16 KiB row
    /// stride would otherwise put every j on its own page and in the same cache sets).
    /// </summary>
    public static void Axpy(float* coef, long coefRow, long coefStep, float* src, int lds, float* output, int ldo,
        int rows, int cols, int depth, bool overwrite)
    {
        int fullRows = Vector.IsHardwareAccelerated ? rows / 4 * 4 : 0;
        int fullCols = Vector.IsHardwareAccelerated ? cols / Strip * Strip : 0;
        if (fullRows > 0 && fullCols > 0 && depth > 0)
        {
            float[] coefArray = CpuScratch.Pool.Rent(fullRows * depth);
            float[] stripArray = CpuScratch.Pool.Rent(depth * Strip);
            try
            {
                fixed (float* packedCoef = coefArray, strip = stripArray)
                {
                    for (int g = 0; g < fullRows; g += 4)
                    {
                        float* to = packedCoef + (long)g * depth;
                        float* c0 = coef + g * coefRow;
                        for (int j = 0; j < depth; j++)
                        {
                            float* from = c0 + j * coefStep;
                            to[4 * j] = from[0];
                            to[4 * j + 1] = from[coefRow];
                            to[4 * j + 2] = from[2 * coefRow];
                            to[4 * j + 3] = from[3 * coefRow];
                        }
                    }
                    // Column strips outside, row groups inside: the packed strip (depth × Strip) is reused by every group.
                    for (int c = 0; c < fullCols; c += Strip)
                    {
                        for (int j = 0; j < depth; j++)
                        {
                            float* from = src + (long)j * lds + c;
                            Vector.Load(from).Store(strip + Strip * j);
                            Vector.Load(from + W).Store(strip + Strip * j + W);
                        }
                        for (int r = 0; r < fullRows; r += 4)
                            Axpy4xStrip(packedCoef + (long)r * depth, strip, output + (long)r * ldo + c, ldo, depth, overwrite);
                    }
                }
            }
            finally
            {
                CpuScratch.Pool.Return(stripArray);
                CpuScratch.Pool.Return(coefArray);
            }
        }
        else
        {
            fullRows = 0;
            fullCols = 0;
        }
        if (fullCols < cols && fullRows > 0)
            AxpyScalar(coef, coefRow, coefStep, src + fullCols, lds, output + fullCols, ldo, fullRows, cols - fullCols, depth, overwrite);
        if (fullRows < rows)
            AxpyScalar(coef + fullRows * coefRow, coefRow, coefStep, src, lds, output + (long)fullRows * ldo, ldo, rows - fullRows, cols, depth, overwrite);
    }

    /// <summary>4 rows × Strip columns: coef packed as [j][4], strip packed as [j][Strip].</summary>
    private static void Axpy4xStrip(float* coef, float* strip, float* output, int ldo, int depth, bool overwrite)
    {
        Vector<float> a00 = default, a01 = default, a10 = default, a11 = default;
        Vector<float> a20 = default, a21 = default, a30 = default, a31 = default;
        for (int j = 0; j < depth; j++)
        {
            var v0 = Vector.Load(strip + Strip * j);
            var v1 = Vector.Load(strip + Strip * j + W);
            float* c = coef + 4 * j;
            var b = new Vector<float>(c[0]);
            a00 = Vector.MultiplyAddEstimate(b, v0, a00); a01 = Vector.MultiplyAddEstimate(b, v1, a01);
            b = new Vector<float>(c[1]);
            a10 = Vector.MultiplyAddEstimate(b, v0, a10); a11 = Vector.MultiplyAddEstimate(b, v1, a11);
            b = new Vector<float>(c[2]);
            a20 = Vector.MultiplyAddEstimate(b, v0, a20); a21 = Vector.MultiplyAddEstimate(b, v1, a21);
            b = new Vector<float>(c[3]);
            a30 = Vector.MultiplyAddEstimate(b, v0, a30); a31 = Vector.MultiplyAddEstimate(b, v1, a31);
        }
        Put(output, a00, a01, overwrite);
        Put(output + ldo, a10, a11, overwrite);
        Put(output + 2L * ldo, a20, a21, overwrite);
        Put(output + 3L * ldo, a30, a31, overwrite);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put(float* at, Vector<float> low, Vector<float> high, bool overwrite)
    {
        if (!overwrite)
        {
            low += Vector.Load(at);
            high += Vector.Load(at + W);
        }
        low.Store(at);
        high.Store(at + W);
    }

    private static void AxpyScalar(float* coef, long coefRow, long coefStep, float* src, int lds, float* output, int ldo,
        int rows, int cols, int depth, bool overwrite)
    {
        for (int r = 0; r < rows; r++)
        {
            var row = new Span<float>(output + (long)r * ldo, cols);
            if (overwrite) row.Clear();
            for (int j = 0; j < depth; j++)
            {
                float a = coef[r * coefRow + j * coefStep];
                TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(src + (long)j * lds, cols), a, row, row);
            }
        }
    }
}
