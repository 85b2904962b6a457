using System.Globalization;
using System.Text;
using EdgeTune.Core;
using EdgeTune.Models.Chat;
using LLama;
using LLama.Common;
using LLama.Extensions;
using LLama.Native;

namespace EdgeTune.Inference.LlamaCpp;

/// <summary>
/// A GGUF in llama.cpp: one base model, one context reused across generations (cleared each time), and zero or more
/// LoRA adapters loaded once and switched on the context without reloading the base. Every llama.cpp load, decode
/// and free runs on the model's own <see cref="InferenceThread"/>, whoever calls (the OpenMP finding, see there);
/// <see cref="IDisposable.Dispose"/> frees the context, the model and that thread.
/// </summary>
public sealed class LlamaCppModel : InferenceModel
{
    private readonly LlamaCppRuntime _runtime;
    private readonly ModelOptions _options;
    private readonly InferenceThread _thread;
    private readonly Dictionary<string, LoraAdapter> _adapters = new(StringComparer.Ordinal);
    private LLamaWeights _weights = null!;
    private SafeLLamaContextHandle _context = null!;
    private StepSession _session = null!;
    private SlotSession? _slots;
    private int _contextSize;
    private int _batch;

    internal LlamaCppModel(LlamaCppRuntime runtime, ModelOptions options)
    {
        _runtime = runtime;
        _options = options;
        if (!File.Exists(options.Path)) throw new EdgeTuneException($"{options.Path}: no such file");
        foreach (var adapter in options.Adapters)
            if (!File.Exists(adapter)) throw new EdgeTuneException($"{adapter}: no such file (llama.cpp takes GGUF LoRA adapters)");
        ModelName = options.Name is { Length: > 0 } name ? name : Path.GetFileNameWithoutExtension(options.Path);
        _thread = new InferenceThread("llama.cpp " + Path.GetFileName(options.Path));
        try
        {
            _thread.Run(Load);
        }
        catch
        {
            _thread.Dispose();
            throw;
        }
        Description = $"llama.cpp: {Path.GetFileName(options.Path)}" + (options.Adapters.Count == 0 ? "" : " + " + string.Join(" + ", options.Adapters.Select(Path.GetFileName)));
    }

    private int Load()
    {
        var o = _options;
        var probe = new ModelParams(o.Path) { GpuLayerCount = _runtime.Gpu ? o.GpuLayers : 0, VocabOnly = false };
        try
        {
            _weights = LLamaWeights.LoadFromFile(probe);
        }
        catch (LLama.Exceptions.LoadWeightsFailedException)
        {
            throw new EdgeTuneException($"{o.Path}: llama.cpp refused to load the model");
        }
        try
        {
            _contextSize = o.ContextSize > 0 ? o.ContextSize : Math.Min(_weights.ContextSize > 0 ? _weights.ContextSize : 2048, o.MaxContext);
            _batch = o.BatchSize > 0 ? Math.Min(o.BatchSize, _contextSize) : _contextSize;
            // Parallel sequences: each has a KV cache of the full context of its own (llama.cpp splits a non-unified
            // cache evenly between n_seq_max sequences), so a request's room does not depend on what else runs.
            int parallel = Math.Clamp(o.Parallel, 1, MaxParallel);
            int passTokens = Math.Max(_batch, parallel); // a decoding pass holds one token of every sequence
            var parameters = new ModelParams(o.Path)
            {
                ContextSize = (uint)(_contextSize * parallel),
                SeqMax = (uint)parallel,
                KVUnified = parallel == 1,
                BatchSize = (uint)passTokens,
                UBatchSize = (uint)(o.Exact ? passTokens : Math.Min(Math.Max(o.MicroBatchSize, parallel), passTokens)),
                Threads = o.Threads,
                BatchThreads = o.Threads,
                TypeK = o.Exact ? GGMLType.GGML_TYPE_F32 : (GGMLType)(int)o.KvType,
                TypeV = o.Exact ? GGMLType.GGML_TYPE_F32 : (GGMLType)(int)o.KvType,
            };
            if (o.Exact) parameters.FlashAttention = false;
            // From native parameters, so llama.cpp keeps its perf counters (LLamaSharp turns them off); bench reads them.
            parameters.ToLlamaContextParams(out var native);
            native.no_perf = false;
            _context = SafeLLamaContextHandle.Create(_weights.NativeHandle, native);
            foreach (var path in o.Adapters)
            {
                try
                {
                    _adapters[Path.GetFileNameWithoutExtension(path)] = _weights.NativeHandle.LoadLoraFromFile(path);
                }
                catch (Exception e) when (e is LLama.Exceptions.RuntimeError or InvalidOperationException)
                {
                    throw new EdgeTuneException($"{path}: llama.cpp refused to load the LoRA adapter ({e.Message})");
                }
            }
            if (_adapters.Count > 0)
            {
                _context.SetLoraAdapters([(_adapters.Values.First(), 1f)]);
                InitialAdapter(_adapters.Keys.First());
            }
            _session = new StepSession(this);
            if (parallel > 1) _slots = new SlotSession(this, parallel);
            return 0;
        }
        catch
        {
            _context?.Dispose();
            _weights.Dispose();
            throw;
        }
    }

    public override string ModelName { get; }
    public override string Description { get; }
    public override IInferenceRuntime Runtime => _runtime;
    public override InferenceCapabilities Capabilities => new(SupportsAdapters: true, UsesDeviceMemory: _runtime.Gpu && _options.GpuLayers > 0);
    public override int ContextSize => _contextSize;
    public override int VocabularySize => _weights.Vocab.Count;
    public override int? BosId => _weights.Vocab.BOS is { } b ? (int)b : null;
    public override IReadOnlyList<string> Adapters => [.. _adapters.Keys];

    /// <summary>The managed id of the thread that runs llama.cpp for this model.</summary>
    public int InferenceThreadId => _thread.ManagedThreadId;

    /// <summary>Whether the inference thread is still running (it ends on Dispose).</summary>
    public bool InferenceThreadAlive => _thread.IsAlive;

    protected override IDecodeSession Session => _session;

    /// <summary>The most sequences one context decodes together (llama.cpp's LLAMA_MAX_SEQ is 256; a board serves far fewer).</summary>
    public const int MaxParallel = 64;

    protected override IBatchedSession? BatchedSession => _slots;

    protected override bool OnRuntimeThread => _thread.IsCurrent;

    protected override T Execute<T>(Func<T> work, CancellationToken cancellationToken) => _thread.Run(work, cancellationToken);

    protected override Task<T> ExecuteAsync<T>(Func<T> work, CancellationToken cancellationToken) => _thread.RunAsync(work, cancellationToken);

    protected override void ApplyAdapter(string? name)
    {
        if (name is null) _context.SetLoraAdapters([]);
        else _context.SetLoraAdapters([(_adapters[name], 1f)]);
    }

    public override string ApplyChatTemplate(IReadOnlyList<ChatMessage> messages, bool addAssistant = true)
    {
        // The model's own template (tokenizer.chat_template); llama.cpp falls back to ChatML when the model has none.
        var template = new LLamaTemplate(_weights.NativeHandle, null, false) { AddAssistant = addAssistant };
        foreach (var m in messages) template.Add(m.Role, m.Content);
        try
        {
            return Encoding.UTF8.GetString(template.Apply());
        }
        catch (Exception e) when (e is not EdgeTuneException)
        {
            throw new EdgeTuneException($"{_options.Path}: llama.cpp cannot apply the model's chat template ({e.Message})", e);
        }
    }

    public override int[] Tokenize(string text, bool addSpecial = true, bool parseSpecial = true)
    {
        var tokens = _weights.NativeHandle.Tokenize(text, addSpecial && _weights.Vocab.ShouldAddBOS, parseSpecial, Encoding.UTF8);
        var ids = new int[tokens.Length];
        for (int i = 0; i < ids.Length; i++) ids[i] = (int)tokens[i];
        return ids;
    }

    protected override float[] ComputeLogits(int[] tokens, int from)
    {
        var s = _session;
        s.Reset();
        int vocabulary = VocabularySize;
        var result = new float[(tokens.Length - from) * vocabulary];
        var batch = new LLamaBatch();
        for (int start = 0; start < tokens.Length; start += _batch)
        {
            int count = Math.Min(_batch, tokens.Length - start);
            batch.Clear();
            for (int i = 0; i < count; i++) batch.Add((LLamaToken)tokens[start + i], start + i, LLamaSeqId.Zero, logits: start + i >= from);
            s.Run(batch, start);
            // Logits are kept for the flagged positions; GetLogitsIth takes the index in the batch.
            for (int i = Math.Max(0, from - start); i < count; i++)
                _context.GetLogitsIth(i).CopyTo(result.AsSpan((start + i - from) * vocabulary, vocabulary));
        }
        s.Reset();
        return result;
    }

    protected override void ReleaseAfterGeneration()
    {
        try
        {
            _thread.Run(() =>
            {
                ReleaseUnderGate();
                return 0;
            });
        }
        finally
        {
            _thread.Dispose();
        }
    }

    protected override void Release()
    {
        _context.Dispose();
        _weights.Dispose();
    }

    /// <summary>The context driven step by step; its methods run on the inference thread (callers are inside Execute).</summary>
    private sealed class StepSession(LlamaCppModel model) : IDecodeSession
    {
        private readonly LLamaBatch _batch = new();
        private int _logitsIndex = -1;

        public int Position { get; private set; }

        public void Reset()
        {
            model._context.MemoryClear(true);
            model._context.ResetTimings();
            Position = 0;
            _logitsIndex = -1;
        }

        public void Prompt(ReadOnlySpan<int> tokens)
        {
            if (Position + tokens.Length + 1 > model._contextSize)
                throw new PromptTooLongException($"the prompt ({tokens.Length} tokens after {Position}) does not fit the context ({model._contextSize})");
            for (int start = 0; start < tokens.Length; start += model._batch)
            {
                int count = Math.Min(model._batch, tokens.Length - start);
                _batch.Clear();
                for (int i = 0; i < count; i++)
                    _batch.Add((LLamaToken)tokens[start + i], Position + i, LLamaSeqId.Zero, logits: start + i == tokens.Length - 1);
                Run(_batch, Position);
                Position += count;
                _logitsIndex = count - 1;
            }
        }

        public void Decode(int token)
        {
            if (Position + 1 > model._contextSize) throw new EdgeTuneException($"the context ({model._contextSize} tokens) is full");
            _batch.Clear();
            _batch.Add((LLamaToken)token, Position, LLamaSeqId.Zero, logits: true);
            Run(_batch, Position);
            Position++;
            _logitsIndex = 0;
        }

        public void Run(LLamaBatch batch, int position)
        {
            var result = model._context.Decode(batch);
            if (result != DecodeResult.Ok) throw new EdgeTuneException($"{model._options.Path}: llama_decode failed ({result}) at position {position}");
        }

        public ReadOnlySpan<float> LastLogits()
        {
            if (_logitsIndex < 0) throw new InvalidOperationException("no logits yet: evaluate a prompt first");
            return model._context.GetLogitsIth(_logitsIndex);
        }

        public bool IsEndOfGeneration(int token) => ((LLamaToken)token).IsEndOfGeneration(model._weights.Vocab);

        public ITextDecoder NewTextDecoder() => new Decoder(new StreamingTokenDecoder(Encoding.UTF8, model._weights));

        public RuntimeTimings? Timings
        {
            get
            {
                var t = model._context.GetTimings();
                return new RuntimeTimings(t.PromptEval.TotalMilliseconds, t.PrompTokensEvaluated, t.Eval.TotalMilliseconds, t.TokensEvaluated);
            }
        }

        public IReadOnlyDictionary<string, string> Details => new Dictionary<string, string>
        {
            ["threads"] = model._options.Threads.ToString(CultureInfo.InvariantCulture),
            ["batch"] = model._batch.ToString(CultureInfo.InvariantCulture),
            ["ubatch"] = (model._options.Exact ? model._batch : Math.Min(model._options.MicroBatchSize, model._batch)).ToString(CultureInfo.InvariantCulture),
            ["flash_attention"] = model._options.Exact ? "off" : "auto",
            ["model_bytes"] = model._weights.SizeInBytes.ToString(CultureInfo.InvariantCulture),
            ["system_info"] = LlamaCppNative.SystemInfo(),
        };
    }

    /// <summary>
    /// The context's sequences as slots (slot i is llama.cpp's sequence id i); its methods run on the inference
    /// thread, inside the scheduler.
    /// </summary>
    private sealed class SlotSession(LlamaCppModel model, int slots) : IBatchedSession
    {
        private readonly LLamaBatch _batch = new();
        private readonly int[] _positions = new int[slots];
        private readonly int[] _logitsIndex = new int[slots];

        public int Slots => slots;

        public int Position(int slot) => _positions[slot];

        public void Prompt(int slot, ReadOnlySpan<int> tokens)
        {
            Clear(slot);
            if (tokens.Length + 1 > model._contextSize)
                throw new PromptTooLongException($"the prompt ({tokens.Length} tokens) does not fit the context ({model._contextSize})");
            var sequence = (LLamaSeqId)slot;
            for (int start = 0; start < tokens.Length; start += model._batch)
            {
                int count = Math.Min(model._batch, tokens.Length - start);
                _batch.Clear();
                for (int i = 0; i < count; i++)
                    _batch.Add((LLamaToken)tokens[start + i], start + i, sequence, logits: start + i == tokens.Length - 1);
                model._session.Run(_batch, start);
                _logitsIndex[slot] = count - 1;
            }
            _positions[slot] = tokens.Length;
        }

        public void Decode(ReadOnlySpan<(int Slot, int Token)> step)
        {
            _batch.Clear();
            for (int i = 0; i < step.Length; i++)
            {
                var (slot, token) = step[i];
                if (_positions[slot] + 1 > model._contextSize) throw new EdgeTuneException($"the context ({model._contextSize} tokens) of sequence {slot} is full");
                _batch.Add((LLamaToken)token, _positions[slot], (LLamaSeqId)slot, logits: true);
                _logitsIndex[slot] = i;
            }
            model._session.Run(_batch, step.Length == 0 ? 0 : _positions[step[0].Slot]);
            foreach (var (slot, _) in step) _positions[slot]++;
        }

        public ReadOnlySpan<float> Logits(int slot) => model._context.GetLogitsIth(_logitsIndex[slot]);

        public void Clear(int slot)
        {
            model._context.MemorySequenceRemove((LLamaSeqId)slot, -1, -1);
            _positions[slot] = 0;
        }
    }

    private sealed class Decoder(StreamingTokenDecoder inner) : ITextDecoder
    {
        public void Add(int token) => inner.Add((LLamaToken)token);
        public string Read() => inner.Read();
    }
}
