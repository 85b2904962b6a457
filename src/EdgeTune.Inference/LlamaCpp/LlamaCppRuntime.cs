using System.Reflection;
using LLama;
using LLama.Native;

namespace EdgeTune.Inference.LlamaCpp;

/// <summary>llama.cpp through LLamaSharp: GGUF models with GGUF LoRA adapters, on the CPU or, with a CUDA build, the GPU.</summary>
public sealed class LlamaCppRuntime : IInferenceRuntime
{
    /// <summary>Loads llama.cpp (see <see cref="LlamaCppNative.EnsureLoaded"/>); the runtime is then ready to open models.</summary>
    public LlamaCppRuntime(string? nativeLibrary = null)
    {
        LlamaCppNative.EnsureLoaded(nativeLibrary);
        NativeLibrary = nativeLibrary;
        Gpu = NativeApi.llama_supports_gpu_offload();
    }

    /// <summary>The one runtime of the process with the packaged library (opening it twice costs nothing).</summary>
    public static LlamaCppRuntime Default => DefaultRuntime.Value;

    private static readonly Lazy<LlamaCppRuntime> DefaultRuntime = new(() => new LlamaCppRuntime());

    internal string? NativeLibrary { get; }

    /// <summary>Whether this llama.cpp can offload to a GPU (a CUDA build).</summary>
    public bool Gpu { get; }

    public string Key => Gpu ? "llama_cpp_cuda" : "llama_cpp_cpu";

    public string Description => $"llama.cpp via LLamaSharp {LlamaSharpVersion} ({(Gpu ? "GPU offload" : "CPU")})";

    public bool UsesDeviceMemory => Gpu;

    public IInferenceModel Open(ModelOptions options, CancellationToken cancellationToken = default) => Load(options);

    /// <summary><see cref="Open"/> with the concrete type (thread id for tests and benchmarks).</summary>
    public LlamaCppModel Load(ModelOptions options)
    {
        if (options.NativeLibrary is not null) LlamaCppNative.EnsureLoaded(options.NativeLibrary);
        return new LlamaCppModel(this, options);
    }

    /// <summary>The LLamaSharp package version (the assembly carries no version of its own).</summary>
    private static string LlamaSharpVersion
    {
        get
        {
            var assembly = typeof(LLamaWeights).Assembly;
            var informational = assembly.GetCustomAttributes<AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion;
            if (informational is { Length: > 0 } && !informational.StartsWith("0.0.0", StringComparison.Ordinal)) return informational.Split('+')[0];
            // A NuGet package lives in .../llamasharp/VERSION/lib/TFM/LLamaSharp.dll; next to the app there is only the deps file.
            var deps = Path.Combine(AppContext.BaseDirectory, Path.GetFileNameWithoutExtension(Environment.ProcessPath ?? "edgetune") + ".deps.json");
            return ReadPackageVersion(deps) ?? ReadPackageVersion(Path.Combine(AppContext.BaseDirectory, "edgetune.deps.json")) ?? "(unknown version)";
        }
    }

    private static string? ReadPackageVersion(string depsFile)
    {
        try
        {
            if (!File.Exists(depsFile)) return null;
            using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(depsFile));
            if (!doc.RootElement.TryGetProperty("libraries", out var libraries)) return null;
            foreach (var library in libraries.EnumerateObject())
                if (library.Name.StartsWith("LLamaSharp/", StringComparison.Ordinal)) return library.Name["LLamaSharp/".Length..];
        }
        catch (Exception e) when (e is IOException or System.Text.Json.JsonException or UnauthorizedAccessException)
        {
        }
        return null;
    }
}
