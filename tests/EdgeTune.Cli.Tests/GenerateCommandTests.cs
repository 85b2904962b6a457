using System.Text;
using System.Text.Json;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Models.Chat;
using EdgeTune.Models.Tokenizers;
using EdgeTune.Testing;
using LLama;
using LLama.Common;

namespace EdgeTune.Cli.Tests;

/// <summary>A tiny random llama GGUF (F32) carrying the real Llama 3 vocabulary and chat template, written once per class.</summary>
public sealed class Llama3VocabModel : IDisposable
{
    private readonly TempDir _dir = new();

    public Llama3VocabModel()
    {
        var hf = HuggingFaceTokenizer.Load(RealTokenizers.Folder("llama3"));
        var config = new TinyLlamaConfig { Embedding = 32, Layers = 1, Heads = 2, KvHeads = 1, FeedForward = 64, TiedEmbeddings = true };
        config = config with { ExtraTokens = hf.VocabularySize - config.VocabSize };
        Path = _dir.File("tiny-llama3-vocab.gguf");
        TinyLlama.WriteGguf(Path, config, Core.GgmlType.F32, "tiny-llama3-vocab", GgufVocabulary.FromTokenizer(hf));
    }

    public string Path { get; }

    /// <summary>llama.cpp's own tokenization of <paramref name="text"/> on this GGUF (add special, parse special).</summary>
    public int[] LlamaCppIds(string text)
    {
        LlamaCpp.EnsureLoaded();
        using var weights = LLamaWeights.LoadFromFile(new ModelParams(Path) { GpuLayerCount = 0, VocabOnly = true });
        return weights.Tokenize(text, true, true, Encoding.UTF8).Select(t => (int)t).ToArray();
    }

    public void Dispose() => _dir.Dispose();
}

public sealed class GenerateCommandTests(Llama3VocabModel model) : IClassFixture<Llama3VocabModel>
{
    private static (int[] Prompt, int[] Generated, string Text, string Stop) Parse(CliResult r)
    {
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        int[] Ids(string key) => root.GetProperty(key).EnumerateArray().Select(e => e.GetInt32()).ToArray();
        return (Ids("prompt_ids"), Ids("generated_ids"), root.GetProperty("text").GetString()!, root.GetProperty("stop_reason").GetString()!);
    }

    [Fact]
    public void Greedy_json_equals_llama_cpp_tokenization_and_greedy_continuation()
    {
        const string prompt = "The quick brown fox jumps over the lazy dog. Grüße, 世界!";
        var (ids, generated, text, stop) = Parse(CliRunner.Run("generate", "--model", model.Path, "--prompt", prompt, "--temperature", "0", "--max-tokens", "8", "--json"));

        Assert.Equal(model.LlamaCppIds(prompt), ids);
        var expected = LlamaCpp.Greedy(model.Path, ids, 8);
        // An end-of-generation token may stop us early (it is then the last id); up to there the ids must agree.
        Assert.Equal(stop == "eos" ? expected[..generated.Length] : expected, generated);
        Assert.True(stop == "length" && generated.Length == 8 || stop == "eos" && generated.Length <= 8, $"stop {stop} after {generated.Length} tokens");
        Assert.NotEmpty(text);
    }

    [Fact]
    public void Chat_renders_system_and_user_through_the_template()
    {
        var r = CliRunner.Run("generate", "--model", model.Path, "--chat", "--system", "Be terse.", "--prompt", "Hi!", "--temperature", "0", "--max-tokens", "2", "--json");
        var (ids, _, _, _) = Parse(r);

        string rendered;
        using (var file = GgufFile.Open(model.Path))
            rendered = ChatTemplate.FromGguf(file.Metadata, model.Path).Apply([new("system", "Be terse."), new("user", "Hi!")], addGenerationPrompt: true);
        Assert.Equal(model.LlamaCppIds(rendered), ids);
        // Llama 3's headers are single special tokens: <|start_header_id|> 128006, <|end_header_id|> 128007, <|eot_id|> 128009.
        Assert.Equal(3, ids.Count(id => id == 128006));
        Assert.Equal(3, ids.Count(id => id == 128007));
        Assert.Equal(2, ids.Count(id => id == 128009));
        Assert.Equal([128006, 78191, 128007, 271], ids[^4..]); // "<|start_header_id|>assistant<|end_header_id|>\n\n"
    }

    [Fact]
    public void Seeded_sampling_is_reproducible_and_text_streams_the_same_text()
    {
        string[] args = ["generate", "--model", model.Path, "--prompt", "Once upon a time", "--temperature", "1.0", "--top-p", "0.9", "--seed", "1234", "--max-tokens", "6"];
        var first = Parse(CliRunner.Run([.. args, "--json"]));
        var second = Parse(CliRunner.Run([.. args, "--json"]));
        Assert.Equal(first.Generated, second.Generated);
        Assert.Equal(first.Text, second.Text);

        var streamed = CliRunner.Run(args);
        Assert.Equal(0, streamed.ExitCode);
        Assert.Equal(first.Text + Environment.NewLine, streamed.Stdout);
    }

    [Fact]
    public void Hugging_Face_folder_generates_what_llama_cpp_generates_on_its_conversion()
    {
        // Llama 2's SentencePiece-style tokenizer (32k pieces, byte fallback) on a tiny random llama checkpoint.
        using var dir = new TempDir();
        string folder = dir.File("hf");
        var hf = HuggingFaceTokenizer.Load(RealTokenizers.Folder("llama2"));
        TinyHfCheckpoint.Write(folder, new TinyHfOptions { Vocab = hf.VocabularySize, Hidden = 32, Heads = 2, KvHeads = 1, Intermediate = 64, Layers = 1 });
        foreach (var f in new[] { "tokenizer.json", "tokenizer_config.json" }) File.Copy(System.IO.Path.Combine(hf.Folder, f), System.IO.Path.Combine(folder, f));
        string gguf = dir.File("converted.gguf");
        var vocabulary = GgufVocabulary.FromTokenizer(hf);
        Models.Conversion.HfToGgufConverter.Convert(folder, gguf, Core.GgmlType.F32, m => { foreach (var (k, v) in vocabulary) m.Set(k, v); });

        const string prompt = "Hello, my name is";
        var (ids, generated, _, stop) = Parse(CliRunner.Run("generate", "--model", folder, "--prompt", prompt, "--temperature", "0", "--max-tokens", "8", "--json"));
        LlamaCpp.EnsureLoaded();
        using (var weights = LLamaWeights.LoadFromFile(new ModelParams(gguf) { GpuLayerCount = 0, VocabOnly = true }))
            Assert.Equal(weights.Tokenize(prompt, true, true, Encoding.UTF8).Select(t => (int)t), ids);
        var expected = LlamaCpp.Greedy(gguf, ids, 8);
        Assert.Equal(stop == "eos" ? expected[..generated.Length] : expected, generated);
    }

    [Fact]
    public void Bad_input_fails_cleanly()
    {
        var missing = CliRunner.Run("generate", "--model", "/nonexistent/model.gguf", "--prompt", "hi");
        Assert.Equal(1, missing.ExitCode);
        Assert.Equal("edgetune: /nonexistent/model.gguf: no such file or folder\n", missing.Stderr.ReplaceLineEndings("\n"));

        using var dir = new TempDir();
        var badAdapter = CliRunner.Run("generate", "--model", model.Path, "--adapter", dir.Path, "--prompt", "hi");
        Assert.Equal(1, badAdapter.ExitCode);
        Assert.Equal($"edgetune: {System.IO.Path.Combine(dir.Path, "adapter_config.json")}: no such file (a PEFT adapter folder holds adapter_config.json)\n",
            badAdapter.Stderr.ReplaceLineEndings("\n"));

        // A model file given as the adapter: named, one line.
        var notAdapter = CliRunner.Run("generate", "--model", model.Path, "--adapter", model.Path, "--prompt", "hi");
        Assert.Equal(1, notAdapter.ExitCode);
        Assert.StartsWith($"edgetune: {model.Path}: key 'general.type': ", notAdapter.Stderr);
        Assert.Single(notAdapter.Stderr.Trim().Split('\n'));

        foreach (var usage in new[] { new[] { "--max-tokens", "-1" }, ["--top-p", "0"], ["--temperature", "-1"], ["--system", "without --chat"] })
        {
            var r = CliRunner.Run(["generate", "--model", model.Path, "--prompt", "hi", .. usage]);
            Assert.Equal(2, r.ExitCode);
            Assert.Contains(usage[0], r.Stderr);
            Assert.Equal("", r.Stdout);
        }
    }
}
