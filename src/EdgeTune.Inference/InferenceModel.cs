using System.Diagnostics;
using EdgeTune.Models.Chat;
using EdgeTune.Models.Generation;
using EdgeTune.Models.Reference;

namespace EdgeTune.Inference;

/// <summary>
/// What every runtime shares: the generation loop (prompt, sample, decode, stop at end-of-generation tokens, stop
/// sequences and the template's end-of-turn text), one generation at a time, adapter switches between generations.
/// A runtime supplies the step-level <see cref="Session"/>, tokenizer and template; a runtime whose native calls
/// must stay on one thread overrides <see cref="Execute{T}"/> and <see cref="ExecuteAsync{T}"/>.
/// </summary>
public abstract class InferenceModel : IInferenceModel
{
    private readonly Lock _gate = new();
    private readonly Lazy<string?> _endOfTurn;
    private int _disposed;

    protected InferenceModel() => _endOfTurn = new Lazy<string?>(FindEndOfTurnText);

    public abstract string ModelName { get; }
    public abstract string Description { get; }
    public abstract IInferenceRuntime Runtime { get; }
    public abstract InferenceCapabilities Capabilities { get; }
    public abstract int ContextSize { get; }
    public abstract int VocabularySize { get; }
    public abstract int? BosId { get; }
    public virtual IReadOnlyList<string> Adapters => [];
    public string? ActiveAdapter { get; private set; }
    public abstract string ApplyChatTemplate(IReadOnlyList<ChatMessage> messages, bool addAssistant = true);
    public abstract int[] Tokenize(string text, bool addSpecial = true, bool parseSpecial = true);

    /// <summary>The step-level session; used only inside <see cref="Execute{T}"/> under the generation gate.</summary>
    protected abstract IDecodeSession Session { get; }

    /// <summary>Logits of every position from <paramref name="from"/> (see <see cref="Logits"/>); called under the gate, inside Execute.</summary>
    protected abstract float[] ComputeLogits(int[] tokens, int from);

    /// <summary>Puts the adapter (null: none) on the context; called under the gate, inside Execute.</summary>
    protected virtual void ApplyAdapter(string? name) =>
        throw new NotSupportedException($"{Description}: this runtime has no adapters to switch");

    /// <summary>Runs <paramref name="work"/> where the runtime's native calls must run; inline by default.</summary>
    protected virtual T Execute<T>(Func<T> work, CancellationToken cancellationToken) => work();

    /// <summary>Runs <paramref name="work"/> without blocking the caller; on the thread pool by default.</summary>
    protected virtual Task<T> ExecuteAsync<T>(Func<T> work, CancellationToken cancellationToken) => Task.Run(work, cancellationToken);

    /// <summary>Sets the adapter that is active after opening (no generation can run yet).</summary>
    protected void InitialAdapter(string? name) => ActiveAdapter = name;

    protected bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    public string? EndOfTurnText => _endOfTurn.Value;

    private string? FindEndOfTurnText()
    {
        string? marker;
        try
        {
            marker = ChatTemplate.EndOfTurnMarker(ApplyChatTemplate);
        }
        catch (EdgeTune.Core.EdgeTuneException)
        {
            return null; // no template this runtime can apply: no end-of-turn text either
        }
        if (marker is null) return null;
        var ids = Tokenize(marker, addSpecial: false, parseSpecial: true);
        return ids is [int id] && Execute(() => Session.IsEndOfGeneration(id), CancellationToken.None) ? null : marker;
    }

    public void SetAdapter(string? name)
    {
        if (name is not null && !Adapters.Contains(name))
            throw new ArgumentException($"no adapter named '{name}' (loaded: {(Adapters.Count == 0 ? "none" : string.Join(", ", Adapters))})", nameof(name));
        Execute(() =>
        {
            lock (_gate)
            {
                ObjectDisposedException.ThrowIf(IsDisposed, this);
                ApplyAdapter(name);
                ActiveAdapter = name;
            }
            return 0;
        }, CancellationToken.None);
    }

    public GenerationResult Generate(int[] promptTokens, SamplingSettings sampling, Action<string>? onText, CancellationToken cancellationToken) =>
        Execute(() => GenerateHere(promptTokens, sampling, onText, cancellationToken), cancellationToken);

    public Task<GenerationResult> GenerateAsync(int[] promptTokens, SamplingSettings sampling, Action<string>? onText, CancellationToken cancellationToken) =>
        ExecuteAsync(() => GenerateHere(promptTokens, sampling, onText, cancellationToken), cancellationToken);

    public float[] Logits(int[] tokens, int from = 0)
    {
        if (from < 0 || from >= tokens.Length) throw new ArgumentOutOfRangeException(nameof(from), from, $"must be in [0, {tokens.Length})");
        if (tokens.Length > ContextSize) throw new PromptTooLongException($"{tokens.Length} tokens exceed the context of {ContextSize}");
        return Execute(() =>
        {
            lock (_gate)
            {
                ObjectDisposedException.ThrowIf(IsDisposed, this);
                return ComputeLogits(tokens, from);
            }
        }, CancellationToken.None);
    }

    public T Run<T>(Func<IDecodeSession, T> work, CancellationToken cancellationToken = default) =>
        Execute(() =>
        {
            lock (_gate)
            {
                ObjectDisposedException.ThrowIf(IsDisposed, this);
                return work(Session);
            }
        }, cancellationToken);

    /// <summary>The one generation loop of every runtime.</summary>
    private GenerationResult GenerateHere(int[] promptTokens, SamplingSettings sampling, Action<string>? onText, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            if (promptTokens.Length == 0) throw new ArgumentException("the prompt has no tokens", nameof(promptTokens));
            int context = ContextSize;
            if (promptTokens.Length + 1 > context)
                throw new PromptTooLongException($"the prompt has {promptTokens.Length} tokens; the context holds {context}");
            string? endOfTurn = EndOfTurnText;
            var session = Session;
            var clock = Stopwatch.StartNew();
            session.Reset();
            session.Prompt(promptTokens);

            var sampler = sampling.Temperature > 0 ? new Sampler(sampling.Temperature, sampling.TopP, sampling.Seed ?? (ulong)Random.Shared.NextInt64()) : null;
            var decoder = session.NewTextDecoder();
            var stops = new StopMatcher(endOfTurn is null ? sampling.Stop : [.. sampling.Stop, endOfTurn], onText);
            var generated = new List<int>();
            string finish = "length";
            double ttft = 0;
            while (generated.Count < sampling.MaxTokens)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var logits = session.LastLogits();
                int token = sampler is null ? ReferenceModel.ArgMax(logits) : sampler.Next(logits);
                if (generated.Count == 0) ttft = clock.Elapsed.TotalMilliseconds;
                generated.Add(token);
                if (session.IsEndOfGeneration(token)) { finish = "stop"; break; }
                decoder.Add(token);
                if (stops.Push(decoder.Read())) { finish = "stop"; break; }
                if (generated.Count >= sampling.MaxTokens || session.Position + 1 >= context) break;
                session.Decode(token);
            }
            if (!stops.Stopped) stops.Flush();
            int completion = finish == "stop" && session.IsEndOfGeneration(generated[^1]) ? generated.Count - 1 : generated.Count;
            return new GenerationResult(stops.Text, promptTokens.Length, completion, finish, ttft, clock.Elapsed.TotalMilliseconds, ActiveAdapter, generated);
        }
    }

    /// <summary>Frees the runtime's resources after a generation in progress ends.</summary>
    protected abstract void Release();

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        ReleaseAfterGeneration();
        GC.SuppressFinalize(this);
    }

    /// <summary>Waits for the generation gate, then releases (a runtime with its own thread overrides to end it too).</summary>
    protected virtual void ReleaseAfterGeneration()
    {
        lock (_gate) Release();
    }

    /// <summary>Takes the gate for a release that runs inside Execute.</summary>
    protected void ReleaseUnderGate()
    {
        lock (_gate) Release();
    }
}
