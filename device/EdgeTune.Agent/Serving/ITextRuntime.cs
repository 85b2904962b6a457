namespace EdgeTune.Agent.Serving;

public sealed record ChatMessage(string Role, string Content);

/// <summary>Sampling settings of one request (OpenAI's names). Temperature 0 is greedy.</summary>
public sealed record SamplingSettings(int MaxTokens, float Temperature, float TopP, uint? Seed, IReadOnlyList<string> Stop);

/// <summary>What a generation produced. GenerationMs is the runtime's own time (prompt and decode). FinishReason is OpenAI's: "stop" (end of text or a stop sequence) or "length".</summary>
public sealed record GenerationResult(string Text, int PromptTokens, int CompletionTokens, string FinishReason, double TimeToFirstTokenMs, double GenerationMs);

/// <summary>A prompt that does not fit the model's context.</summary>
public sealed class PromptTooLongException(string message) : Exception(message)
{
    public PromptTooLongException() : this("the prompt does not fit the context") { }
    public PromptTooLongException(string message, Exception inner) : this(message + ": " + inner.Message) { }
}

/// <summary>
/// One loaded model behind the API. llama.cpp through LLamaSharp is the first; ONNX Runtime slots in beside it.
/// <see cref="Generate"/> is called by one request at a time (the request queue serialises it) and blocks
/// the calling thread (the API calls <see cref="GenerateAsync"/>); it reports text as it becomes final through
/// <paramref name="onText"/>, on the generating thread.
/// </summary>
public interface ITextRuntime : IDisposable
{
    string ModelName { get; }
    int ContextSize { get; }

    /// <summary>Adapter names (file stems) that can be switched on without reloading the base.</summary>
    IReadOnlyList<string> Adapters { get; }

    /// <summary>The adapter in use, or null for the bare base.</summary>
    string? ActiveAdapter { get; }

    void SetAdapter(string? name);

    /// <summary>The prompt the model's own chat template makes of the messages, ready for the assistant's turn.</summary>
    string ApplyChatTemplate(IReadOnlyList<ChatMessage> messages);

    int[] Tokenize(string prompt);

    GenerationResult Generate(int[] promptTokens, SamplingSettings sampling, Action<string> onText, CancellationToken cancellationToken);

    /// <summary>
    /// <see cref="Generate"/> without blocking the caller. The default runs it on the thread pool; a runtime whose
    /// native library wants one calling thread (llama.cpp with OpenMP) queues it on its own thread instead.
    /// </summary>
    Task<GenerationResult> GenerateAsync(int[] promptTokens, SamplingSettings sampling, Action<string> onText, CancellationToken cancellationToken) =>
        Task.Run(() => Generate(promptTokens, sampling, onText, cancellationToken), cancellationToken);
}
