using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Testing;

namespace EdgeTune.Formats.Tests;

/// <summary>llama.cpp itself must load what our writer produces.</summary>
public class GgufLlamaCppTests
{
    [Theory]
    [InlineData(GgmlType.F32, false)]
    [InlineData(GgmlType.F16, true)]
    [InlineData(GgmlType.BF16, false)]
    public void Llama_cpp_loads_our_file_and_runs_it(GgmlType type, bool tied)
    {
        using var dir = new TempDir();
        string path = dir.File("tiny.gguf");
        TinyLlama.WriteGguf(path, new TinyLlamaConfig { TiedEmbeddings = tied }, type);
        var logits = LlamaCpp.LastLogits(path, [1, 260, 270, 280]);
        Assert.Equal(new TinyLlamaConfig().VocabSize, logits.Length);
        Assert.All(logits, l => Assert.True(float.IsFinite(l)));
        Assert.True(logits.Max() - logits.Min() > 1e-3f, "logits should depend on the weights");
    }
}
