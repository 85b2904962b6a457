using System.Globalization;
using System.Runtime.InteropServices;
using EdgeTune.Cli.Commands;
using EdgeTune.Core;
using EdgeTune.Profiles.Bench;
using LLama;
using LLama.Common;
using LLama.Extensions;
using LLama.Native;

namespace EdgeTune.Cli.Runtimes;

/// <summary>
/// llama.cpp through LLamaSharp as an <see cref="IInferenceRuntime"/> for the benchmark harness. Decoding
/// goes through llama_decode directly (one batch for the prompt, one token per step) so the harness times
/// the runtime and nothing of LLamaSharp's executors.
/// </summary>
internal sealed class LlamaCppRuntime : IInferenceRuntime
{
    public LlamaCppRuntime()
    {
        LlamaCppRunner.EnsureLoaded();
        Gpu = NativeApi.llama_supports_gpu_offload();
    }

    private bool Gpu { get; }

    public string Key => Gpu ? "llama_cpp_cuda" : "llama_cpp_cpu";

    public string Description => $"llama.cpp via LLamaSharp {LlamaSharpVersion} ({(Gpu ? "GPU offload" : "CPU")})";

    /// <summary>The LLamaSharp package version (the assembly carries no version of its own).</summary>
    private static string LlamaSharpVersion
    {
        get
        {
            var assembly = typeof(LLamaWeights).Assembly;
            var informational = assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
                .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion;
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

    public bool UsesDeviceMemory => Gpu;

    public IInferenceSession Open(InferenceOptions options, CancellationToken cancellationToken = default)
    {
        var parameters = new ModelParams(options.ModelPath)
        {
            ContextSize = (uint)options.ContextSize,
            BatchSize = (uint)options.BatchSize,
            UBatchSize = (uint)Math.Min(options.MicroBatchSize, options.BatchSize),
            GpuLayerCount = Gpu ? options.GpuLayers : 0,
            Threads = options.Threads,
            BatchThreads = options.Threads,
            TypeK = (GGMLType)(int)options.KvType,
            TypeV = (GGMLType)(int)options.KvType,
        };
        LLamaWeights weights;
        try
        {
            weights = LLamaWeights.LoadFromFile(parameters);
        }
        catch (LLama.Exceptions.LoadWeightsFailedException)
        {
            throw new EdgeTuneException($"{options.ModelPath}: llama.cpp refused to load the model");
        }
        try
        {
            // The context is made from native parameters so llama.cpp keeps its perf counters (LLamaSharp turns them off).
            parameters.ToLlamaContextParams(out var native);
            native.no_perf = false;
            var context = SafeLLamaContextHandle.Create(weights.NativeHandle, native);
            if (options.AdapterPath is { } adapterPath)
            {
                LoraAdapter adapter;
                try
                {
                    adapter = weights.NativeHandle.LoadLoraFromFile(adapterPath);
                }
                catch (LLama.Exceptions.RuntimeError e)
                {
                    context.Dispose();
                    throw new EdgeTuneException($"{adapterPath}: llama.cpp refused to load the LoRA adapter ({e.Message})");
                }
                context.SetLoraAdapters([(adapter, 1f)]);
            }
            return new Session(weights, context, options);
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }

    private sealed class Session(LLamaWeights weights, SafeLLamaContextHandle context, InferenceOptions options) : IInferenceSession
    {
        private readonly LLamaBatch _batch = new();
        private int _position;
        private int _logitsIndex = -1;

        public int VocabularySize { get; } = weights.Vocab.Count;

        public IReadOnlyDictionary<string, string> Details { get; } = new Dictionary<string, string>
        {
            ["threads"] = options.Threads.ToString(CultureInfo.InvariantCulture),
            ["batch"] = options.BatchSize.ToString(CultureInfo.InvariantCulture),
            ["ubatch"] = Math.Min(options.MicroBatchSize, options.BatchSize).ToString(CultureInfo.InvariantCulture),
            ["flash_attention"] = "auto",
            ["model_bytes"] = weights.SizeInBytes.ToString(CultureInfo.InvariantCulture),
            ["system_info"] = SystemInfo(),
        };

        public void Reset()
        {
            context.MemoryClear(true);
            context.ResetTimings();
            _position = 0;
            _logitsIndex = -1;
        }

        public void Prompt(ReadOnlySpan<int> tokens)
        {
            if (_position != 0) throw new InvalidOperationException("Prompt starts a sequence: call Reset first");
            if (tokens.Length + 1 > options.ContextSize) throw new EdgeTuneException($"the prompt ({tokens.Length} tokens) does not fit the context ({options.ContextSize})");
            for (int start = 0; start < tokens.Length; start += options.BatchSize)
            {
                int count = Math.Min(options.BatchSize, tokens.Length - start);
                _batch.Clear();
                for (int i = 0; i < count; i++)
                    _batch.Add((LLamaToken)tokens[start + i], _position + i, LLamaSeqId.Zero, logits: start + i == tokens.Length - 1);
                Run();
                _position += count;
                _logitsIndex = count - 1;
            }
        }

        public int NextToken()
        {
            if (_logitsIndex < 0) throw new InvalidOperationException("no logits yet: evaluate a prompt first");
            var logits = context.GetLogitsIth(_logitsIndex);
            int best = 0;
            for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
            return best;
        }

        public void Decode(int token)
        {
            if (_position + 1 > options.ContextSize) throw new EdgeTuneException($"the context ({options.ContextSize} tokens) is full");
            _batch.Clear();
            _batch.Add((LLamaToken)token, _position, LLamaSeqId.Zero, logits: true);
            Run();
            _position++;
            _logitsIndex = 0;
        }

        private void Run()
        {
            var result = context.Decode(_batch);
            if (result != DecodeResult.Ok) throw new EdgeTuneException($"{options.ModelPath}: llama_decode failed ({result}) at position {_position}");
        }

        public RuntimeTimings? Timings
        {
            get
            {
                var t = context.GetTimings();
                return new RuntimeTimings(t.PromptEval.TotalMilliseconds, t.PrompTokensEvaluated, t.Eval.TotalMilliseconds, t.TokensEvaluated);
            }
        }

        private static string SystemInfo()
        {
            try
            {
                return Marshal.PtrToStringUTF8(NativeApi.llama_print_system_info())?.Trim() ?? "";
            }
            catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
            {
                return "";
            }
        }

        public void Dispose()
        {
            context.Dispose();
            weights.Dispose();
        }
    }
}
