using System.Numerics.Tensors;
using System.Numerics;

namespace EdgeTune.Kernels.Cpu;

// x, y: (N,C)  weight: (C)  rstd: (N)     forward: rstd = 1/√(mean(x²) + eps), y = x·rstd·weight; parallel over rows
// backward: dx += rstd·w·dy − rstd³/C·x·Σ(dy·w·x)   parallel over rows
//           dWeight += Σ_n dy·x·rstd                parallel over column slices (one thread per slice: no races)
public sealed unsafe partial class CpuBackend
{
    private const int NormRows = 16, NormColumns = 512;

    public void RmsNormForward(DeviceBuffer x, DeviceBuffer weight, DeviceBuffer y, DeviceBuffer rstd, int n, int c, float eps)
    {
        Reference.CheckRmsNorm(x.Length, weight.Length, y.Length, rstd.Length, n, c);
        float* px = Of(x, nameof(x)).Pointer, pw = Of(weight, nameof(weight)).Pointer, py = Of(y, nameof(y)).Pointer, pr = Of(rstd, nameof(rstd)).Pointer;
        ForChunks(n, NormRows, (start, count) =>
        {
            var w = new ReadOnlySpan<float>(pw, c);
            for (long row = start; row < start + count; row++)
            {
                var xr = new ReadOnlySpan<float>(px + row * c, c);
                var yr = new Span<float>(py + row * c, c);
                float r = 1f / MathF.Sqrt(TensorPrimitives.SumOfSquares(xr) / c + eps);
                pr[row] = r;
                TensorPrimitives.Multiply(xr, w, yr);
                TensorPrimitives.Multiply(yr, r, yr);
            }
        });
    }

    public void RmsNormBackward(DeviceBuffer dy, DeviceBuffer x, DeviceBuffer weight, DeviceBuffer rstd, DeviceBuffer dx, DeviceBuffer? dWeight, int n, int c)
    {
        Reference.CheckRmsNorm(x.Length, weight.Length, dy.Length, rstd.Length, n, c);
        Shapes.Require(dx.Length, (long)n * c, nameof(dx), $"(N={n},C={c})");
        if (dWeight is not null) Shapes.Require(dWeight.Length, c, nameof(dWeight), $"(C={c})");
        float* pdy = Of(dy, nameof(dy)).Pointer, px = Of(x, nameof(x)).Pointer, pw = Of(weight, nameof(weight)).Pointer;
        float* pr = Of(rstd, nameof(rstd)).Pointer, pdx = Of(dx, nameof(dx)).Pointer;
        ForChunks(n, NormRows, (start, count) =>
        {
            for (long row = start; row < start + count; row++)
            {
                float* d = pdy + row * c, xr = px + row * c, o = pdx + row * c;
                float r = pr[row];
                float dot = WeightedDot(d, pw, xr, c);
                float a = r, b = r * r * r * dot / c;
                int i = 0;
                if (Vector.IsHardwareAccelerated)
                    for (; i + Vector<float>.Count <= c; i += Vector<float>.Count)
                    {
                        var v = Vector.Load(o + i) + a * Vector.Load(pw + i) * Vector.Load(d + i) - b * Vector.Load(xr + i);
                        v.Store(o + i);
                    }
                for (; i < c; i++) o[i] += a * pw[i] * d[i] - b * xr[i];
            }
        });
        if (dWeight is null) return;
        float* pdw = Of(dWeight, nameof(dWeight)).Pointer;
        ForChunks(c, NormColumns, (c0, width) =>
        {
            for (long row = 0; row < n; row++)
            {
                float r = pr[row];
                float* d = pdy + row * c + c0, xr = px + row * c + c0, o = pdw + c0;
                int i = 0;
                if (Vector.IsHardwareAccelerated)
                    for (; i + Vector<float>.Count <= width; i += Vector<float>.Count)
                        (Vector.Load(o + i) + Vector.Load(d + i) * Vector.Load(xr + i) * r).Store(o + i);
                for (; i < width; i++) o[i] += d[i] * xr[i] * r;
            }
        });
    }

    /// <summary>Σ a·b·c.</summary>
    private static float WeightedDot(float* a, float* b, float* c, int length)
    {
        var acc = Vector<float>.Zero;
        int i = 0;
        if (Vector.IsHardwareAccelerated)
            for (; i + Vector<float>.Count <= length; i += Vector<float>.Count)
                acc = Vector.MultiplyAddEstimate(Vector.Load(a + i) * Vector.Load(b + i), Vector.Load(c + i), acc);
        float sum = Vector.Sum(acc);
        for (; i < length; i++) sum += a[i] * b[i] * c[i];
        return sum;
    }
}
