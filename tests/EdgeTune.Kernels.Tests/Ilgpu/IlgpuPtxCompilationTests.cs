using System.Reflection;
using EdgeTune.Kernels.Ilgpu;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using Xunit.Abstractions;

namespace EdgeTune.Kernels.Tests.Ilgpu;

/// <summary>
/// Every kernel through ILGPU's frontend and PTX backend, no GPU needed. The CPU accelerator runs kernels as .NET
/// code, so it cannot show that a kernel is one the CUDA compiler accepts (math intrinsics, generic sources,
/// shared memory, 64-bit indexing); this does, for the workstation (SM 9.0, H200) and the Jetson Orin (SM 8.7).
/// What it cannot show: that ptxas and the driver accept the PTX, and the numbers on a real GPU.
/// </summary>
public sealed class IlgpuPtxCompilationTests(ITestOutputHelper output)
{
    public static TheoryData<string> Kernels()
    {
        var data = new TheoryData<string>();
        foreach (var (name, _) in KernelMethods()) data.Add(name);
        return data;
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void CompilesToPtx(string kernel)
    {
        var method = KernelMethods().Single(k => k.Name == kernel).Method;
        // Implicitly grouped kernels take the index as their first parameter; explicitly grouped ones read Grid/Group.
        var first = method.GetParameters()[0].ParameterType;
        bool implicitlyGrouped = first == typeof(Index1D) || first == typeof(Index2D);
        using var context = Context.Create(b => b.Cuda());
        foreach (var (architecture, isa) in new[] { (CudaArchitecture.SM_90, CudaInstructionSet.ISA_80), (CudaArchitecture.SM_87, CudaInstructionSet.ISA_80) })
        {
            using var backend = new PTXBackend(context, new CudaCapabilityContext(architecture), architecture, isa, nvvmAPI: null);
            var entry = implicitlyGrouped
                ? EntryPointDescription.FromImplicitlyGroupedKernel(method)
                : EntryPointDescription.FromExplicitlyGroupedKernel(method);
            var compiled = (PTXCompiledKernel)backend.Compile(entry, KernelSpecialization.Empty);
            Assert.Contains(".entry", compiled.PTXAssembly);
            // EDGETUNE_PTX_DUMP=DIR writes the PTX, for reading what ILGPU generated (fma contraction, local memory).
            if (Environment.GetEnvironmentVariable("EDGETUNE_PTX_DUMP") is { Length: > 0 } dump)
            {
                Directory.CreateDirectory(dump);
                File.WriteAllText(Path.Combine(dump, $"{kernel.Replace('<', '_').Replace('>', '_').Replace(',', '_')}.{architecture}.ptx"), compiled.PTXAssembly);
            }
            output.WriteLine($"{kernel} on {architecture}: {compiled.PTXAssembly.Length} characters of PTX");
        }
    }

    /// <summary>The static kernels of <see cref="IlgpuBackend"/>, generic GEMMs closed over each operand pair used.</summary>
    private static IEnumerable<(string Name, MethodInfo Method)> KernelMethods()
    {
        var methods = typeof(IlgpuBackend).GetMethods(BindingFlags.NonPublic | BindingFlags.Static)
            .Where(m => m.Name.EndsWith("Kernel", StringComparison.Ordinal));
        foreach (var method in methods.OrderBy(m => m.Name, StringComparer.Ordinal))
        {
            if (!method.IsGenericMethodDefinition)
            {
                yield return (method.Name, method);
                continue;
            }
            yield return (method.Name + "<Dense,Dense>", method.MakeGenericMethod(typeof(DenseSource), typeof(DenseSource)));
            yield return (method.Name + "<Dense,Frozen>", method.MakeGenericMethod(typeof(DenseSource), typeof(FrozenSource)));
        }
    }
}
