using EdgeTune.Core;
using EdgeTune.Export.Onnx;
using EdgeTune.Inference;
using EdgeTune.Inference.Onnx;
using EdgeTune.Models.Reference;
using EdgeTune.Testing;
using Xunit.Abstractions;
using EdgeTune.Core.Numerics;

namespace EdgeTune.Export.Tests;

/// <summary>The ONNX runtime of EdgeTune.Inference: the shared generation loop over ONNX Runtime GenAI.</summary>
public sealed class OnnxRuntimeTests(ExportModels models, ITestOutputHelper output) : IClassFixture<ExportModels>
{
    [Fact]
    public void Greedy_generation_equals_llama_cpp_and_logits_equal_the_reference()
    {
        const string name = "mistral-gqa";
        var (_, gguf) = models.Get(name);
        var prompt = TinyHfCheckpoint.Prompt(40, ExportModels.Cases[name].Vocab, seed: 41);
        using var model = OnnxGenAiRuntime.Default.Open(new ModelOptions { Path = models.Export(name, OnnxPrecision.Fp32, fromGguf: true), Threads = 2 });
        var result = model.Generate(prompt, SamplingSettings.Greedy(24), null, CancellationToken.None);
        var expected = LlamaCpp.Greedy(gguf, prompt, 24);
        int eos = Array.IndexOf(expected, 2);
        Assert.Equal(eos < 0 ? expected : expected[..(eos + 1)], result.Tokens);
        output.WriteLine($"{model.Description}: {result.CompletionTokens} tokens, TTFT {result.TimeToFirstTokenMs:F1} ms, total {result.GenerationMs:F1} ms");

        var logits = model.Logits(prompt, from: 30);
        var reference = ReferenceModel.FromGguf(gguf).Forward(prompt);
        int vocab = model.VocabularySize;
        double error = LogitDistance.RelativeL2(logits, reference.AsSpan(30 * vocab));
        output.WriteLine($"Logits(from 30) vs reference: relative L2 {error:E2}");
        Assert.True(error <= 1e-4, $"relative L2 {error:E2}");
    }

    [Fact]
    public void A_damaged_folder_fails_to_open_in_one_line_naming_the_file()
    {
        using var dir = new TempDir();
        string folder = dir.File("copy");
        Directory.CreateDirectory(folder);
        string source = models.Export("qwen2-gqa-bias", OnnxPrecision.Fp32);
        foreach (var file in Directory.GetFiles(source)) File.Copy(file, Path.Combine(folder, Path.GetFileName(file)));
        using (var data = new FileStream(Path.Combine(folder, "model.onnx.data"), FileMode.Open)) data.SetLength(data.Length / 2);
        var e = Assert.ThrowsAny<EdgeTuneException>(() => OnnxGenAiRuntime.Default.Open(new ModelOptions { Path = folder }));
        Assert.StartsWith(Path.Combine(folder, "model.onnx.data") + ": tensor '", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Throws<EdgeTuneException>(() => OnnxGenAiRuntime.Default.Open(new ModelOptions { Path = source, Adapters = ["x.gguf"] }));
    }
}
