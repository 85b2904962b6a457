using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Safetensors;
using EdgeTune.Models.Architectures;
using EdgeTune.Models.Conversion;
using EdgeTune.Models.Reference;
using EdgeTune.Testing;
using Xunit.Abstractions;
using EdgeTune.Core.Numerics;

namespace EdgeTune.Models.Tests;

public sealed class ConverterTests(TinyModels models, ITestOutputHelper output) : IClassFixture<TinyModels>
{
    [Fact]
    public void Metadata_has_llama_cpp_keys_with_exact_types()
    {
        var (_, gguf) = models.Get("llama-gqa-tied-llama3rope");
        using var file = GgufFile.Open(gguf);
        var m = file.Metadata;
        Assert.Equal("llama", m.GetString("general.architecture"));
        Assert.Equal("model", m.GetString("general.type"));
        Assert.Equal("llama-gqa-tied-llama3rope", m.GetString("general.name"));
        foreach (var key in new[] { "block_count", "context_length", "embedding_length", "feed_forward_length", "attention.head_count",
                     "attention.head_count_kv", "vocab_size", "rope.dimension_count" })
            Assert.Equal(GgufValueType.UInt32, m["llama." + key].Type);
        Assert.Equal(GgufValueType.Float32, m["llama.rope.freq_base"].Type);
        Assert.Equal(500000f, (float)m["llama.rope.freq_base"].Value);
        Assert.Equal(GgufValueType.Float32, m["llama.attention.layer_norm_rms_epsilon"].Type);
        Assert.Equal(0u, (uint)m["general.file_type"].Value);
        Assert.False(m.ContainsKey("general.quantization_version"));
        Assert.Null(file.FindTensor("output.weight")); // tied
        var freqs = file.GetTensor("rope_freqs.weight");
        Assert.Equal(GgmlType.F32, freqs.Type);
        Assert.Equal([8L], freqs.Shape);
    }

    [Fact]
    public void Qwen2_keeps_biases_f32_and_is_not_permuted()
    {
        var (hf, gguf) = models.Get("qwen2-gqa-tied");
        using var file = GgufFile.Open(gguf);
        Assert.Equal("qwen2", file.Architecture);
        Assert.Equal(GgmlType.F32, file.GetTensor("blk.0.attn_q.bias").Type);
        Assert.False(file.Metadata.ContainsKey("qwen2.vocab_size"));
        using var checkpoint = SafetensorsCheckpoint.Open(hf);
        var expected = new float[64 * 64];
        checkpoint.ReadAsFloat32("model.layers.0.self_attn.q_proj.weight", expected);
        var actual = new float[64 * 64];
        file.ReadRows(file.GetTensor("blk.0.attn_q.weight"), 0, actual);
        Assert.Equal(expected, actual);
    }

    [Fact]
    public void Llama_q_rows_are_permuted_per_head()
    {
        var (hf, gguf) = models.Get("llama-mha");
        using var file = GgufFile.Open(gguf);
        using var checkpoint = SafetensorsCheckpoint.Open(hf);
        var hfRows = new float[64 * 64];
        checkpoint.ReadAsFloat32("model.layers.1.self_attn.k_proj.weight", hfRows);
        var ggRows = new float[64 * 64];
        file.ReadRows(file.GetTensor("blk.1.attn_k.weight"), 0, ggRows);
        // head dim 16: GGUF row 2j + h of a head is HF row h·8 + j (convert_hf_to_gguf.py's permute).
        for (int head = 0; head < 4; head++)
            for (int j = 0; j < 8; j++)
                for (int h = 0; h < 2; h++)
                    Assert.Equal(hfRows.AsSpan((head * 16 + h * 8 + j) * 64, 64).ToArray(), ggRows.AsSpan((head * 16 + 2 * j + h) * 64, 64).ToArray());
    }

    [Fact]
    public void Model_card_licence_and_name_are_written()
    {
        using var dir = new TempDir();
        var options = new TinyHfOptions { Vocab = 300, Hidden = 32, Intermediate = 64, Layers = 1 };
        string hf = TinyHfCheckpoint.Write(dir.File("card"), options);
        File.WriteAllText(Path.Combine(hf, "README.md"), "---\nlicense: apache-2.0\nmodel_name: Tiny Test\ntags:\n  - x\n---\n# Tiny\n");
        HfToGgufConverter.Convert(hf, dir.File("card.gguf"), GgmlType.F32, m => TinyHfCheckpoint.AddVocabulary(m, options.Vocab));
        using var file = GgufFile.Open(dir.File("card.gguf"));
        Assert.Equal("apache-2.0", file.Metadata.GetString("general.license"));
        Assert.Equal("Tiny Test", file.Metadata.GetString("general.name"));
    }

    [Theory]
    [InlineData(GgmlType.F16, SafetensorsDType.F32, 1u)]
    [InlineData(GgmlType.BF16, SafetensorsDType.BF16, 32u)]
    [InlineData(GgmlType.F16, SafetensorsDType.F16, 1u)]
    public void Half_precision_outputs_load_in_llama_cpp_and_match_the_reference(GgmlType outType, SafetensorsDType source, uint fileType)
    {
        using var dir = new TempDir();
        var options = TinyModels.Cases["llama-gqa-tied-llama3rope"] with { DType = source };
        string hf = TinyHfCheckpoint.Write(dir.File("half"), options);
        string gguf = dir.File("half.gguf");
        HfToGgufConverter.Convert(hf, gguf, outType, m => TinyHfCheckpoint.AddVocabulary(m, options.Vocab));
        using (var file = GgufFile.Open(gguf))
        {
            Assert.Equal(fileType, (uint)file.Metadata["general.file_type"].Value);
            Assert.Equal(outType, file.GetTensor("blk.0.attn_q.weight").Type);
            Assert.Equal(GgmlType.F32, file.GetTensor("blk.0.attn_norm.weight").Type);
        }
        var prompt = TinyHfCheckpoint.Prompt(64, options.Vocab, 8);
        var reference = ReferenceModel.FromGguf(gguf).Forward(prompt);
        double vsHf = LogitDistance.RelativeL2(reference, ReferenceModel.FromHuggingFace(hf).Forward(prompt));
        double vsLlama = LogitDistance.RelativeL2(LlamaCpp.AllLogits(gguf, prompt), reference);
        output.WriteLine($"{source}→{outType}: reference(GGUF) vs reference(HF) {vsHf:E2}; llama.cpp vs reference(GGUF) {vsLlama:E2}");
        // Same-precision copies are exact; F32→F16 rounds the weights. llama.cpp rounds activations to the weight type too.
        Assert.True(vsHf <= (source == SafetensorsDType.F32 ? 2e-3 : 1e-5), $"vs HF {vsHf:E2}");
        Assert.True(vsLlama <= 1e-2, $"vs llama.cpp {vsLlama:E2}");
    }

    [Fact]
    public void Q8_0_output_loads_in_llama_cpp()
    {
        using var dir = new TempDir();
        var options = TinyModels.Cases["llama-mha"];
        string hf = TinyHfCheckpoint.Write(dir.File("q8"), options);
        string gguf = dir.File("q8.gguf");
        HfToGgufConverter.Convert(hf, gguf, GgmlType.Q8_0, m => TinyHfCheckpoint.AddVocabulary(m, options.Vocab));
        using (var file = GgufFile.Open(gguf))
        {
            Assert.Equal(7u, (uint)file.Metadata["general.file_type"].Value);
            Assert.Equal(2u, (uint)file.Metadata["general.quantization_version"].Value);
        }
        var prompt = TinyHfCheckpoint.Prompt(64, options.Vocab, 8);
        double error = LogitDistance.RelativeL2(LlamaCpp.AllLogits(gguf, prompt), ReferenceModel.FromGguf(gguf).Forward(prompt));
        Assert.True(error <= 2e-2, $"{error:E2}");
    }

    [Fact]
    public void Llama3_rope_factors_follow_convert_hf_to_gguf()
    {
        // theta 500000, head dim 16, original context 64: wavelengths 6.3 (kept), 32.5 (interpolated), ≥ 168 (÷8).
        var f = new Llama3RopeScaling(8, 1, 4, 64).FrequencyFactors(500000, 16);
        Assert.Equal(1f, f[0]);
        double wavelen = 2 * Math.PI * Math.Pow(500000, 2.0 / 16);
        double smooth = (64 / wavelen - 1) / 3;
        Assert.Equal(1 / ((1 - smooth) / 8 + smooth), f[1], 5);
        Assert.All(f[2..], x => Assert.Equal(8f, x));
    }

    [Fact]
    public void Config_from_gguf_matches_config_from_hf()
    {
        foreach (var name in TinyModels.Cases.Keys)
        {
            var (hf, gguf) = models.Get(name);
            var fromHf = ModelConfig.FromHuggingFace(hf);
            using var file = GgufFile.Open(gguf);
            // The tokenizer keys of the test vocabulary say BOS 1 / EOS 2, as config.json does.
            var expected = fromHf with { HfModelType = fromHf.Architecture, RopeScaling = null, EosTokenIds = [] };
            var actual = ModelConfig.FromGguf(file) with { EosTokenIds = [] };
            Assert.Equal(expected with { RmsEpsilon = (float)fromHf.RmsEpsilon, RopeTheta = (float)fromHf.RopeTheta }, actual);
        }
    }
}
