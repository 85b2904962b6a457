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
