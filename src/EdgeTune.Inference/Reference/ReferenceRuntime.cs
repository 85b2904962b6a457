using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Models.Adapters;
using EdgeTune.Models.Chat;
using EdgeTune.Models.Generation;
using EdgeTune.Models.Reference;
using EdgeTune.Models.Tokenizers;

namespace EdgeTune.Inference.Reference;

/// <summary>
/// EdgeTune's own reference forward (plain CPU float32, no KV cache: every step recomputes the sequence) as a
/// runtime: GGUF files and Hugging Face folders, with one LoRA adapter (PEFT folder or GGUF) merged at opening.
/// The executable spec the other runtimes are checked against; slow beyond tiny models.
/// </summary>
public sealed class ReferenceRuntime : IInferenceRuntime
{
    public static ReferenceRuntime Instance { get; } = new();

    public string Key => "reference";
    public string Description => "EdgeTune reference forward (CPU, float32)";
    public bool UsesDeviceMemory => false;

    public IInferenceModel Open(ModelOptions options, CancellationToken cancellationToken = default) => new ReferenceInferenceModel(this, options);

    /// <summary>The tokenizer of a Hugging Face folder (tokenizer.json) or a GGUF file (its metadata).</summary>
    public static ITokenizer LoadTokenizer(string path)
    {
        if (Directory.Exists(path)) return HuggingFaceTokenizer.Load(path);
        using var file = GgufFile.Open(path);
        return GgufTokenizer.FromMetadata(file.Metadata, path);
    }

    /// <summary>The chat template of a Hugging Face folder (tokenizer_config.json) or a GGUF file (tokenizer.chat_template).</summary>
    public static ChatTemplate LoadChatTemplate(string path)
    {
        if (Directory.Exists(path)) return ChatTemplate.FromHuggingFace(path);
        using var file = GgufFile.Open(path);
        return ChatTemplate.FromGguf(file.Metadata, path);
    }
}

internal sealed class ReferenceInferenceModel : InferenceModel
{
    private readonly ReferenceRuntime _runtime;
    private readonly ModelOptions _options;
    private readonly ReferenceModel _model;
    private readonly ITokenizer _tokenizer;
    private readonly HashSet<int> _endIds;
    private readonly Lazy<ChatTemplate> _template;
    private readonly StepSession _session;

    public ReferenceInferenceModel(ReferenceRuntime runtime, ModelOptions options)
    {
        _runtime = runtime;
        _options = options;
        string path = options.Path;
        if (!Directory.Exists(path) && !File.Exists(path)) throw new EdgeTuneException($"{path}: no such file or folder");
        if (options.Adapters.Count > 1)
            throw new EdgeTuneException($"{options.Adapters[1]}: the reference forward merges one adapter at opening; switching adapters needs llama.cpp");
        _tokenizer = ReferenceRuntime.LoadTokenizer(path);
        string? adapter = options.Adapters.Count == 1 ? options.Adapters[0] : null;
        _model = ReferenceModel.Open(path, ReferencePrecision.Float32, adapter is null ? null : LoraAdapter.Open(adapter));
        _endIds = Generator.EndIds(_tokenizer, _model.Config.EosTokenIds);
        _template = new Lazy<ChatTemplate>(() => ReferenceRuntime.LoadChatTemplate(path));
        ContextSize = options.ContextSize > 0 ? Math.Min(options.ContextSize, _model.Config.ContextLength) : _model.Config.ContextLength;
        string name = Path.GetFileName(Path.TrimEndingDirectorySeparator(path));
        ModelName = options.Name is { Length: > 0 } n ? n : Path.GetFileNameWithoutExtension(name);
        Description = $"reference forward: {name}" + (adapter is null ? "" : $" + {Path.GetFileName(Path.TrimEndingDirectorySeparator(adapter))}");
        if (adapter is not null) InitialAdapter(Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(adapter)));
        _session = new StepSession(this);
    }

    public override string ModelName { get; }
    public override string Description { get; }
    public override IInferenceRuntime Runtime => _runtime;
    public override InferenceCapabilities Capabilities => new(SupportsAdapters: false, UsesDeviceMemory: false);
    public override int ContextSize { get; }
    public override int VocabularySize => _model.Config.VocabSize;
    public override int? BosId => _tokenizer.BosId;
    public override IReadOnlyList<string> Adapters => ActiveAdapter is { } a ? [a] : [];
    protected override IDecodeSession Session => _session;

    /// <summary>The tokenizer (tests compare ids with it).</summary>
    public ITokenizer Tokenizer => _tokenizer;

    protected override void ApplyAdapter(string? name)
    {
        if (name != ActiveAdapter) throw new NotSupportedException($"{_options.Path}: the reference forward has its adapter merged; switching adapters needs llama.cpp");
    }

    public override string ApplyChatTemplate(IReadOnlyList<ChatMessage> messages, bool addAssistant = true) => _template.Value.Apply(messages, addAssistant);

    public override int[] Tokenize(string text, bool addSpecial = true, bool parseSpecial = true)
    {
        var ids = _tokenizer.Encode(text, addSpecial, parseSpecial).ToArray();
        // A tokenizer larger than the embedding table (a mismatched tokenizer.json) would index past it.
        if (ids.Length > 0 && ids.Max() is int top && top >= VocabularySize)
            throw new EdgeTuneException($"{_options.Path}: the tokenizer gives id {top}, but the model has {VocabularySize} embeddings (tokenizer and weights do not match)");
        return ids;
    }

    protected override float[] ComputeLogits(int[] tokens, int from)
    {
        var all = _model.Forward(tokens);
        int v = VocabularySize;
        return all.AsSpan(from * v).ToArray();
    }

    protected override void Release() { }

    private sealed class StepSession(ReferenceInferenceModel model) : IDecodeSession
    {
        private readonly List<int> _sequence = [];
        private float[]? _logits;

        public int Position => _sequence.Count;

        public void Reset()
        {
            _sequence.Clear();
            _logits = null;
        }

        public void Prompt(ReadOnlySpan<int> tokens)
        {
            if (Position + tokens.Length + 1 > model.ContextSize)
                throw new PromptTooLongException($"the prompt ({tokens.Length} tokens after {Position}) does not fit the context ({model.ContextSize})");
            foreach (int t in tokens) _sequence.Add(t);
            _logits = model._model.LastLogits(_sequence.ToArray());
        }

        public void Decode(int token)
        {
            if (Position + 1 > model.ContextSize) throw new EdgeTuneException($"the context ({model.ContextSize} tokens) is full");
            _sequence.Add(token);
            _logits = model._model.LastLogits(_sequence.ToArray());
        }

        public ReadOnlySpan<float> LastLogits() => _logits ?? throw new InvalidOperationException("no logits yet: evaluate a prompt first");

        public bool IsEndOfGeneration(int token) => model._endIds.Contains(token);

        public ITextDecoder NewTextDecoder() => new IncrementalDecoder(model._tokenizer);

        public RuntimeTimings? Timings => null;

        public IReadOnlyDictionary<string, string> Details => new Dictionary<string, string> { ["precision"] = "float32", ["kv_cache"] = "none" };
    }

    /// <summary>
    /// Decodes the whole generated sequence each time (pieces can depend on their neighbours, e.g. SentencePiece's
    /// leading space) and hands out only the new text, holding it back while it ends in an incomplete character.
    /// </summary>
    private sealed class IncrementalDecoder(ITokenizer tokenizer) : ITextDecoder
    {
        private readonly List<int> _ids = [];
        private string _text = "";
        private int _emitted;

        public void Add(int token)
        {
            _ids.Add(token);
            _text = tokenizer.Decode(_ids);
        }

        public string Read()
        {
            if (_text.EndsWith('\uFFFD') || _text.Length <= _emitted) return "";
            string piece = _text[_emitted..];
            _emitted = _text.Length;
            return piece;
        }
    }
}
