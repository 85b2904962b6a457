using System.Text;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Models.Tokenizers;
using EdgeTune.Testing;
using LLama;
using LLama.Common;

namespace EdgeTune.Models.Tests;

/// <summary>
/// One real tokenizer, loaded once per test class (the Llama 3 vocabulary has 128k pieces): our Hugging Face
/// tokenizer, a tiny random llama GGUF carrying our GgufVocabulary output, llama.cpp holding that GGUF, our GGUF
/// tokenizer on it, and transformers.js's ids for the corpus.
/// </summary>
public abstract class TokenizerFixture : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly LLamaWeights _llama;

    protected TokenizerFixture(string name)
    {
        Name = name;
        Folder = RealTokenizers.Folder(name);
        Hf = HuggingFaceTokenizer.Load(Folder);
        Vocabulary = GgufVocabulary.FromTokenizer(Hf);

        GgufPath = _dir.File(name + ".gguf");
        // Small embedding, one layer: the file is a real model, sized to the vocabulary, that llama.cpp loads whole.
        var config = new TinyLlamaConfig { Embedding = 32, Layers = 1, Heads = 2, KvHeads = 1, FeedForward = 64, TiedEmbeddings = true };
        config = config with { ExtraTokens = Hf.VocabularySize - config.VocabSize };
        TinyLlama.WriteGguf(GgufPath, config, Core.GgmlType.F16, "tiny-" + name, Vocabulary);
        using (var file = GgufFile.Open(GgufPath)) Gguf = GgufTokenizer.FromMetadata(file.Metadata, GgufPath);

        LlamaCpp.EnsureLoaded();
        _llama = LLamaWeights.LoadFromFile(new ModelParams(GgufPath) { GpuLayerCount = 0, ContextSize = 64 });

        Texts = TokenizerCorpus.All(name);
        var js = RealTokenizers.HuggingFaceIds(name, Texts.Select(t => (t, true)).Concat(Texts.Select(t => (t, false))));
        JsWithSpecial = js.Take(Texts.Length).ToList();
        JsWithoutSpecial = js.Skip(Texts.Length).ToList();
    }

    public string Name { get; }
    public string Folder { get; }
    public HuggingFaceTokenizer Hf { get; }
    public IReadOnlyList<KeyValuePair<string, GgufValue>> Vocabulary { get; }
    public string GgufPath { get; }
    public GgufTokenizer Gguf { get; }
    public string[] Texts { get; }
    public List<int[]> JsWithSpecial { get; }
    public List<int[]> JsWithoutSpecial { get; }

    /// <summary>llama.cpp's llama_tokenize on our GGUF.</summary>
    public int[] LlamaCppIds(string text, bool addSpecial, bool parseSpecial) =>
        _llama.Tokenize(text, addSpecial, parseSpecial, Encoding.UTF8).Select(t => (int)t).ToArray();

    public void Dispose()
    {
        _llama.Dispose();
        _dir.Dispose();
        GC.SuppressFinalize(this);
    }
}

public sealed class Llama3Tokenizer() : TokenizerFixture("llama3");
public sealed class Qwen3Tokenizer() : TokenizerFixture("qwen3");
public sealed class Llama2Tokenizer() : TokenizerFixture("llama2");
