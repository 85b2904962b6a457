using EdgeTune.Models.Reference;
using EdgeTune.Testing;
using Xunit.Abstractions;
using EdgeTune.Core.Numerics;

namespace EdgeTune.Models.Tests;

/// <summary>Our reference forward on the HF folder against llama.cpp on our converted GGUF, and against itself on the GGUF.</summary>
public sealed class ParityTests(TinyModels models, ITestOutputHelper output) : IClassFixture<TinyModels>
{
    private static readonly int[] PromptLengths = [64, 80, 100];

    [Theory]
    [MemberData(nameof(TinyModels.Names), MemberType = typeof(TinyModels))]
    public void Hf_logits_equal_llama_cpp_logits_on_the_converted_gguf(string name)
    {
        var (hf, gguf) = models.Get(name);
        var ours = ReferenceModel.FromHuggingFace(hf);
        double worst = 0;
        foreach (int length in PromptLengths)
        {
            var prompt = TinyHfCheckpoint.Prompt(length, ours.Config.VocabSize, seed: length);
            double error = LogitDistance.RelativeL2(ours.Forward(prompt), LlamaCpp.AllLogits(gguf, prompt));
            worst = Math.Max(worst, error);
            Assert.True(error <= 1e-3, $"{name}, {length} tokens: relative L2 error {error:E2} against llama.cpp");
        }
        output.WriteLine($"{name}: ours (HF, f32) vs llama.cpp (GGUF f32), all positions: worst relative L2 {worst:E2}");
    }

    [Theory]
    [MemberData(nameof(TinyModels.Names), MemberType = typeof(TinyModels))]
    public void Gguf_and_hf_give_the_same_reference_logits(string name)
    {
        var (hf, gguf) = models.Get(name);
        var fromHf = ReferenceModel.FromHuggingFace(hf);
        var fromGguf = ReferenceModel.FromGguf(gguf);
        Assert.Equal(RopeStyle.Half, fromHf.Rope);
        Assert.Equal(fromHf.Config.Architecture == "llama" ? RopeStyle.Interleaved : RopeStyle.Half, fromGguf.Rope);
        var prompt = TinyHfCheckpoint.Prompt(72, fromHf.Config.VocabSize, seed: 5);
        double error = LogitDistance.RelativeL2(fromGguf.Forward(prompt), fromHf.Forward(prompt));
        output.WriteLine($"{name}: reference on GGUF vs on HF: relative L2 {error:E2}");
        Assert.True(error <= 1e-5, $"{name}: relative L2 error {error:E2}");
    }

    [Theory]
    [MemberData(nameof(TinyModels.Names), MemberType = typeof(TinyModels))]
    public void Greedy_32_tokens_equal_llama_cpp(string name)
    {
        var (hf, gguf) = models.Get(name);
        var ours = ReferenceModel.FromHuggingFace(hf);
        var prompt = TinyHfCheckpoint.Prompt(64, ours.Config.VocabSize, seed: 99);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var expected = LlamaCpp.Greedy(gguf, prompt, 32);
        var llamaTime = clock.Elapsed;
        var actual = ours.Greedy(prompt, 32);
        output.WriteLine($"{name}: llama.cpp greedy {llamaTime.TotalSeconds:F2} s, ours {(clock.Elapsed - llamaTime).TotalSeconds:F2} s");
        Assert.Equal(expected, actual);
    }

    [Fact]
    public void Float64_agrees_with_float32_and_llama_cpp()
    {
        var (hf, gguf) = models.Get("llama-gqa-tied-llama3rope");
        var f64 = ReferenceModel.FromHuggingFace(hf, ReferencePrecision.Float64);
        var f32 = ReferenceModel.FromHuggingFace(hf);
        var prompt = TinyHfCheckpoint.Prompt(64, f64.Config.VocabSize, seed: 3);
        var logits64 = f64.Forward(prompt);
        double vsF32 = LogitDistance.RelativeL2(f32.Forward(prompt), logits64);
        double vsLlama = LogitDistance.RelativeL2(LlamaCpp.AllLogits(gguf, prompt), logits64);
        output.WriteLine($"f32 vs f64: {vsF32:E2}; llama.cpp vs f64: {vsLlama:E2}");
        Assert.True(vsF32 <= 1e-5, $"f32 vs f64 {vsF32:E2}");
        Assert.True(vsLlama <= 1e-3, $"llama.cpp vs f64 {vsLlama:E2}");
    }
}
