using EdgeTune.Core;

namespace EdgeTune.Profiles.Bench;

/// <summary>How to open a model for a benchmark; a runtime maps these onto its own settings.</summary>
public sealed record InferenceOptions
{
    public required string ModelPath { get; init; }
    public string? AdapterPath { get; init; }
    public required int ContextSize { get; init; }

    /// <summary>Tokens handed to the runtime per call while evaluating a prompt (llama.cpp's n_batch).</summary>
    public int BatchSize { get; init; } = 2048;

    /// <summary>Tokens computed at once inside a batch (llama.cpp's n_ubatch).</summary>
    public int MicroBatchSize { get; init; } = 512;
    public int Threads { get; init; } = Environment.ProcessorCount;

    /// <summary>Layers offloaded to the GPU; 0 on CPU runtimes.</summary>
    public int GpuLayers { get; init; }
    public GgmlType KvType { get; init; } = GgmlType.F16;
}

/// <summary>What the runtime itself counted (llama.cpp's perf counters), beside the harness's own clock.</summary>
public sealed record RuntimeTimings(double PromptMilliseconds, int PromptTokens, double DecodeMilliseconds, int DecodeTokens);

/// <summary>
/// An inference runtime the benchmark harness can drive: llama.cpp through LLamaSharp today, ONNX Runtime
/// later. The harness times every call with its own clock, so a runtime only has to run tokens.
/// </summary>
public interface IInferenceRuntime
{
    /// <summary>The profile's key for this runtime (<see cref="Schema.ProfileSchema.RuntimeKeys"/>): llama_cpp_cpu, ...</summary>
    string Key { get; }

    /// <summary>Name and version for reports: "llama.cpp via LLamaSharp 0.30.0 (CPU)".</summary>
    string Description { get; }

    /// <summary>True when the model lives in GPU allocations the process's resident set does not show (CUDA on Jetson).</summary>
    bool UsesDeviceMemory { get; }

    IInferenceSession Open(InferenceOptions options, CancellationToken cancellationToken = default);
}

/// <summary>One loaded model with one context, used by one thread.</summary>
public interface IInferenceSession : IDisposable
{
    int VocabularySize { get; }

    /// <summary>Forget the context (KV cache and the runtime's counters), so the next prompt starts at position 0.</summary>
    void Reset();

    /// <summary>Evaluate <paramref name="tokens"/> from position 0; returns when the logits of the last one are ready.</summary>
    void Prompt(ReadOnlySpan<int> tokens);

    /// <summary>The most likely next token (greedy) from the current logits.</summary>
    int NextToken();

    /// <summary>Evaluate one token at the next position; returns when its logits are ready.</summary>
    void Decode(int token);

    /// <summary>The runtime's own count since the last <see cref="Reset"/>, when it keeps one.</summary>
    RuntimeTimings? Timings { get; }

    /// <summary>Settings the runtime chose (threads, flash attention, KV type, system info), for the report.</summary>
    IReadOnlyDictionary<string, string> Details { get; }
}
