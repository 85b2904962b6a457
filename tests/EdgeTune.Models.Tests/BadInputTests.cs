using EdgeTune.Core;
using EdgeTune.Formats.Safetensors;
using EdgeTune.Models.Architectures;
using EdgeTune.Models.Conversion;
using EdgeTune.Models.Reference;
using EdgeTune.Testing;

namespace EdgeTune.Models.Tests;

/// <summary>Bad checkpoints fail with one line that names the file and the key or tensor, from every entry point.</summary>
public sealed class BadInputTests : IDisposable
{
    private readonly TempDir _dir = new();
    private static readonly TinyHfOptions Small = new() { Vocab = 300, Hidden = 32, Intermediate = 64, Layers = 1 };

    public void Dispose() => _dir.Dispose();

    /// <summary>Every way in must fail the same way: config, reference model and converter.</summary>
    private string Fails(string folder)
    {
        var fromReference = Assert.ThrowsAny<EdgeTuneException>(() => ReferenceModel.FromHuggingFace(folder));
        var fromConverter = Assert.ThrowsAny<EdgeTuneException>(() => HfToGgufConverter.Convert(folder, _dir.File("out.gguf"), GgmlType.F32));
        Assert.Equal(fromReference.Message, fromConverter.Message);
        Assert.DoesNotContain('\n', fromReference.Message);
        Assert.False(File.Exists(_dir.File("out.gguf")));
        return fromReference.Message;
    }

    private string WriteWithConfig(string name, Func<string, string> editConfig)
    {
        string folder = TinyHfCheckpoint.Write(_dir.File(name), Small);
        string config = Path.Combine(folder, "config.json");
        File.WriteAllText(config, editConfig(File.ReadAllText(config)));
        return folder;
    }

    [Fact]
    public void Missing_config_key_names_file_and_key()
    {
        string folder = WriteWithConfig("missing", c => c.Replace("  \"hidden_size\": 32,\n", ""));
        string message = Fails(folder);
        Assert.Contains("config.json", message);
        Assert.Contains("'hidden_size'", message);
        Assert.Contains("missing", message);
    }

    [Fact]
    public void Hidden_size_not_divisible_by_heads_names_the_key()
    {
        string folder = WriteWithConfig("indivisible", c => c.Replace("\"num_attention_heads\": 4", "\"num_attention_heads\": 3"));
        string message = Fails(folder);
        Assert.Contains("config.json: key 'hidden_size': 32 is not divisible by num_attention_heads 3", message);
    }

    [Fact]
    public void Kv_heads_not_dividing_heads_names_the_key()
    {
        string folder = WriteWithConfig("kv", c => c.Replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3"));
        Assert.Contains("key 'num_key_value_heads'", Fails(folder));
    }

    [Fact]
    public void Wrongly_typed_value_names_the_key()
    {
        string folder = WriteWithConfig("typed", c => c.Replace("\"vocab_size\": 300", "\"vocab_size\": \"300\""));
        Assert.Contains("key 'vocab_size': must be an integer", Fails(folder));
    }

    [Fact]
    public void Unknown_architecture_names_model_type()
    {
        string folder = WriteWithConfig("arch", c => c.Replace("\"model_type\": \"llama\"", "\"model_type\": \"gpt_neox\""));
        string message = Fails(folder);
        Assert.Contains("config.json: key 'model_type': unknown architecture 'gpt_neox'", message);
    }

    [Fact]
    public void Unsupported_rope_scaling_names_the_key()
    {
        string folder = WriteWithConfig("yarn", c => c.Replace("\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}"));
        Assert.Contains("key 'rope_scaling.rope_type': 'yarn' is not supported", Fails(folder));
    }

    [Fact]
    public void Shape_that_does_not_match_config_names_file_and_tensor()
    {
        // The checkpoint's MLP is 64 wide; config.json says 96.
        string folder = WriteWithConfig("shape", c => c.Replace("\"intermediate_size\": 64", "\"intermediate_size\": 96"));
        string message = Fails(folder);
        Assert.Contains("model.safetensors: tensor 'model.layers.0.mlp.gate_proj.weight': shape [64, 32] does not match config.json (expected [96, 32])", message);
    }

    [Fact]
    public void Missing_tensor_names_the_tensor()
    {
        string folder = TinyHfCheckpoint.Write(_dir.File("tensor"), Small, skip: n => n == "model.layers.0.self_attn.k_proj.weight");
        string message = Fails(folder);
        Assert.Contains("model.safetensors: tensor 'model.layers.0.self_attn.k_proj.weight': missing", message);
    }

    [Fact]
    public void Unexpected_tensor_names_the_tensor()
    {
        // An untied checkpoint described as tied: lm_head is ignored, but a stray tensor is not.
        string folder = TinyHfCheckpoint.Write(_dir.File("extra"), Small with { Layers = 2 });
        File.WriteAllText(Path.Combine(folder, "config.json"), TinyHfCheckpoint.ConfigJson(Small));
        Assert.Contains("tensor 'model.layers.1.input_layernorm.weight': not part of a llama model", Fails(folder));
    }

    [Fact]
    public void Missing_shard_names_index_and_shard()
    {
        string folder = TinyHfCheckpoint.Write(_dir.File("shards"), Small with { MaxShardBytes = 20_000 });
        string[] shards = Directory.GetFiles(folder, "model-*.safetensors").Order().ToArray();
        Assert.True(shards.Length > 2);
        File.Delete(shards[1]);
        string message = Fails(folder);
        Assert.Contains(SafetensorsCheckpoint.IndexFileName, message);
        Assert.Contains($"shard file '{Path.GetFileName(shards[1])}' does not exist", message);
    }

    [Fact]
    public void Sharded_checkpoint_converts_like_a_single_file()
    {
        string single = TinyHfCheckpoint.Write(_dir.File("one"), Small);
        string sharded = TinyHfCheckpoint.Write(_dir.File("many"), Small with { MaxShardBytes = 20_000 });
        var prompt = TinyHfCheckpoint.Prompt(16, Small.Vocab, 1);
        Assert.Equal(ReferenceModel.FromHuggingFace(single).Forward(prompt), ReferenceModel.FromHuggingFace(sharded).Forward(prompt));
    }

    [Fact]
    public void Missing_config_file_names_it()
    {
        string folder = TinyHfCheckpoint.Write(_dir.File("noconfig"), Small);
        File.Delete(Path.Combine(folder, "config.json"));
        Assert.Contains("config.json: no such file", Fails(folder));
    }

    [Fact]
    public void Unsupported_output_type_is_refused()
    {
        string folder = TinyHfCheckpoint.Write(_dir.File("q4"), Small);
        var e = Assert.Throws<EdgeTuneException>(() => HfToGgufConverter.Convert(folder, _dir.File("q4.gguf"), GgmlType.Q4_K));
        Assert.Contains("q4_K is not supported for conversion", e.Message);
    }

    [Fact]
    public void Gguf_with_unknown_architecture_names_the_key()
    {
        string path = _dir.File("arch.gguf");
        var w = new Formats.Gguf.GgufWriter();
        w.Metadata.Set("general.architecture", Formats.Gguf.GgufValue.String("falcon"));
        w.Write(path);
        using var file = Formats.Gguf.GgufFile.Open(path);
        var e = Assert.ThrowsAny<EdgeTuneException>(() => ModelConfig.FromGguf(file));
        Assert.Contains("arch.gguf: key 'general.architecture': unknown architecture 'falcon'", e.Message);
    }
}
