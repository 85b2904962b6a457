using System.Reflection;
using EdgeTune.Core;
using EdgeTune.Kernels.Ilgpu;
using Xunit.Sdk;

namespace EdgeTune.Kernels.Tests.Ilgpu;

/// <summary>
/// The shared backend contract on ILGPU's CPU accelerator with the one-thread-per-output kernels. Sizes shrink to
/// [1, 17]: the accelerator emulates GPU threads and group barriers (ARCHITECTURE.md, decision 1), so 1025 rows of
/// the row-reduction kernels alone take 20 s on two cores and quadruple the suite (measured: 10 s → 40 s), while
/// IlgpuKernelTests already runs 1025 and 8197 where they cover something (elementwise lengths, 1025 columns).
/// </summary>
public sealed class IlgpuCpuAcceleratorTests : BackendContractTests
{
    protected override IComputeBackend CreateBackend() => IlgpuBackend.CpuAccelerator();

    protected override int[] Sizes => [1, 17];
}

/// <summary>
/// The same contract on CUDA, only where ILGPU finds a CUDA device (CI has none). xunit 2 cannot skip inherited
/// facts at run time, so one <see cref="CudaFactAttribute"/> test runs every fact and theory case of
/// <see cref="BackendContractTests"/> through reflection against a CUDA backend and reports every failure; without
/// a device it is reported as skipped, with the reason.
/// </summary>
public sealed class IlgpuCudaTests(Xunit.Abstractions.ITestOutputHelper output)
{
    [CudaFact]
    public void BackendContractOnCuda()
    {
        var failures = new List<string>();
        int cases = 0;
        // One backend for every case: kernels compile once. The suites are not disposed (that would dispose it).
        using var backend = IlgpuBackend.Cuda();
        var methods = typeof(BackendContractTests).GetMethods(BindingFlags.Public | BindingFlags.Instance)
            .Where(m => m.GetCustomAttributes<FactAttribute>().Any());
        foreach (var method in methods)
        {
            var rows = method.GetCustomAttributes<DataAttribute>().SelectMany(d => d.GetData(method)).ToList();
            if (rows.Count == 0) rows.Add([]);
            foreach (var row in rows)
            {
                cases++;
                var suite = new CudaContract(backend);
                try
                {
                    method.Invoke(suite, row);
                }
                catch (TargetInvocationException e)
                {
                    failures.Add($"{method.Name}({string.Join(", ", row)}): {e.InnerException?.Message}");
                }
            }
        }
        Assert.True(failures.Count == 0, $"{failures.Count} of {cases} contract cases failed on CUDA:\n" + string.Join("\n", failures));
    }

    [CudaFact]
    public void BackendsCreatePicksCuda()
    {
        string? line = null;
        using var backend = Backends.Create("auto", 0, l => line = l);
        Assert.IsType<IlgpuBackend>(backend);
        Assert.StartsWith("device: cuda (", line);
    }

    [NoCudaFact]
    public void AskingForCudaWithoutADeviceIsAClearError()
    {
        var error = Assert.Throws<EdgeTuneException>(() => IlgpuBackend.Cuda());
        output.WriteLine(error.Message);
        Assert.Contains("no CUDA device found (ILGPU saw: ", error.Message);
        Assert.EndsWith("use --device cpu", error.Message);
        error = Assert.Throws<EdgeTuneException>(() => Backends.Create("cuda", 1));
        Assert.Contains("no CUDA device found", error.Message);
        using var auto = Backends.Create("auto", 1);
        Assert.StartsWith("cpu (", auto.Name);
    }

    [Fact]
    public void BackendsCreateNamesTheDeviceItChose()
    {
        string? line = null;
        using var backend = Backends.Create("cpu", 2, l => line = l);
        Assert.Equal($"device: {backend.Name}", line);
        Assert.StartsWith("device: cpu (managed SIMD", line);
        Assert.Contains("2 threads", line);
        Assert.Throws<EdgeTuneException>(() => Backends.Create("tpu", 1));
    }

    private sealed class CudaContract(IlgpuBackend backend) : BackendContractTests
    {
        protected override IComputeBackend CreateBackend() => backend;
    }
}

/// <summary>A fact that runs only where ILGPU sees a CUDA device; elsewhere it is skipped with the reason.</summary>
public sealed class CudaFactAttribute : FactAttribute
{
    private static readonly Lazy<bool> Present = new(() => IlgpuBackend.CudaDeviceNames().Count > 0);

    public static bool HasCuda => Present.Value;

    public CudaFactAttribute()
    {
        if (!HasCuda) Skip = "no CUDA device: ILGPU sees none on this machine (CI has no GPU)";
    }
}

/// <summary>A fact about machines without CUDA (the clear error, the CPU fallback); where ILGPU sees a device it is skipped with the reason.</summary>
public sealed class NoCudaFactAttribute : FactAttribute
{
    public NoCudaFactAttribute()
    {
        if (CudaFactAttribute.HasCuda) Skip = "this machine has a CUDA device: the no-CUDA error and the CPU fallback of --device auto cannot happen here";
    }
}

/// <summary>
/// <see cref="IlgpuBenchmark"/>: tiny shapes on the CPU accelerator (the benchmark code runs), full shapes on CUDA
/// where present (the figures; run with --logger "console;verbosity=detailed" to see them).
/// </summary>
public sealed class IlgpuCudaBenchmark(Xunit.Abstractions.ITestOutputHelper output)
{
    [Fact]
    public void RunsOnTheCpuAcceleratorAtTinyShapes()
    {
        using var backend = IlgpuBackend.CpuAccelerator();
        var lines = new List<string>();
        IlgpuBenchmark.Run(backend, lines.Add, repeat: 1, small: true);
        foreach (var line in lines) output.WriteLine(line);
        Assert.Equal(11, lines.Count);
        Assert.All(lines.Skip(1), line => Assert.Contains("GFLOP/s", line));
    }

    [CudaFact]
    public void Figures()
    {
        using var backend = IlgpuBackend.Cuda();
        IlgpuBenchmark.Run(backend, output.WriteLine);
    }
}
