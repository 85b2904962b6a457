using EdgeTune.Core;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Inference;
using EdgeTune.Inference.LlamaCpp;
using EdgeTune.Inference.Reference;
using EdgeTune.Testing;

namespace EdgeTune.Inference.Tests;

public sealed class LlamaCppTests
{
    [Fact]
    public void Llama_cpp_and_the_reference_agree_on_logits_and_greedy_tokens()
    {
        using var dir = new TempDir();
        string path = dir.File("tiny.gguf");
        TinyLlama.WriteGguf(path, new TinyLlamaConfig { Embedding = 64, Layers = 2, Heads = 4, KvHeads = 2, FeedForward = 128, HeadScale = 20 });
        using var llama = LlamaCppRuntime.Default.Open(new ModelOptions { Path = path, Threads = 2, Exact = true });
        using var reference = ReferenceRuntime.Instance.Open(new ModelOptions { Path = path });
        int[] prompt = llama.Tokenize("the device model is hello world");
        Assert.Equal(reference.Tokenize("the device model is hello world"), prompt);

        var a = llama.Logits(prompt, 2);
        var b = reference.Logits(prompt, 2);
        Assert.Equal((prompt.Length - 2) * llama.VocabularySize, a.Length);
        double diff = 0, norm = 0;
        for (int i = 0; i < a.Length; i++) { diff += (a[i] - b[i]) * (double)(a[i] - b[i]); norm += b[i] * (double)b[i]; }
        Assert.True(Math.Sqrt(diff / norm) < 1e-4, $"relative L2 {Math.Sqrt(diff / norm)}");

        var greedy = SamplingSettings.Greedy(12);
        Assert.Equal(reference.Generate(prompt, greedy, null, default).Tokens, llama.Generate(prompt, greedy, null, default).Tokens);
    }

    [Fact]
    public void Seeded_sampling_is_the_same_on_every_runtime_and_run()
    {
        using var dir = new TempDir();
        string path = dir.File("tiny.gguf");
        TinyLlama.WriteGguf(path, new TinyLlamaConfig { Embedding = 64, Layers = 1, Heads = 4, KvHeads = 2, FeedForward = 128, HeadScale = 5 });
        using var llama = LlamaCppRuntime.Default.Open(new ModelOptions { Path = path, Threads = 1, Exact = true });
        using var reference = ReferenceRuntime.Instance.Open(new ModelOptions { Path = path });
        int[] prompt = llama.Tokenize("hello world");
        var sampling = new SamplingSettings(10, 1.0f, 0.9f, 42, []);
        var first = llama.Generate(prompt, sampling, null, default);
        Assert.Equal(first.Tokens, llama.Generate(prompt, sampling, null, default).Tokens);
        Assert.Equal(first.Tokens, reference.Generate(prompt, sampling, null, default).Tokens);
        Assert.NotEqual(first.Tokens, llama.Generate(prompt, sampling with { Seed = 43 }, null, default).Tokens);
    }

    [Fact]
    public void A_native_library_that_cannot_load_is_explained_in_one_line_with_the_fix()
    {
        using var dir = new TempDir();
        string fake = dir.File("libllama.so");
        File.WriteAllText(fake, "not a shared library");
        string message = LlamaCppNative.Explain(fake, new TypeInitializationException("LLama.Native.NativeApi", null));
        Assert.StartsWith("llama.cpp cannot load: " + fake, message, StringComparison.Ordinal);
        Assert.Contains("[model] native_library", message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', message);
        Assert.DoesNotContain("type initializer", message, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void Missing_files_are_one_line_errors()
    {
        var e = Assert.Throws<EdgeTuneException>(() => LlamaCppRuntime.Default.Open(new ModelOptions { Path = "/nonexistent/m.gguf" }));
        Assert.Equal("/nonexistent/m.gguf: no such file", e.Message);
    }
}
