using System.Reflection;
using EdgeTune.Core;
using EdgeTune.Formats.Onnx;
using EdgeTune.Models.Chat;
using EdgeTune.Models.Tokenizers;
using ByteLevel = EdgeTune.Models.Tokenizers.ByteLevel;
using Microsoft.ML.OnnxRuntimeGenAI;

namespace EdgeTune.Inference.Onnx;

/// <summary>
/// ONNX Runtime GenAI (NuGet Microsoft.ML.OnnxRuntimeGenAI): an exported model folder on the CPU. The NuGet CUDA
/// build exists for linux-x64 and Windows only, so on a Jetson (linux-arm64) this runs on the CPU.
/// </summary>
public sealed class OnnxGenAiRuntime : IInferenceRuntime
{
    public static OnnxGenAiRuntime Default { get; } = new();

    public string Key => "onnxruntime_cpu"; // the device profiles' [runtimes] key

    public string Description => $"ONNX Runtime GenAI {Version} (CPU)";

    public bool UsesDeviceMemory => false;

    public IInferenceModel Open(ModelOptions options, CancellationToken cancellationToken = default) => new OnnxGenAiModel(this, options);

    private static string Version =>
        typeof(Model).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "(unknown version)";
}

/// <summary>
/// An exported folder in ONNX Runtime GenAI: the folder is checked by <see cref="OnnxFolder.Validate"/> first (one-line
/// errors instead of the runtime's), then GenAI runs the graph and keeps the KV cache. Tokenizing, detokenizing and
/// the chat template are EdgeTune's own (Hugging Face tokenizer.json, llama.cpp's template engine), the same as for
/// training and for llama.cpp, so both runtimes see the same ids. Sampling and stops are the shared loop's.
/// LoRA adapters are merged at export; there is no switch.
/// </summary>
public sealed class OnnxGenAiModel : InferenceModel
{
    private readonly OnnxGenAiRuntime _runtime;
    private readonly string _folder;
    private readonly GenAiDecoderConfig _config;
    private readonly Config _genAiConfig;
    private readonly Model _model;
    private readonly HuggingFaceTokenizer? _tokenizer;
    private readonly ChatTemplate? _template;
    private readonly HashSet<int> _endIds;
    private readonly StepSession _session;

    internal OnnxGenAiModel(OnnxGenAiRuntime runtime, ModelOptions options)
    {
        _runtime = runtime;
        _folder = options.Path;
        if (options.Adapters.Count > 0)
            throw new EdgeTuneException($"{options.Path}: an ONNX model has its adapter merged at export ('edgetune export onnx --adapter'); adapter switching is a GGUF feature");
        (_config, _) = OnnxFolder.Validate(options.Path);
        ModelName = options.Name is { Length: > 0 } name ? name : Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(options.Path)));
        ContextSize = options.ContextSize > 0 ? Math.Min(options.ContextSize, _config.ContextLength) : Math.Min(_config.ContextLength, options.MaxContext);
        if (File.Exists(Path.Combine(options.Path, "tokenizer.json")))
        {
            _tokenizer = HuggingFaceTokenizer.Load(options.Path);
            if (_tokenizer.ChatTemplate is { } template) _template = ChatTemplate.FromText(template, $"{Path.Combine(options.Path, "tokenizer_config.json")}: key 'chat_template'");
        }
        _endIds = [.. _config.EosTokenIds];
        if (_tokenizer?.EosId is int eos) _endIds.Add(eos);

        _genAiConfig = new Config(options.Path);
        try
        {
            _genAiConfig.ClearProviders(); // the CPU; the NuGet package has no other provider on the boards
            _genAiConfig.Overlay("{\"model\": {\"decoder\": {\"session_options\": {\"intra_op_num_threads\": " + Math.Max(1, options.Threads) + "}}}}");
            _model = new Model(_genAiConfig);
        }
        catch (OnnxRuntimeGenAIException e)
        {
            _genAiConfig.Dispose();
            throw new EdgeTuneException($"{options.Path}: ONNX Runtime GenAI cannot load the model: {e.Message.Split('\n')[0]}");
        }
        _session = new StepSession(this, options.Threads);
        Description = $"ONNX Runtime GenAI: {ModelName} ({_config.Type})";
    }

    public override string ModelName { get; }
    public override string Description { get; }
    public override IInferenceRuntime Runtime => _runtime;
    public override InferenceCapabilities Capabilities => new(SupportsAdapters: false, UsesDeviceMemory: false);
    public override int ContextSize { get; }
    public override int VocabularySize => _config.VocabSize;
    public override int? BosId => _config.BosTokenId ?? _tokenizer?.BosId;
    protected override IDecodeSession Session => _session;

    private HuggingFaceTokenizer Tokenizer => _tokenizer
        ?? throw new EdgeTuneException($"{Path.Combine(_folder, "tokenizer.json")}: no such file (the folder was exported without a tokenizer; export from a folder or GGUF that has one)");

    /// <summary>
    /// llama.cpp's renderer where llama.cpp loads (the one training formats its data with); on a board whose
    /// llama.cpp does not load (LLamaSharp's arm64 build needs GLIBC 2.38, JetPack 6 has 2.35), ONNX Runtime GenAI's
    /// own renderer of the same template, so ONNX serving needs no llama.cpp. Tests hold the two equal for the
    /// templates we export (OnnxChatTemplateTests).
    /// </summary>
    public override string ApplyChatTemplate(IReadOnlyList<ChatMessage> messages, bool addAssistant = true)
    {
        var template = _template ?? throw new EdgeTuneException($"{Path.Combine(_folder, "tokenizer_config.json")}: key 'chat_template': missing (no chat template was exported)");
        if (_useGenAiTemplate is null)
        {
            try
            {
                LlamaCpp.LlamaCppNative.EnsureLoaded();
                _useGenAiTemplate = false;
            }
            catch (EdgeTuneException)
            {
                _useGenAiTemplate = true;
            }
        }
        return _useGenAiTemplate == true ? ApplyChatTemplateWithGenAi(messages, addAssistant) : template.Apply(messages, addAssistant);
    }

    private bool? _useGenAiTemplate;

    /// <summary>The template rendered by ONNX Runtime GenAI's tokenizer (its Jinja engine), from the same template text.</summary>
    public string ApplyChatTemplateWithGenAi(IReadOnlyList<ChatMessage> messages, bool addAssistant)
    {
        var template = _template ?? throw new EdgeTuneException($"{Path.Combine(_folder, "tokenizer_config.json")}: key 'chat_template': missing (no chat template was exported)");
        string json = System.Text.Json.JsonSerializer.Serialize(messages.Select(m => new Dictionary<string, string> { ["role"] = m.Role, ["content"] = m.Content }));
        try
        {
            using var tokenizer = new Tokenizer(_model);
            return tokenizer.ApplyChatTemplate(template.Source, json, null, addAssistant);
        }
        catch (OnnxRuntimeGenAIException e)
        {
            throw new EdgeTuneException($"{template.Origin}: ONNX Runtime GenAI cannot apply this chat template: {e.Message.Split('\n')[0]}");
        }
    }

    public override int[] Tokenize(string text, bool addSpecial = true, bool parseSpecial = true) => [.. Tokenizer.Encode(text, addSpecial, parseSpecial)];

    protected override float[] ComputeLogits(int[] tokens, int from)
    {
        // Teacher-forced through the KV cache: the prompt up to `from`, then one token at a time.
        var rows = new float[(tokens.Length - from) * VocabularySize];
        _session.Reset();
        _session.Prompt(tokens.AsSpan(0, from + 1));
        _session.LastLogits().CopyTo(rows);
        for (int t = from + 1; t < tokens.Length; t++)
        {
            _session.Decode(tokens[t]);
            _session.LastLogits().CopyTo(rows.AsSpan((t - from) * VocabularySize));
        }
        return rows;
    }

    protected override void Release()
    {
        _session.Dispose();
        _model.Dispose();
        _genAiConfig.Dispose();
    }

    /// <summary>A GenAI generator per context: tokens are appended (GenAI runs the graph), the logits read, the choice ours.</summary>
    private sealed class StepSession(OnnxGenAiModel model, int threads) : IDecodeSession, IDisposable
    {
        private GeneratorParams? _parameters;
        private Generator? _generator;
        private readonly float[] _logits = new float[model.VocabularySize];

        public int Position { get; private set; }

        public void Reset()
        {
            _generator?.Dispose();
            _parameters?.Dispose();
            _parameters = new GeneratorParams(model._model);
            _parameters.SetSearchOption("max_length", model.ContextSize);
            _parameters.SetSearchOption("do_sample", false);
            _generator = new Generator(model._model, _parameters);
            Position = 0;
        }

        public void Prompt(ReadOnlySpan<int> tokens)
        {
            if (_generator is null) Reset();
            _generator!.AppendTokens(tokens);
            Position += tokens.Length;
            ReadLogits();
        }

        public void Decode(int token) => Prompt([token]);

        private void ReadLogits()
        {
            using var tensor = _generator!.GetOutput("logits");
            var shape = tensor.Shape();
            int vocab = (int)shape[^1];
            if (vocab != _logits.Length) throw new InvalidOperationException($"logits have {vocab} columns, the vocabulary {_logits.Length}");
            var all = tensor.GetData<float>();
            all[^vocab..].CopyTo(_logits); // the last position's row
        }

        public ReadOnlySpan<float> LastLogits() => _logits;

        public bool IsEndOfGeneration(int token) => model._endIds.Contains(token);

        public ITextDecoder NewTextDecoder() => new IncrementalDecoder(model.Tokenizer);

        public RuntimeTimings? Timings => null;

        public IReadOnlyDictionary<string, string> Details => new Dictionary<string, string>
        {
            ["runtime"] = model._runtime.Description,
            ["threads"] = threads.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["model_type"] = model._config.Type,
        };

        public void Dispose()
        {
            _generator?.Dispose();
            _parameters?.Dispose();
        }
    }

    /// <summary>
    /// Streams generated ids to text as llama.cpp's decoder does: each token's bytes (a byte-level piece's bytes,
    /// a SentencePiece &lt;0xNN&gt; byte, or the piece's UTF-8 with ▁ as a space) go through one UTF-8 decoder that
    /// holds back an incomplete character and replaces invalid bytes, so both runtimes give the same text.
    /// Special tokens (end-of-turn markers and the like) write nothing.
    /// </summary>
    private sealed class IncrementalDecoder(HuggingFaceTokenizer tokenizer) : ITextDecoder
    {
        private readonly System.Text.Decoder _utf8 = new System.Text.UTF8Encoding(false, false).GetDecoder();
        private readonly System.Text.StringBuilder _text = new();
        private readonly List<byte> _bytes = [];

        public void Add(int token)
        {
            if (tokenizer.IsSpecial(token)) return;
            string piece = tokenizer.Piece(token);
            _bytes.Clear();
            if (tokenizer.IsByteLevel) ByteLevel.AppendBytes(piece, _bytes);
            else if (piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>'
                     && byte.TryParse(piece.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out byte b)) _bytes.Add(b);
            else _bytes.AddRange(System.Text.Encoding.UTF8.GetBytes(piece.Replace('▁', ' ')));
            var bytes = _bytes.ToArray();
            var chars = new char[_utf8.GetCharCount(bytes, flush: false)];
            _utf8.GetChars(bytes, chars, flush: false);
            _text.Append(chars);
        }

        public string Read()
        {
            string piece = _text.ToString();
            _text.Clear();
            return piece;
        }
    }
}
