using System.Runtime.InteropServices;
using EdgeTune.Kernels.Cpu;
using static EdgeTune.Kernels.Tests.TestData;

namespace EdgeTune.Kernels.Tests;

public class CpuBackendTests : BackendContractTests
{
    protected override IComputeBackend CreateBackend() => new CpuBackend();

    [Fact]
    public void ResultsDoNotDependOnTheThreadCount()
    {
        int n = 130, k = 1100, m = 97;
        float[] x = UniformF(n * k, 1), w = UniformF(m * k, 2), dy = UniformF(n * m, 3);
        byte[] Run(int threads)
        {
            using var backend = new CpuBackend(threads);
            DeviceBuffer Up(float[] values) { var b = backend.Allocate(values.Length); backend.Upload(values, b); return b; }
            var (bx, bw, bdy) = (Up(x), Up(w), Up(dy));
            var (y, dx, dw) = (backend.Allocate(n * m), backend.Allocate(n * k), backend.Allocate(m * k));
            backend.MatMul(bx, bw, y, n, k, m, false);
            backend.MatMulBackwardInput(bdy, bw, dx, n, k, m, false);
            backend.MatMulBackwardWeight(bdy, bx, dw, n, k, m, false);
            using var frozen = backend.UploadFrozen(FrozenFormat.Nf4, Nf4Codec.Quantize(w), m, k);
            var (fy, fdx) = (backend.Allocate(n * m), backend.Allocate(n * k));
            backend.FrozenMatMul(bx, frozen, fy, n, false);
            backend.FrozenMatMulBackwardInput(bdy, frozen, fdx, n, false);
            var all = new List<float>();
            foreach (var buffer in new[] { y, dx, dw, fy, fdx })
            {
                var values = new float[buffer.Length];
                backend.Download(buffer, values);
                all.AddRange(values);
            }
            return MemoryMarshal.AsBytes(all.ToArray().AsSpan()).ToArray();
        }
        byte[] one = Run(1);
        Assert.Equal(one, Run(2));
        Assert.Equal(one, Run(5));
    }

    [Fact]
    public void EveryTileRemainder()
    {
        // Rows around the 4-row tiles, w rows around the 3-row Dot tiles, K around the vector width and the two-vector
        // Axpy strips (8/16 with AVX2, 4/8 with NEON): every mix of full tiles and scalar edges.
        int[] depths = [1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 33, 40];
        var backend = (CpuBackend)Backend;
        for (int n = 1; n <= 9; n++)
            foreach (int k in depths)
                for (int m = 1; m <= 7; m++)
                {
                    float[] x = UniformF(n * k, n), w = UniformF(m * k, m), dy = UniformF(n * m, k);
                    var (bx, bw, bdy) = (Up(x), Up(w), Up(dy));
                    var (y, dx, dw) = (backend.Allocate(n * m), backend.Allocate(n * k), backend.Allocate(m * k));
                    backend.MatMul(bx, bw, y, n, k, m, false);
                    backend.MatMulBackwardInput(bdy, bw, dx, n, k, m, false);
                    backend.MatMulBackwardWeight(bdy, bx, dw, n, k, m, false);
                    double[] ey = new double[n * m], edx = new double[n * k], edw = new double[m * k];
                    Reference.MatMul<double>(D(x), D(w), ey, n, k, m, false);
                    Reference.MatMulBackwardInput<double>(D(dy), D(w), edx, n, k, m, false);
                    Reference.MatMulBackwardWeight<double>(D(dy), D(x), edw, n, k, m, false);
                    string at = $"(N={n},K={k},M={m})";
                    Close("y " + at, ey, y);
                    Close("dx " + at, edx, dx);
                    Close("dw " + at, edw, dw);
                }
    }

    [Fact]
    public void NameSaysThreads()
    {
        using var backend = new CpuBackend(3);
        Assert.Contains("3 threads", backend.Name);
        Assert.Throws<ArgumentOutOfRangeException>(() => new CpuBackend(-1));
    }

    [Fact]
    public void BuffersOfAnotherBackendAreRejected()
    {
        using var other = new CpuBackend(1);
        var foreign = new ForeignBuffer();
        Assert.Throws<ArgumentException>(() => other.Zero(foreign));
    }

    private sealed class ForeignBuffer() : DeviceBuffer(4)
    {
        public override DeviceBuffer Slice(long offset, long length) => this;
    }
}
