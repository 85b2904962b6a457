using EdgeTune.Export.Onnx;
using EdgeTune.Models.Reference;
using EdgeTune.Testing;
using Xunit.Abstractions;
using EdgeTune.Core.Numerics;

namespace EdgeTune.Export.Tests;

/// <summary>ONNX Runtime, the real consumer, runs our export and must give our reference forward's logits.</summary>
public sealed class OnnxParityTests(ExportModels models, ITestOutputHelper output) : IClassFixture<ExportModels>
{
    [Theory]
    [MemberData(nameof(ExportModels.Names), MemberType = typeof(ExportModels))]
    public void Fp32_logits_equal_the_reference_at_every_position(string name)
    {
        var (hf, _) = models.Get(name);
        var reference = ReferenceModel.FromHuggingFace(hf);
        var prompt = TinyHfCheckpoint.Prompt(64, reference.Config.VocabSize, seed: 21);
        using var ort = new OrtDecoder(models.Export(name, OnnxPrecision.Fp32));
        double error = LogitDistance.RelativeL2(ort.Run(prompt), reference.Forward(prompt));
        output.WriteLine($"{name}: ONNX Runtime fp32 vs reference, 64 positions: relative L2 {error:E2}");
        Assert.True(error <= 1e-4, $"{name}: relative L2 {error:E2}");
    }

    [Theory]
    [MemberData(nameof(ExportModels.Names), MemberType = typeof(ExportModels))]
    public void Kv_cache_path_equals_a_full_forward(string name)
    {
        var (hf, _) = models.Get(name);
        var reference = ReferenceModel.FromHuggingFace(hf);
        int vocab = reference.Config.VocabSize;
        var sequence = TinyHfCheckpoint.Prompt(80, vocab, seed: 22);
        var full = reference.Forward(sequence);
        using var ort = new OrtDecoder(models.Export(name, OnnxPrecision.Fp32));
        var logits = new List<float>(ort.Run(sequence[..64]));
        for (int i = 64; i < 80; i++) logits.AddRange(ort.Run([sequence[i]]));
        double prompt = LogitDistance.RelativeL2(logits.ToArray().AsSpan(0, 64 * vocab), full.AsSpan(0, 64 * vocab));
        double decode = LogitDistance.RelativeL2(logits.ToArray().AsSpan(64 * vocab), full.AsSpan(64 * vocab));
        output.WriteLine($"{name}: prompt of 64 then 16 cached decode steps vs a full forward: prompt {prompt:E2}, decode {decode:E2}");
        Assert.True(prompt <= 1e-4 && decode <= 1e-4, $"{name}: prompt {prompt:E2}, decode {decode:E2}");
    }

    [Theory]
    [MemberData(nameof(ExportModels.Names), MemberType = typeof(ExportModels))]
    public void Export_from_the_gguf_equals_the_reference(string name)
    {
        var (_, gguf) = models.Get(name);
        var reference = ReferenceModel.FromGguf(gguf);
        var prompt = TinyHfCheckpoint.Prompt(64, reference.Config.VocabSize, seed: 23);
        using var ort = new OrtDecoder(models.Export(name, OnnxPrecision.Fp32, fromGguf: true));
        double error = LogitDistance.RelativeL2(ort.Run(prompt), reference.Forward(prompt));
        output.WriteLine($"{name}: exported from GGUF ({reference.Rope} rope), ONNX Runtime vs reference: relative L2 {error:E2}");
        Assert.True(error <= 1e-4, $"{name}: relative L2 {error:E2}");
    }

    [Theory]
    [MemberData(nameof(ExportModels.Names), MemberType = typeof(ExportModels))]
    public void Int4_logits_equal_the_reference_over_the_dequantised_weights(string name)
    {
        var (hf, _) = models.Get(name);
        using var weights = ModelWeights.FromHuggingFace(hf);
        var c = weights.Config;
        var dequantised = ReferenceModel.FromWeights(weights, transform: (tensor, w) =>
        {
            if (!DecoderGraph.IsQuantized(tensor)) return w;
            var spec = weights.Tensors.Single(t => t.GgufName == (tensor == "output.weight" && c.TiedEmbeddings ? "token_embd.weight" : tensor));
            return Int4Blocks.RoundTrip(w, (int)spec.Shape[0], (int)spec.Shape[1], 32);
        });
        var fp32 = ReferenceModel.FromWeights(weights);
        var prompt = TinyHfCheckpoint.Prompt(64, c.VocabSize, seed: 24);
        using var ort = new OrtDecoder(models.Export(name, OnnxPrecision.Int4));
        var int4 = ort.Run(prompt);
        double error = LogitDistance.RelativeL2(int4, dequantised.Forward(prompt));
        var exact = fp32.Forward(prompt);
        double kl = LogitDistance.MeanKl(exact, int4, c.VocabSize);
        output.WriteLine($"{name}: int4 (block 32) ONNX Runtime vs reference over dequantised weights: relative L2 {error:E2}; " +
                         $"vs fp32: relative L2 {LogitDistance.RelativeL2(int4, exact):E2}, mean KL(fp32 ‖ int4) {kl:E3} nats");
        Assert.True(error <= 1e-3, $"{name}: relative L2 {error:E2}");
    }
}

/// <summary>fp16: the builder's GPU form; here ONNX Runtime's CPU kernels run it, so only a loose bound.</summary>
public sealed class OnnxFp16Tests(ExportModels models, ITestOutputHelper output) : IClassFixture<ExportModels>
{
    [Fact]
    public void Fp16_logits_stay_close_to_the_reference()
    {
        const string name = "qwen2-gqa-bias";
        var (hf, _) = models.Get(name);
        var reference = ReferenceModel.FromHuggingFace(hf);
        var prompt = TinyHfCheckpoint.Prompt(64, reference.Config.VocabSize, seed: 25);
        using var ort = new OrtDecoder(models.Export(name, OnnxPrecision.Fp16));
        double error = LogitDistance.RelativeL2(ort.Run(prompt), reference.Forward(prompt));
        output.WriteLine($"{name}: fp16 ONNX Runtime (CPU) vs fp32 reference: relative L2 {error:E2}");
        Assert.True(error <= 2e-2, $"{name}: relative L2 {error:E2}");
    }
}
