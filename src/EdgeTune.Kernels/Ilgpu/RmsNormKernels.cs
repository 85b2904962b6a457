using ILGPU;
using ILGPU.Runtime;

namespace EdgeTune.Kernels.Ilgpu;

// RMSNorm. forward  x, y: (N,C)  weight: (C)  rstd: (N)    rstd = 1/√(mean(x²) + eps);  y = x·rstd·weight
//          backward dy, x, dx: (N,C)  dWeight: (C)           both accumulate (see Reference.RmsNormBackward)
// One group per row for the row sums (tree reduction in shared memory); dWeight is a column sum over rows,
// one thread per channel walking the rows in order, so it needs no atomics and is deterministic.
public sealed partial class IlgpuBackend
{
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float>? _rmsNormForward;
    private Action<KernelConfig, RmsNormBackwardViews, int>? _rmsNormBackwardInput;
    private Action<Index1D, RmsNormBackwardViews, int, int>? _rmsNormBackwardWeight;

    public void RmsNormForward(DeviceBuffer x, DeviceBuffer weight, DeviceBuffer y, DeviceBuffer rstd, int n, int c, float eps)
    {
        var xv = View(x, nameof(x));
        var wv = View(weight, nameof(weight));
        var yv = View(y, nameof(y));
        var rv = View(rstd, nameof(rstd));
        Reference.CheckRmsNorm(xv.Length, wv.Length, yv.Length, rv.Length, n, c);
        if (n == 0) return;
        _rmsNormForward ??= _accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float>(RmsNormForwardKernel);
        _rmsNormForward(new KernelConfig(n, _rowGroup), xv, wv, yv, rv, c, eps);
    }

    public void RmsNormBackward(DeviceBuffer dy, DeviceBuffer x, DeviceBuffer weight, DeviceBuffer rstd, DeviceBuffer dx, DeviceBuffer? dWeight, int n, int c)
    {
        var views = new RmsNormBackwardViews
        {
            Dy = View(dy, nameof(dy)), X = View(x, nameof(x)), Weight = View(weight, nameof(weight)),
            Rstd = View(rstd, nameof(rstd)), Dx = View(dx, nameof(dx)),
        };
        Reference.CheckRmsNorm(views.X.Length, views.Weight.Length, views.Dy.Length, views.Rstd.Length, n, c);
        Shapes.Require(views.Dx.Length, (long)n * c, nameof(dx), $"(N={n},C={c})");
        if (dWeight is not null)
        {
            views.DWeight = View(dWeight, nameof(dWeight));
            Shapes.Require(views.DWeight.Length, c, nameof(dWeight), $"(C={c})");
        }
        if (n == 0) return;
        _rmsNormBackwardInput ??= _accelerator.LoadStreamKernel<RmsNormBackwardViews, int>(RmsNormBackwardInputKernel);
        _rmsNormBackwardInput(new KernelConfig(n, _rowGroup), views, c);
        if (dWeight is null) return;
        _rmsNormBackwardWeight ??= _accelerator.LoadAutoGroupedStreamKernel<Index1D, RmsNormBackwardViews, int, int>(RmsNormBackwardWeightKernel);
        _rmsNormBackwardWeight(c, views, n, c);
    }

    internal struct RmsNormBackwardViews
    {
        public ArrayView<float> Dy, X, Weight, Rstd, Dx, DWeight;
    }

    // grid: N groups, one per row.   x, y: (N,C)  weight: (C)  rstd: (N)
    private static void RmsNormForwardKernel(ArrayView<float> x, ArrayView<float> weight, ArrayView<float> y, ArrayView<float> rstd, int c, float eps)
    {
        var shared = SharedMemory.Allocate<float>(RowGroupMax);
        int lane = Group.IdxX, stride = Group.DimX;
        long row = Grid.IdxX, start = row * c;
        float sumSq = 0f;
        for (int i = lane; i < c; i += stride)
        {
            float value = x[start + i];
            sumSq += value * value;
        }
        sumSq = RowReduce.Sum(shared, sumSq);
        float r = 1f / MathF.Sqrt(sumSq / c + eps);
        if (lane == 0) rstd[row] = r;
        for (int i = lane; i < c; i += stride) y[start + i] = x[start + i] * r * weight[i];
    }

    // grid: N groups, one per row.   dx[n,c] += rstd·w[c]·dy[n,c] − rstd³/C·x[n,c]·Σ_j dy[n,j]·w[j]·x[n,j]
    private static void RmsNormBackwardInputKernel(RmsNormBackwardViews v, int c)
    {
        var shared = SharedMemory.Allocate<float>(RowGroupMax);
        int lane = Group.IdxX, stride = Group.DimX;
        long row = Grid.IdxX, start = row * c;
        float r = v.Rstd[row];
        float dot = 0f;
        for (int i = lane; i < c; i += stride) dot += v.Dy[start + i] * v.Weight[i] * v.X[start + i];
        dot = RowReduce.Sum(shared, dot);
        float coefficient = r * r * r * dot / c;
        for (int i = lane; i < c; i += stride)
        {
            long at = start + i;
            v.Dx[at] += r * v.Weight[i] * v.Dy[at] - coefficient * v.X[at];
        }
    }

    // one thread per channel.   dWeight[c] += Σ_n dy[n,c]·x[n,c]·rstd[n], rows in order
    private static void RmsNormBackwardWeightKernel(Index1D channel, RmsNormBackwardViews v, int n, int c)
    {
        float sum = v.DWeight[channel];
        for (int row = 0; row < n; row++)
        {
            long at = (long)row * c + channel;
            sum += v.Dy[at] * v.X[at] * v.Rstd[row];
        }
        v.DWeight[channel] = sum;
    }
}
