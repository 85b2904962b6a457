using System.Diagnostics;
using System.Text;
using EdgeTune.Agent.Config;
using EdgeTune.Core;
using LLama;
using LLama.Common;
using LLama.Native;
using LLama.Sampling;

namespace EdgeTune.Agent.Serving;

/// <summary>
/// A GGUF served by llama.cpp through LLamaSharp: one base model, one context reused across requests (cleared
/// each time), and zero or more LoRA adapters loaded once and switched on the context without reloading the base.
/// Every llama.cpp load, decode and free runs on the runtime's own <see cref="InferenceThread"/>, whoever calls;
/// <see cref="Dispose"/> frees the context, the adapters' model and that thread.
/// </summary>
public sealed class LlamaSharpRuntime : ITextRuntime
{
    private static readonly Lock InitLock = new();
    private static bool _initialised;

    private readonly LLamaWeights _weights;
    private readonly LLamaContext _context;
    private readonly Dictionary<string, LoraAdapter> _adapters = new(StringComparer.Ordinal);
    private readonly ModelConfig _config;
    private readonly Lock _lock = new();
    private readonly InferenceThread _thread;
    private int _disposed;

    /// <summary>Loads llama.cpp (the configured native library when there is one) once per process.</summary>
    public static void EnsureNativeLoaded(string? nativeLibrary)
    {
        lock (InitLock)
        {
            if (_initialised) return;
            if (nativeLibrary is not null) NativeLibraryConfig.All.WithLibrary(nativeLibrary, null);
            NativeApi.llama_empty_call(); // registers LLamaSharp's native-library resolver and loads llama.cpp
            NativeLogConfig.llama_log_set((_, _) => { });
            _initialised = true;
        }
    }

    public LlamaSharpRuntime(ModelConfig config)
    {
        _config = config;
        _thread = new InferenceThread("llama.cpp " + Path.GetFileName(config.Path));
        try
        {
            (_weights, _context) = _thread.Run(Load);
        }
        catch
        {
            _thread.Dispose();
            throw;
        }
    }

    /// <summary>The managed id of the thread that runs llama.cpp for this runtime.</summary>
    public int InferenceThreadId => _thread.ManagedThreadId;

    /// <summary>Whether the inference thread is still running (it ends on <see cref="Dispose"/>).</summary>
    internal bool InferenceThreadAlive => _thread.IsAlive;

    private (LLamaWeights, LLamaContext) Load()
    {
        var config = _config;
        EnsureNativeLoaded(config.NativeLibrary);
        var parameters = new ModelParams(config.Path)
        {
            ContextSize = (uint)config.Context,
            BatchSize = (uint)Math.Min(config.Batch, config.Context),
            GpuLayerCount = NativeApi.llama_supports_gpu_offload() ? config.GpuLayers : 0,
            Threads = config.Threads,
            BatchThreads = config.Threads,
        };
        LLamaWeights weights;
        try
        {
            weights = LLamaWeights.LoadFromFile(parameters);
        }
        catch (LLama.Exceptions.LoadWeightsFailedException)
        {
            throw new EdgeTuneException($"{config.Path}: llama.cpp refused to load the model");
        }
        LLamaContext? context = null;
        try
        {
            context = weights.CreateContext(parameters);
            foreach (var path in config.Adapters)
            {
                string name = Path.GetFileNameWithoutExtension(path);
                try
                {
                    _adapters[name] = weights.NativeHandle.LoadLoraFromFile(path);
                }
                catch (Exception e) when (e is LLama.Exceptions.RuntimeError or InvalidOperationException)
                {
                    throw new EdgeTuneException($"{path}: llama.cpp refused to load the LoRA adapter ({e.Message})");
                }
            }
            if (_adapters.Count > 0)
            {
                context.NativeHandle.SetLoraAdapters([(_adapters.Values.First(), 1f)]);
                ActiveAdapter = _adapters.Keys.First();
            }
            return (weights, context);
        }
        catch
        {
            context?.Dispose();
            weights.Dispose();
            throw;
        }
    }

    public string ModelName => _config.Name;
    public int ContextSize => (int)_context.ContextSize;
    public IReadOnlyList<string> Adapters => [.. _adapters.Keys];
    public string? ActiveAdapter { get; private set; }

    public void SetAdapter(string? name)
    {
        lock (_lock)
        {
            if (name is null) _context.NativeHandle.SetLoraAdapters([]);
            else if (_adapters.TryGetValue(name, out var adapter)) _context.NativeHandle.SetLoraAdapters([(adapter, 1f)]);
            else throw new ArgumentException($"no adapter named '{name}' (loaded: {string.Join(", ", _adapters.Keys)})", nameof(name));
            ActiveAdapter = name;
        }
    }

    public string ApplyChatTemplate(IReadOnlyList<ChatMessage> messages)
    {
        // The model's own template (tokenizer.chat_template); llama.cpp falls back to ChatML when the model has none.
        var template = new LLamaTemplate(_weights.NativeHandle, null, false) { AddAssistant = true };
        foreach (var m in messages) template.Add(m.Role, m.Content);
        return Encoding.UTF8.GetString(template.Apply());
    }

    public int[] Tokenize(string prompt)
    {
        var tokens = _weights.NativeHandle.Tokenize(prompt, _weights.Vocab.ShouldAddBOS, true, Encoding.UTF8);
        return tokens.Select(t => (int)t).ToArray();
    }

    /// <summary>Blocks the caller while the runtime's inference thread generates.</summary>
    public GenerationResult Generate(int[] promptTokens, SamplingSettings sampling, Action<string> onText, CancellationToken cancellationToken) =>
        _thread.Run(() => GenerateOnThread(promptTokens, sampling, onText, cancellationToken), cancellationToken);

    /// <summary>Queues the generation on the runtime's inference thread; no thread-pool thread waits for it.</summary>
    public Task<GenerationResult> GenerateAsync(int[] promptTokens, SamplingSettings sampling, Action<string> onText, CancellationToken cancellationToken) =>
        _thread.RunAsync(() => GenerateOnThread(promptTokens, sampling, onText, cancellationToken), cancellationToken);

    private GenerationResult GenerateOnThread(int[] promptTokens, SamplingSettings sampling, Action<string> onText, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        lock (_lock)
        {
            int context = ContextSize;
            if (promptTokens.Length + 1 > context)
                throw new PromptTooLongException($"the prompt has {promptTokens.Length} tokens; the context holds {context}");
            var handle = _context.NativeHandle;
            handle.MemoryClear(true);
            var clock = Stopwatch.StartNew();
            var batch = new LLamaBatch();
            int batchSize = (int)_context.BatchSize;
            for (int start = 0; start < promptTokens.Length; start += batchSize)
            {
                cancellationToken.ThrowIfCancellationRequested();
                int count = Math.Min(batchSize, promptTokens.Length - start);
                batch.Clear();
                for (int i = 0; i < count; i++)
                    batch.Add((LLamaToken)promptTokens[start + i], start + i, LLamaSeqId.Zero, logits: start + i == promptTokens.Length - 1);
                Decode(handle, batch);
            }
            int logitsIndex = batch.TokenCount - 1;
            int position = promptTokens.Length;

            using var sampler = sampling.Temperature > 0
                ? new DefaultSamplingPipeline { Temperature = sampling.Temperature, TopP = sampling.TopP, Seed = sampling.Seed ?? (uint)Random.Shared.Next() }
                : null;
            var decoder = new StreamingTokenDecoder(Encoding.UTF8, _weights);
            var vocab = _weights.Vocab;
            var stops = new StopMatcher(sampling.Stop, onText);
            string finish = "length";
            int generated = 0;
            double ttft = 0;
            while (generated < sampling.MaxTokens)
            {
                cancellationToken.ThrowIfCancellationRequested();
                LLamaToken token = sampler is null ? Greedy(handle, logitsIndex) : sampler.Sample(handle, logitsIndex);
                if (generated == 0) ttft = clock.Elapsed.TotalMilliseconds;
                if (token.IsEndOfGeneration(vocab)) { finish = "stop"; break; }
                generated++;
                decoder.Add(token);
                if (stops.Push(decoder.Read())) { finish = "stop"; break; }
                if (generated >= sampling.MaxTokens || position + 1 >= context) { finish = "length"; break; }
                batch.Clear();
                batch.Add(token, position++, LLamaSeqId.Zero, logits: true);
                Decode(handle, batch);
                logitsIndex = 0;
            }
            if (finish == "length" || !stops.Stopped) stops.Flush();
            return new GenerationResult(stops.Text, promptTokens.Length, generated, finish, ttft, clock.Elapsed.TotalMilliseconds);
        }
    }

    private static LLamaToken Greedy(SafeLLamaContextHandle handle, int index)
    {
        var logits = handle.GetLogitsIth(index);
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        return (LLamaToken)best;
    }

    private void Decode(SafeLLamaContextHandle handle, LLamaBatch batch)
    {
        var result = handle.Decode(batch);
        if (result != DecodeResult.Ok) throw new EdgeTuneException($"{_config.Path}: llama_decode failed ({result})");
    }

    /// <summary>Waits for a generation in progress, frees the context and the model on the inference thread, then ends that thread.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        try
        {
            _thread.Run(() =>
            {
                lock (_lock)
                {
                    _context.Dispose();
                    _weights.Dispose();
                }
                return 0;
            });
        }
        finally
        {
            _thread.Dispose();
        }
    }
}

/// <summary>
/// Applies OpenAI stop sequences to streamed text: text is passed on only once it cannot be the start of a stop
/// sequence; when one appears, the text before it is the answer and generation ends.
/// </summary>
internal sealed class StopMatcher(IReadOnlyList<string> stops, Action<string> onText)
{
    private readonly StringBuilder _all = new();
    private int _emitted;

    public bool Stopped { get; private set; }

    /// <summary>The answer so far (everything before a stop sequence).</summary>
    public string Text => _all.ToString();

    /// <summary>Adds text; true when a stop sequence has been reached.</summary>
    public bool Push(string piece)
    {
        _all.Append(piece);
        string text = _all.ToString();
        int cut = -1;
        foreach (var stop in stops)
        {
            if (stop.Length == 0) continue;
            int at = text.IndexOf(stop, Math.Max(0, _emitted - stop.Length + 1), StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut)) cut = at;
        }
        if (cut >= 0)
        {
            _all.Length = cut;
            if (cut > _emitted) onText(text[_emitted..cut]);
            _emitted = Math.Max(_emitted, cut);
            Stopped = true;
            return true;
        }
        // Hold back the longest tail that could still grow into a stop sequence.
        int hold = 0;
        foreach (var stop in stops)
            for (int k = Math.Min(stop.Length - 1, text.Length); k > hold; k--)
                if (text.EndsWith(stop[..k], StringComparison.Ordinal)) { hold = k; break; }
        int safe = text.Length - hold;
        if (safe > _emitted)
        {
            onText(text[_emitted..safe]);
            _emitted = safe;
        }
        return false;
    }

    public void Flush()
    {
        string text = _all.ToString();
        if (text.Length > _emitted) onText(text[_emitted..]);
        _emitted = text.Length;
    }
}
