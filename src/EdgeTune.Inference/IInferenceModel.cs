using EdgeTune.Core;
using EdgeTune.Models.Chat;

namespace EdgeTune.Inference;

/// <summary>
/// How to open a model. Each runtime maps these onto its own settings and ignores what it has no use for
/// (an ONNX folder has no batch sizes, no KV type).
/// </summary>
public sealed record ModelOptions
{
    /// <summary>A GGUF file (llama.cpp, reference) or a model folder (ONNX Runtime GenAI, reference).</summary>
    public required string Path { get; init; }

    /// <summary>The served name; empty means the file or folder name without extension.</summary>
    public string Name { get; init; } = "";

    /// <summary>LoRA adapters loaded beside the base; the first is active after opening. Runtimes without adapters refuse any.</summary>
    public IReadOnlyList<string> Adapters { get; init; } = [];

    /// <summary>Context length in tokens; 0 means the model's trained context, capped at <see cref="MaxContext"/>.</summary>
    public int ContextSize { get; init; }

    /// <summary>The cap on a context taken from the model (a 128k-token context would not fit the memory of a board).</summary>
    public int MaxContext { get; init; } = 4096;

    /// <summary>Tokens handed to the runtime per call while evaluating a prompt (llama.cpp's n_batch); 0 means the context.</summary>
    public int BatchSize { get; init; }

    /// <summary>Tokens computed at once inside a batch (llama.cpp's n_ubatch).</summary>
    public int MicroBatchSize { get; init; } = 512;

    public int Threads { get; init; } = Math.Max(1, Environment.ProcessorCount);

    /// <summary>Layers offloaded to the GPU where the runtime has one; 0 keeps everything on the CPU.</summary>
    public int GpuLayers { get; init; }

    /// <summary>The KV cache's type (llama.cpp). <see cref="Exact"/> overrides it with F32.</summary>
    public GgmlType KvType { get; init; } = GgmlType.F16;

    /// <summary>Parity settings: F32 KV cache, no flash attention (agreement with the reference forward to ~1e-6).</summary>
    public bool Exact { get; init; }

    /// <summary>A native library to load instead of the packaged one (llama.cpp built for the board), or null.</summary>
    public string? NativeLibrary { get; init; }

    /// <summary>
    /// Generations decoded together, one sequence each (llama.cpp: n_seq_max, each sequence with a KV cache of
    /// <see cref="ContextSize"/> tokens of its own). 1: one generation at a time. Runtimes that cannot batch
    /// (ONNX Runtime GenAI, the reference) generate one at a time whatever this says.
    /// </summary>
    public int Parallel { get; init; } = 1;
}

/// <summary>Sampling and stopping for one generation (OpenAI's names). Temperature 0 is greedy (argmax, ties to the lowest id).</summary>
public sealed record SamplingSettings(int MaxTokens, float Temperature, float TopP, ulong? Seed, IReadOnlyList<string> Stop)
{
    /// <summary>Greedy decoding of up to <paramref name="maxTokens"/> tokens, no stop sequences.</summary>
    public static SamplingSettings Greedy(int maxTokens) => new(maxTokens, 0, 1, null, []);
}

/// <summary>
/// What a generation produced. <see cref="Text"/> is the answer: without the end-of-generation token, a stop
/// sequence or the template's end-of-turn text, and nothing after them. GenerationMs is the runtime's own time
/// (prompt and decode). FinishReason is OpenAI's: "stop" (end of generation, a stop sequence, end of turn) or
/// "length". <see cref="Adapter"/> is the adapter that was active while generating; <see cref="Tokens"/> the
/// generated ids (the ending token included when the model produced one).
/// </summary>
public sealed record GenerationResult(string Text, int PromptTokens, int CompletionTokens, string FinishReason, double TimeToFirstTokenMs,
    double GenerationMs, string? Adapter = null, IReadOnlyList<int>? Tokens = null);

/// <summary>A prompt that does not fit the model's context.</summary>
public sealed class PromptTooLongException(string message) : EdgeTuneException(message)
{
    public PromptTooLongException() : this("the prompt does not fit the context") { }
    public PromptTooLongException(string message, Exception inner) : this(message + ": " + inner.Message) { }
}

/// <summary>What a runtime can do beyond the common core.</summary>
public sealed record InferenceCapabilities(bool SupportsAdapters, bool UsesDeviceMemory);

/// <summary>The runtime's own count since the last <see cref="IDecodeSession.Reset"/> (llama.cpp's perf counters).</summary>
public sealed record RuntimeTimings(double PromptMilliseconds, int PromptTokens, double DecodeMilliseconds, int DecodeTokens);

/// <summary>
/// An inference runtime: llama.cpp through LLamaSharp, EdgeTune's reference forward, ONNX Runtime GenAI. A runtime
/// opens models; everything else happens on the model.
/// </summary>
public interface IInferenceRuntime
{
    /// <summary>The device profiles' key for this runtime (llama_cpp_cpu, llama_cpp_cuda, onnxruntime_cpu, ...).</summary>
    string Key { get; }

    /// <summary>Name and version for reports: "llama.cpp via LLamaSharp 0.30.0 (CPU)".</summary>
    string Description { get; }

    /// <summary>True when models live in GPU allocations the process's resident set does not show (CUDA on Jetson).</summary>
    bool UsesDeviceMemory { get; }

    IInferenceModel Open(ModelOptions options, CancellationToken cancellationToken = default);
}

/// <summary>
/// One loaded model with one context. Generations run one at a time (a second waits for the first), or, where the
/// runtime batches (<see cref="Parallel"/> above 1), up to Parallel of them are decoded together and the rest wait;
/// <see cref="SetAdapter"/> waits for the generations in progress. Every call is safe from any thread: a runtime
/// whose native library wants one calling thread (llama.cpp with OpenMP) moves the work there itself.
/// </summary>
public interface IInferenceModel : IDisposable
{
    /// <summary>The served name (file or folder name unless configured).</summary>
    string ModelName { get; }

    /// <summary>What runs, for reports: "llama.cpp: model.gguf + tuned.gguf".</summary>
    string Description { get; }

    IInferenceRuntime Runtime { get; }
    InferenceCapabilities Capabilities { get; }
    int ContextSize { get; }
    int VocabularySize { get; }
    int? BosId { get; }

    /// <summary>Adapter names (file stems) that can be switched on without reloading the base.</summary>
    IReadOnlyList<string> Adapters { get; }

    /// <summary>The adapter in use, or null for the bare base.</summary>
    string? ActiveAdapter { get; }

    /// <summary>How many generations are decoded together (1 unless the runtime batches and was opened with <see cref="ModelOptions.Parallel"/>).</summary>
    int Parallel { get; }

    /// <summary>Switches the adapter (null: the bare base) after a generation in progress ends.</summary>
    void SetAdapter(string? name);

    /// <summary>The prompt the model's own chat template makes of the messages, ready for the assistant's turn when <paramref name="addAssistant"/>.</summary>
    string ApplyChatTemplate(IReadOnlyList<ChatMessage> messages, bool addAssistant = true);

    /// <summary>
    /// The chat template's end-of-turn marker when the vocabulary has it only as text (not one end-of-generation
    /// token): a model tuned on that template writes it as ordinary text, so generation stops there too. Null when
    /// the marker is a single end-of-generation token or the template has none.
    /// </summary>
    string? EndOfTurnText { get; }

    /// <summary>Text to ids. <paramref name="addSpecial"/>: BOS as the model says; <paramref name="parseSpecial"/>: template markers become their special tokens.</summary>
    int[] Tokenize(string text, bool addSpecial = true, bool parseSpecial = true);

    /// <summary>
    /// Generates after <paramref name="promptTokens"/>, blocking the caller. Text reaches <paramref name="onText"/>
    /// only once it is final (never the start of a stop sequence or of the end-of-turn text).
    /// </summary>
    GenerationResult Generate(int[] promptTokens, SamplingSettings sampling, Action<string>? onText, CancellationToken cancellationToken);

    /// <summary><see cref="Generate"/> without blocking a thread-pool thread on it.</summary>
    Task<GenerationResult> GenerateAsync(int[] promptTokens, SamplingSettings sampling, Action<string>? onText, CancellationToken cancellationToken);

    /// <summary>
    /// Logits after every position t in [<paramref name="from"/>, T) of <paramref name="tokens"/> (the prediction of
    /// token t + 1), teacher-forced in one pass from an empty context: (T − from) rows of <see cref="VocabularySize"/>.
    /// </summary>
    float[] Logits(int[] tokens, int from = 0);

    /// <summary>
    /// Runs <paramref name="work"/> with the step-level session, where the runtime's native calls must run, while no
    /// generation runs. For harnesses that time single steps (bench); everything else uses Generate and Logits.
    /// </summary>
    T Run<T>(Func<IDecodeSession, T> work, CancellationToken cancellationToken = default);
}

/// <summary>
/// Step-level access to a model's context: what the generation loop and the benchmark harness drive. Only valid
/// inside <see cref="IInferenceModel.Run{T}"/>.
/// </summary>
public interface IDecodeSession
{
    /// <summary>Tokens in the context.</summary>
    int Position { get; }

    /// <summary>Forget the context (KV cache and the runtime's counters), so the next prompt starts at position 0.</summary>
    void Reset();

    /// <summary>Evaluate <paramref name="tokens"/> after what is in the context; returns when the logits of the last one are ready.</summary>
    void Prompt(ReadOnlySpan<int> tokens);

    /// <summary>Evaluate one token at the next position; returns when its logits are ready.</summary>
    void Decode(int token);

    /// <summary>The logits after the last evaluated token (valid until the next call).</summary>
    ReadOnlySpan<float> LastLogits();

    /// <summary>Whether the token ends generation (EOS, EOT and the vocabulary's other end-of-generation tokens).</summary>
    bool IsEndOfGeneration(int token);

    /// <summary>A decoder that turns generated ids into text as it becomes whole (UTF-8 split over tokens).</summary>
    ITextDecoder NewTextDecoder();

    /// <summary>The runtime's own count since the last <see cref="Reset"/>, when it keeps one.</summary>
    RuntimeTimings? Timings { get; }

    /// <summary>Settings the runtime chose (threads, batch, flash attention, system info), for reports.</summary>
    IReadOnlyDictionary<string, string> Details { get; }
}

/// <summary>
/// Several sequences in one context, each in a slot of its own (llama.cpp: a sequence id with its own KV cache),
/// evaluated together: what the batched scheduler of <see cref="InferenceModel"/> drives. Called only on the
/// runtime's own thread, under the generation gate.
/// </summary>
public interface IBatchedSession
{
    /// <summary>Slots (sequences) the context holds.</summary>
    int Slots { get; }

    /// <summary>Tokens in the slot's sequence.</summary>
    int Position(int slot);

    /// <summary>Empties <paramref name="slot"/>, then evaluates <paramref name="tokens"/> there; the logits of the last one are ready after it.</summary>
    void Prompt(int slot, ReadOnlySpan<int> tokens);

    /// <summary>Evaluates one token in each named slot, all in one pass; each slot's logits are ready after it.</summary>
    void Decode(ReadOnlySpan<(int Slot, int Token)> step);

    /// <summary>The logits after the slot's last evaluated token (valid until the next Prompt or Decode).</summary>
    ReadOnlySpan<float> Logits(int slot);

    /// <summary>Forgets the slot's sequence.</summary>
    void Clear(int slot);
}

/// <summary>Streaming detokenizer: ids in, text out as soon as it is whole.</summary>
public interface ITextDecoder
{
    void Add(int token);

    /// <summary>Text completed since the last call.</summary>
    string Read();
}
