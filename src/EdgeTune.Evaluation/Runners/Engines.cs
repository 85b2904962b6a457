using System.Text;
using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Models.Generation;
using EdgeTune.Models.Reference;
using EdgeTune.Models.Tokenizers;
using LLama;
using LLama.Common;
using LLama.Native;

namespace EdgeTune.Evaluation.Runners;

/// <summary>
/// A model that can continue a token sequence greedily and score one: what every runner needs from a runtime.
/// Greedy decoding (argmax, ties to the lowest id) is deterministic, so a rerun gives the same answers.
/// </summary>
public interface IModelEngine : IDisposable
{
    /// <summary>What runs (model, adapter, runtime), for reports.</summary>
    string Description { get; }
    int ContextLength { get; }
    /// <summary>Rendered chat text to ids: BOS as the tokenizer says, template markers parsed as special tokens.</summary>
    int[] EncodePrompt(string text);
    /// <summary>Plain text to ids: no BOS, no special-token parsing (reference answers, general text).</summary>
    int[] EncodePlain(string text);
    int? BosId { get; }
    /// <summary>Greedy continuation until an end-of-generation token or <paramref name="maxTokens"/>.</summary>
    (string Text, int Tokens) Generate(int[] prompt, int maxTokens, CancellationToken cancellationToken);
    /// <summary>log p(tokens[t] | tokens[..t]) for t from <paramref name="from"/> (≥ 1) to the end, teacher-forced in one pass.</summary>
    double[] LogProbs(int[] tokens, int from);
}

internal static class LogSoftmax
{
    public static double Of(ReadOnlySpan<float> logits, int id)
    {
        float max = float.NegativeInfinity;
        foreach (float v in logits) if (v > max) max = v;
        double sum = 0;
        foreach (float v in logits) sum += Math.Exp(v - max);
        return logits[id] - max - Math.Log(sum);
    }

    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }
}

/// <summary>EdgeTune's own reference forward (plain CPU float32, no KV cache): Hugging Face folders, GGUF files, PEFT or GGUF adapters merged.</summary>
public sealed class ReferenceEngine : IModelEngine
{
    private readonly ReferenceModel _model;
    private readonly ITokenizer _tokenizer;
    private readonly HashSet<int> _endIds;

    public ReferenceEngine(string modelPath, string? adapterPath = null)
    {
        if (!Directory.Exists(modelPath) && !File.Exists(modelPath)) throw new EdgeTuneException($"{modelPath}: no such file or folder");
        _tokenizer = LoadTokenizer(modelPath);
        _model = ReferenceModel.Open(modelPath, ReferencePrecision.Float32, adapterPath is null ? null : EdgeTune.Models.Adapters.LoraAdapter.Open(adapterPath));
        _endIds = Generator.EndIds(_tokenizer, _model.Config.EosTokenIds);
        Description = $"reference forward: {Path.GetFileName(Path.TrimEndingDirectorySeparator(modelPath))}" +
                      (adapterPath is null ? "" : $" + {Path.GetFileName(Path.TrimEndingDirectorySeparator(adapterPath))}");
    }

    public static ITokenizer LoadTokenizer(string path)
    {
        if (Directory.Exists(path)) return HuggingFaceTokenizer.Load(path);
        using var file = GgufFile.Open(path);
        return GgufTokenizer.FromMetadata(file.Metadata, path);
    }

    public string Description { get; }
    public int ContextLength => _model.Config.ContextLength;
    public int? BosId => _tokenizer.BosId;
    public int[] EncodePrompt(string text) => _tokenizer.Encode(text, addSpecialTokens: true, parseSpecial: true).ToArray();
    public int[] EncodePlain(string text) => _tokenizer.Encode(text, addSpecialTokens: false, parseSpecial: false).ToArray();

    public (string Text, int Tokens) Generate(int[] prompt, int maxTokens, CancellationToken cancellationToken)
    {
        var result = Generator.Run(_model, _tokenizer, prompt, new Sampler(0), maxTokens, _endIds, null, cancellationToken);
        return (result.Text, result.GeneratedIds.Count);
    }

    public double[] LogProbs(int[] tokens, int from)
    {
        var logits = _model.Forward(tokens);
        int v = _model.Config.VocabSize;
        var result = new double[tokens.Length - from];
        for (int t = from; t < tokens.Length; t++) result[t - from] = LogSoftmax.Of(logits.AsSpan((t - 1) * v, v), tokens[t]);
        return result;
    }

    public void Dispose() { }
}

/// <summary>
/// A GGUF (and optionally a GGUF LoRA adapter at scale 1) in llama.cpp through LLamaSharp, on the CPU, with the
/// exact settings (F32 KV cache, no flash attention): the artifact as the device runs it.
/// </summary>
public sealed class LlamaCppEngine : IModelEngine
{
    private static readonly Lock InitLock = new();
    private static bool _loaded;
    private readonly LLamaWeights _weights;
    private readonly LLamaContext _context;
    private readonly string _path;

    public LlamaCppEngine(string ggufPath, string? adapterPath = null, int threads = 0, int maxContext = 4096)
    {
        if (!File.Exists(ggufPath)) throw new EdgeTuneException($"{ggufPath}: no such file");
        if (adapterPath is not null && !File.Exists(adapterPath)) throw new EdgeTuneException($"{adapterPath}: no such file (llama.cpp takes GGUF adapters)");
        EnsureLoaded();
        _path = ggufPath;
        int trained;
        using (var file = GgufFile.Open(ggufPath))
        {
            string arch = file.Metadata.TryGet("general.architecture", out var a) ? a.AsString() : "llama";
            trained = file.Metadata.TryGet($"{arch}.context_length", out var c) ? (int)Math.Min(int.MaxValue, c.AsInt64()) : 2048;
        }
        ContextLength = Math.Min(trained, maxContext);
        var parameters = new ModelParams(ggufPath)
        {
            ContextSize = (uint)ContextLength,
            BatchSize = (uint)ContextLength,
            UBatchSize = (uint)Math.Min(ContextLength, 512),
            GpuLayerCount = 0,
            TypeK = GGMLType.GGML_TYPE_F32,
            TypeV = GGMLType.GGML_TYPE_F32,
            FlashAttention = false,
            Threads = threads > 0 ? threads : Math.Max(1, Environment.ProcessorCount),
        };
        try
        {
            _weights = LLamaWeights.LoadFromFile(parameters);
        }
        catch (LLama.Exceptions.LoadWeightsFailedException)
        {
            throw new EdgeTuneException($"{ggufPath}: llama.cpp refused to load the model");
        }
        _context = _weights.CreateContext(parameters);
        if (adapterPath is not null)
        {
            LLama.Native.LoraAdapter adapter;
            try
            {
                adapter = _weights.NativeHandle.LoadLoraFromFile(adapterPath);
            }
            catch (Exception e) when (e is not EdgeTuneException)
            {
                throw new EdgeTuneException($"{adapterPath}: llama.cpp refused the adapter ({e.Message})");
            }
            var adapters = new (LLama.Native.LoraAdapter, float)[] { (adapter, 1f) };
            _context.NativeHandle.SetLoraAdapters(adapters);
        }
        Description = $"llama.cpp: {Path.GetFileName(ggufPath)}" + (adapterPath is null ? "" : $" + {Path.GetFileName(adapterPath)}");
    }

    internal static void EnsureLoaded()
    {
        lock (InitLock)
        {
            if (_loaded) return;
            NativeApi.llama_empty_call(); // registers LLamaSharp's native-library resolver and loads llama.cpp
            NativeLogConfig.llama_log_set((_, _) => { });
            _loaded = true;
        }
    }

    public string Description { get; }
    public int ContextLength { get; }
    public int? BosId => _weights.NativeHandle.Vocab.BOS is { } b ? (int)b : null;

    public int[] EncodePrompt(string text) => _context.NativeHandle.Tokenize(text, true, true, Encoding.UTF8).Select(t => (int)t).ToArray();
    public int[] EncodePlain(string text) => _context.NativeHandle.Tokenize(text, false, false, Encoding.UTF8).Select(t => (int)t).ToArray();

    public (string Text, int Tokens) Generate(int[] prompt, int maxTokens, CancellationToken cancellationToken)
    {
        _context.NativeHandle.MemoryClear(true);
        var batch = new LLamaBatch();
        for (int i = 0; i < prompt.Length; i++) batch.Add((LLamaToken)prompt[i], i, LLamaSeqId.Zero, i == prompt.Length - 1);
        var decoder = new StreamingTokenDecoder(Encoding.UTF8, _weights);
        var vocab = _weights.NativeHandle.Vocab;
        int count = 0, position = prompt.Length;
        while (count < maxTokens && position < ContextLength)
        {
            cancellationToken.ThrowIfCancellationRequested();
            Decode(batch);
            int id = LogSoftmax.ArgMax(_context.NativeHandle.GetLogitsIth(batch.TokenCount - 1));
            count++;
            if (((LLamaToken)id).IsEndOfGeneration(vocab)) break;
            decoder.Add(id);
            batch.Clear();
            batch.Add((LLamaToken)id, position++, LLamaSeqId.Zero, true);
        }
        return (decoder.Read(), count);
    }

    public double[] LogProbs(int[] tokens, int from)
    {
        if (tokens.Length > ContextLength) throw new EdgeTuneException($"{_path}: {tokens.Length} tokens exceed the context of {ContextLength}");
        _context.NativeHandle.MemoryClear(true);
        var batch = new LLamaBatch();
        for (int i = 0; i < tokens.Length; i++) batch.Add((LLamaToken)tokens[i], i, LLamaSeqId.Zero, i >= from - 1 && i < tokens.Length - 1);
        Decode(batch);
        var result = new double[tokens.Length - from];
        // Logits are stored only for the flagged positions, in order; GetLogitsIth takes the batch index.
        for (int t = from; t < tokens.Length; t++) result[t - from] = LogSoftmax.Of(_context.NativeHandle.GetLogitsIth(t - 1), tokens[t]);
        return result;
    }

    private void Decode(LLamaBatch batch)
    {
        var result = _context.NativeHandle.Decode(batch);
        if (result != DecodeResult.Ok) throw new EdgeTuneException($"{_path}: llama.cpp could not evaluate the model ({result})");
    }

    public void Dispose()
    {
        _context.Dispose();
        _weights.Dispose();
    }
}
