using ILGPU;
using ILGPU.Runtime;

namespace EdgeTune.Kernels.Ilgpu;

// Elementwise ops and the sum-of-squares reduction. Grid-stride kernels: thread i of `stride` threads handles
// elements i, i + stride, … so buffers longer than int.MaxValue need no special launch.
public sealed unsafe partial class IlgpuBackend
{
    private Action<Index1D, ArrayView<float>, ArrayView<float>, float, long>? _addScaled;
    private Action<Index1D, ArrayView<float>, float, long>? _scale;
    private Action<Index1D, ArrayView<float>, ArrayView<double>, long>? _sumOfSquares;
    private Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, long>? _swiGluForward;
    private Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, long>? _swiGluBackward;
    private Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AdamWParameters>? _adamW;
    private Action<Index1D, ArrayView<float>, ArrayView<float>, DropoutParameters>? _dropout;
    private MemoryBuffer1D<double, Stride1D.Dense>? _partialSums;

    /// <summary>Partial sums of the sum-of-squares reduction: each thread sums its grid-stride share in double.</summary>
    private const int SumOfSquaresThreads = 4096;

    public void AddScaled(DeviceBuffer accumulator, DeviceBuffer x, float scale)
    {
        var a = View(accumulator, nameof(accumulator));
        var xv = View(x, nameof(x));
        if (a.Length != xv.Length) throw new ArgumentException($"accumulator holds {a.Length} values, x {xv.Length}", nameof(x));
        if (a.Length == 0) return;
        _addScaled ??= _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, float, long>(AddScaledKernel);
        int threads = GridStrideThreads(a.Length);
        _addScaled(threads, a, xv, scale, threads);
    }

    public void Scale(DeviceBuffer buffer, float scale)
    {
        var b = View(buffer, nameof(buffer));
        if (b.Length == 0) return;
        _scale ??= _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, float, long>(ScaleKernel);
        int threads = GridStrideThreads(b.Length);
        _scale(threads, b, scale, threads);
    }

    public double SumOfSquares(DeviceBuffer buffer)
    {
        var b = View(buffer, nameof(buffer));
        if (b.Length == 0) return 0;
        _sumOfSquares ??= _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<double>, long>(SumOfSquaresKernel);
        _partialSums ??= _accelerator.Allocate1D<double>(SumOfSquaresThreads);
        int threads = (int)Math.Min(b.Length, SumOfSquaresThreads);
        var partials = _partialSums.View.SubView(0, threads);
        _sumOfSquares(threads, b, partials, threads);
        var host = new double[threads];
        fixed (double* pinned = host) partials.CopyToCPU(ref *pinned, threads);
        double sum = 0;
        foreach (double p in host) sum += p; // fixed order: the result does not depend on scheduling
        return sum;
    }

    public void SwiGluForward(DeviceBuffer gate, DeviceBuffer up, DeviceBuffer output, long count)
    {
        var g = View(gate, nameof(gate));
        var u = View(up, nameof(up));
        var o = View(output, nameof(output));
        Shapes.NonNegative(count, nameof(count));
        Shapes.Require(g.Length, count, nameof(gate), $"(count={count})");
        Shapes.Require(u.Length, count, nameof(up), $"(count={count})");
        Shapes.Require(o.Length, count, nameof(output), $"(count={count})");
        if (count == 0) return;
        _swiGluForward ??= _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, long>(SwiGluForwardKernel);
        int threads = GridStrideThreads(count);
        _swiGluForward(threads, g.SubView(0, count), u.SubView(0, count), o.SubView(0, count), threads);
    }

    public void SwiGluBackward(DeviceBuffer dOutput, DeviceBuffer gate, DeviceBuffer up, DeviceBuffer dGate, DeviceBuffer dUp, long count)
    {
        var d = View(dOutput, nameof(dOutput));
        var g = View(gate, nameof(gate));
        var u = View(up, nameof(up));
        var dg = View(dGate, nameof(dGate));
        var du = View(dUp, nameof(dUp));
        Shapes.NonNegative(count, nameof(count));
        foreach (var (length, name) in new[] { (d.Length, nameof(dOutput)), (g.Length, nameof(gate)), (u.Length, nameof(up)), (dg.Length, nameof(dGate)), (du.Length, nameof(dUp)) })
            Shapes.Require(length, count, name, $"(count={count})");
        if (count == 0) return;
        _swiGluBackward ??= _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, long>(SwiGluBackwardKernel);
        int threads = GridStrideThreads(count);
        _swiGluBackward(threads, d.SubView(0, count), g.SubView(0, count), u.SubView(0, count), dg.SubView(0, count), du.SubView(0, count), threads);
    }

    public void AdamW(DeviceBuffer parameters, DeviceBuffer gradients, DeviceBuffer m, DeviceBuffer v,
        float learningRate, float beta1, float beta2, float epsilon, float weightDecay, int step)
    {
        var p = View(parameters, nameof(parameters));
        var g = View(gradients, nameof(gradients));
        var mv = View(m, nameof(m));
        var vv = View(v, nameof(v));
        Reference.CheckAdamW(p.Length, g.Length, mv.Length, vv.Length, step);
        if (p.Length == 0) return;
        _adamW ??= _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AdamWParameters>(AdamWKernel);
        int threads = GridStrideThreads(p.Length);
        var args = new AdamWParameters
        {
            LearningRate = learningRate, Beta1 = beta1, Beta2 = beta2, Epsilon = epsilon, WeightDecay = weightDecay,
            // As the reference: 1 − β^step in float (MathF.Pow is what float's T.Pow calls).
            Correction1 = 1f - MathF.Pow(beta1, step), Correction2 = 1f - MathF.Pow(beta2, step),
            Count = p.Length, Stride = threads,
        };
        _adamW(threads, p, g.SubView(0, p.Length), mv.SubView(0, p.Length), vv.SubView(0, p.Length), args);
    }

    public void Dropout(DeviceBuffer x, DeviceBuffer y, long count, float probability, ulong seed)
    {
        var xv = View(x, nameof(x));
        var yv = View(y, nameof(y));
        Reference.CheckDropout(xv.Length, yv.Length, count, probability);
        if (count == 0) return;
        _dropout ??= _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, DropoutParameters>(DropoutKernel);
        int threads = GridStrideThreads(count);
        var args = new DropoutParameters
        {
            Seed = seed, Probability = probability, Scale = DropoutMask.KeepScale(probability), Count = count, Stride = threads,
        };
        _dropout(threads, xv.SubView(0, count), yv.SubView(0, count), args);
    }

    // ---- kernels ---------------------------------------------------------------------------------------

    // accumulator, x: (count)      accumulator += scale·x
    private static void AddScaledKernel(Index1D index, ArrayView<float> accumulator, ArrayView<float> x, float scale, long stride)
    {
        for (long i = index; i < accumulator.Length; i += stride) accumulator[i] += scale * x[i];
    }

    // buffer: (count)              buffer *= scale
    private static void ScaleKernel(Index1D index, ArrayView<float> buffer, float scale, long stride)
    {
        for (long i = index; i < buffer.Length; i += stride) buffer[i] *= scale;
    }

    // buffer: (count)  partials: (stride)      partials[t] = Σ_{i ≡ t mod stride} buffer[i]², in double
    private static void SumOfSquaresKernel(Index1D index, ArrayView<float> buffer, ArrayView<double> partials, long stride)
    {
        double sum = 0;
        for (long i = index; i < buffer.Length; i += stride)
        {
            double value = buffer[i];
            sum += value * value;
        }
        partials[index] = sum;
    }

    // gate, up, output: (count)    output = silu(gate)·up = gate·σ(gate)·up   (output may alias gate)
    private static void SwiGluForwardKernel(Index1D index, ArrayView<float> gate, ArrayView<float> up, ArrayView<float> output, long stride)
    {
        for (long i = index; i < gate.Length; i += stride)
        {
            float g = gate[i];
            float sigmoid = 1f / (1f + DeviceMath.Exp(-g));
            output[i] = g * sigmoid * up[i];
        }
    }

    // dOutput, gate, up, dGate, dUp: (count)   dUp = dOut·silu(g);  dGate = dOut·up·σ(g)·(1 + g·(1 − σ(g)))
    // Everything is read before anything is written, so dGate/dUp may alias gate/up.
    private static void SwiGluBackwardKernel(Index1D index, ArrayView<float> dOutput, ArrayView<float> gate, ArrayView<float> up,
        ArrayView<float> dGate, ArrayView<float> dUp, long stride)
    {
        for (long i = index; i < gate.Length; i += stride)
        {
            float g = gate[i], u = up[i], d = dOutput[i];
            float sigmoid = 1f / (1f + DeviceMath.Exp(-g));
            float silu = g * sigmoid;
            dGate[i] = d * u * (sigmoid * (1f + g * (1f - sigmoid)));
            dUp[i] = d * silu;
        }
    }

    internal struct AdamWParameters
    {
        public float LearningRate, Beta1, Beta2, Epsilon, WeightDecay, Correction1, Correction2;
        public long Count, Stride;
    }

    // parameters, gradients, m, v: (count)    one AdamW step (see IComputeBackend.AdamW)
    private static void AdamWKernel(Index1D index, ArrayView<float> parameters, ArrayView<float> gradients, ArrayView<float> m,
        ArrayView<float> v, AdamWParameters a)
    {
        for (long i = index; i < a.Count; i += a.Stride)
        {
            float g = gradients[i];
            float mi = a.Beta1 * m[i] + (1f - a.Beta1) * g;
            float vi = a.Beta2 * v[i] + (1f - a.Beta2) * g * g;
            m[i] = mi;
            v[i] = vi;
            float mHat = mi / a.Correction1, vHat = vi / a.Correction2;
            float p = parameters[i];
            parameters[i] = p - a.LearningRate * (mHat / (MathF.Sqrt(vHat) + a.Epsilon) + a.WeightDecay * p);
        }
    }

    internal struct DropoutParameters
    {
        public ulong Seed;
        public float Probability, Scale;
        public long Count, Stride;
    }

    // x, y: (count)    y = Keep(seed, i, p) ? x·1/(1−p) : 0     (DropoutMask: the CPU backend's mask, bit for bit)
    private static void DropoutKernel(Index1D index, ArrayView<float> x, ArrayView<float> y, DropoutParameters a)
    {
        for (long i = index; i < a.Count; i += a.Stride)
            y[i] = DropoutMask.Keep(a.Seed, i, a.Probability) ? x[i] * a.Scale : 0f;
    }
}
