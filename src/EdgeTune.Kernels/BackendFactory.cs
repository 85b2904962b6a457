using EdgeTune.Core;
using EdgeTune.Kernels.Cpu;
using EdgeTune.Kernels.Ilgpu;

namespace EdgeTune.Kernels;

/// <summary>Picks the compute backend for a run from the CLI's <c>--device</c> and <c>--threads</c>.</summary>
public static class Backends
{
    /// <summary>
    /// <paramref name="device"/>: <c>auto</c> (CUDA when ILGPU finds a CUDA device, else the managed CPU backend),
    /// <c>cuda</c> (an error when there is none), or <c>cpu</c>. <paramref name="threads"/> is the CPU backend's thread
    /// count (0 = all cores). The choice is reported through <paramref name="log"/> as the line the CLI prints,
    /// "device: cuda (NVIDIA H200, 139 GiB)" or "device: cpu (managed SIMD AVX2, 2 threads)".
    /// </summary>
    public static IComputeBackend Create(string device, int threads, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (threads < 0) throw new ArgumentOutOfRangeException(nameof(threads), threads, "threads must be 0 (all cores) or positive");
        IComputeBackend backend = device.Trim().ToLowerInvariant() switch
        {
            "cpu" => new CpuBackend(threads),
            "cuda" => CreateCuda(),
            "auto" => IlgpuBackend.CudaDeviceNames().Count > 0 ? CreateCuda() : new CpuBackend(threads),
            _ => throw new EdgeTuneException($"unknown device '{device}': use auto, cuda or cpu"),
        };
        log?.Invoke($"device: {backend.Name}");
        return backend;
    }

    private static IlgpuBackend CreateCuda()
    {
        var devices = IlgpuBackend.CudaDeviceNames();
        if (devices.Count == 0)
            throw new EdgeTuneException($"no CUDA device found (ILGPU saw: {IlgpuBackend.DescribeDevices()}); use --device cpu");
        return IlgpuBackend.Cuda();
    }
}
