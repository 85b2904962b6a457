using EdgeTune.Models.Chat;

namespace EdgeTune.Inference;

/// <summary>
/// What every runtime shares: the generation loop (prompt, sample, decode, stop at end-of-generation tokens, stop
/// sequences and the template's end-of-turn text), one generation at a time or, for a runtime with a
/// <see cref="BatchedSession"/>, several decoded together by one scheduler; adapter switches between generations.
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
        BatchedSession is not null && !OnRuntimeThread
            ? Enqueue(promptTokens, sampling, onText, cancellationToken).GetAwaiter().GetResult()
            : Execute(() => GenerateHere(promptTokens, sampling, onText, cancellationToken), cancellationToken);

    public Task<GenerationResult> GenerateAsync(int[] promptTokens, SamplingSettings sampling, Action<string>? onText, CancellationToken cancellationToken) =>
        BatchedSession is not null && !OnRuntimeThread
            ? Enqueue(promptTokens, sampling, onText, cancellationToken)
            : ExecuteAsync(() => GenerateHere(promptTokens, sampling, onText, cancellationToken), cancellationToken);

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

    /// <summary>The sequential generation loop: one generation alone in the context.</summary>
    private GenerationResult GenerateHere(int[] promptTokens, SamplingSettings sampling, Action<string>? onText, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            CheckPrompt(promptTokens);
            var session = Session;
            var generation = NewGeneration(promptTokens, sampling, onText);
            session.Reset();
            session.Prompt(promptTokens);
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (!generation.Step(session.LastLogits(), session.Position)) break;
                session.Decode(generation.NextToken);
            }
            return generation.Finish(ActiveAdapter);
        }
    }

    private void CheckPrompt(int[] promptTokens)
    {
        if (promptTokens.Length == 0) throw new ArgumentException("the prompt has no tokens", nameof(promptTokens));
        if (promptTokens.Length + 1 > ContextSize)
            throw new PromptTooLongException($"the prompt has {promptTokens.Length} tokens; the context holds {ContextSize}");
    }

    private SequenceGeneration NewGeneration(int[] promptTokens, SamplingSettings sampling, Action<string>? onText)
    {
        var session = Session;
        return new SequenceGeneration(promptTokens, sampling, onText, EndOfTurnText, ContextSize, session.NewTextDecoder(), session.IsEndOfGeneration);
    }

    // ---- Batched generation: up to Parallel sequences decoded together -------------------------------------------

    /// <summary>The runtime's batched session when it decodes several sequences together, or null (sequential only).</summary>
    protected virtual IBatchedSession? BatchedSession => null;

    /// <summary>Whether the caller is the thread where the runtime's native calls run (where waiting on the scheduler would deadlock).</summary>
    protected virtual bool OnRuntimeThread => false;

    public virtual int Parallel => BatchedSession?.Slots ?? 1;

    /// <summary>The most sequences evaluated in one batched pass since opening (tests and benchmarks check that requests were decoded together).</summary>
    public int PeakSequencesPerPass { get; private set; }

    /// <summary>Batched passes run and tokens evaluated in them since opening (their ratio: sequences per pass on average).</summary>
    public long BatchedPasses { get; private set; }

    /// <inheritdoc cref="BatchedPasses"/>
    public long BatchedTokens { get; private set; }

    private sealed record Waiting(int[] Prompt, SamplingSettings Sampling, Action<string>? OnText, TaskCompletionSource<GenerationResult> Done, CancellationToken Cancellation);

    private readonly Lock _waitingLock = new();
    private readonly Queue<Waiting> _waiting = new();
    private bool _schedulerRunning;

    private Task<GenerationResult> Enqueue(int[] promptTokens, SamplingSettings sampling, Action<string>? onText, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        CheckPrompt(promptTokens);
        var waiting = new Waiting(promptTokens, sampling, onText, new TaskCompletionSource<GenerationResult>(TaskCreationOptions.RunContinuationsAsynchronously), cancellationToken);
        bool start;
        lock (_waitingLock)
        {
            _waiting.Enqueue(waiting);
            start = !_schedulerRunning;
            _schedulerRunning = true;
        }
        if (start) StartScheduler();
        return waiting.Done.Task;
    }

    private void StartScheduler()
    {
        try
        {
            _ = ExecuteAsync(Schedule, CancellationToken.None);
        }
        catch (ObjectDisposedException e)
        {
            // The runtime's thread has ended (the model was disposed meanwhile): nobody will serve the waiting requests.
            List<Waiting> orphans;
            lock (_waitingLock)
            {
                orphans = [.. _waiting];
                _waiting.Clear();
                _schedulerRunning = false;
            }
            foreach (var w in orphans) w.Done.TrySetException(e);
        }
    }

    /// <summary>A generation in a slot: the request and its state.</summary>
    private sealed record Running(int Slot, Waiting Request, SequenceGeneration Generation);

    /// <summary>
    /// Runs where the native calls run until no generation is running or waiting: admits waiting requests into free
    /// slots (each prompt evaluated alone in its slot), then evaluates the next token of every running sequence in
    /// one pass. Each request's cancellation ends only its own sequence.
    /// </summary>
    private int Schedule()
    {
        lock (_gate)
        {
            var batch = BatchedSession!;
            var free = new Stack<int>(Enumerable.Range(0, batch.Slots).Reverse());
            var running = new List<Running>();
            while (true)
            {
                try
                {
                    RunUntilIdle(batch, free, running);
                    return 0;
                }
                catch (Exception e)
                {
                    // A pass failed (llama_decode): the sequences in it fail with it; waiting requests are served afresh.
                    foreach (var r in running)
                    {
                        Release(r.Slot, batch, free);
                        Fail(r.Request, e);
                    }
                    running.Clear();
                }
            }
        }
    }

    private void RunUntilIdle(IBatchedSession batch, Stack<int> free, List<Running> running)
    {
        var step = new List<(int Slot, int Token)>();
        while (true)
        {
            // Admit, choosing each newcomer's first token at once (the next evaluation overwrites its logits).
            while (free.Count > 0 && TakeWaiting() is { } request)
                if (Admit(request, batch, free) is { } admitted) running.Add(admitted);
            if (running.Count == 0)
            {
                lock (_waitingLock)
                {
                    if (_waiting.Count > 0) continue;
                    _schedulerRunning = false;
                    return;
                }
            }

            step.Clear();
            foreach (var r in running) step.Add((r.Slot, r.Generation.NextToken));
            if (step.Count > PeakSequencesPerPass) PeakSequencesPerPass = step.Count;
            BatchedPasses++;
            BatchedTokens += step.Count;
            batch.Decode(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(step));
            for (int i = running.Count - 1; i >= 0; i--)
            {
                var r = running[i];
                try
                {
                    r.Request.Cancellation.ThrowIfCancellationRequested();
                    if (r.Generation.Step(batch.Logits(r.Slot), batch.Position(r.Slot))) continue;
                    Release(r.Slot, batch, free);
                    r.Request.Done.TrySetResult(r.Generation.Finish(ActiveAdapter));
                }
                catch (Exception e)
                {
                    Release(r.Slot, batch, free);
                    Fail(r.Request, e);
                }
                running.RemoveAt(i);
            }
        }
    }

    /// <summary>Evaluates the request's prompt in a free slot and chooses its first token; null when it is already done (or failed).</summary>
    private Running? Admit(Waiting request, IBatchedSession batch, Stack<int> free)
    {
        if (request.Cancellation.IsCancellationRequested)
        {
            request.Done.TrySetCanceled(request.Cancellation);
            return null;
        }
        if (IsDisposed)
        {
            request.Done.TrySetException(new ObjectDisposedException(GetType().FullName, "the model has been unloaded"));
            return null;
        }
        int slot = free.Pop();
        try
        {
            var generation = NewGeneration(request.Prompt, request.Sampling, request.OnText);
            batch.Prompt(slot, request.Prompt);
            if (generation.Step(batch.Logits(slot), batch.Position(slot))) return new Running(slot, request, generation);
            Release(slot, batch, free);
            request.Done.TrySetResult(generation.Finish(ActiveAdapter));
        }
        catch (Exception e)
        {
            Release(slot, batch, free);
            Fail(request, e);
        }
        return null;
    }

    private static void Release(int slot, IBatchedSession batch, Stack<int> free)
    {
        batch.Clear(slot);
        free.Push(slot);
    }

    private Waiting? TakeWaiting()
    {
        lock (_waitingLock) return _waiting.Count > 0 ? _waiting.Dequeue() : null;
    }

    private static void Fail(Waiting request, Exception e)
    {
        if (e is OperationCanceledException oce) request.Done.TrySetCanceled(oce.CancellationToken);
        else request.Done.TrySetException(e);
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
