using System.Text.Json;
using EdgeTune.Formats.Safetensors;
using EdgeTune.Testing;

namespace EdgeTune.Cli.Tests;

public class InspectCheckpointTests
{
    private static void WriteCheckpoint(string folder, long maxShardBytes)
    {
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "config.json"),
            """{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 1, "_name_or_path": "acme/tiny"}""");
        File.WriteAllText(Path.Combine(folder, "README.md"), "---\nlicense: apache-2.0\nlanguage: en\n---\n# Tiny\n");
        var writer = new SafetensorsCheckpointWriter(maxShardBytes);
        writer.AddTensor("model.embed_tokens.weight", SafetensorsDType.BF16, [100, 64], new byte[100 * 64 * 2]);
        writer.AddTensor("model.layers.0.self_attn.q_proj.weight", SafetensorsDType.F32, [64, 64], new byte[64 * 64 * 4]);
        writer.AddTensor("model.norm.weight", SafetensorsDType.F32, [64], new byte[64 * 4]);
        writer.Write(folder);
    }

    [Fact]
    public void Sharded_hugging_face_folder_is_summarised()
    {
        using var dir = new TempDir();
        string folder = Path.Combine(dir.Path, "tiny");
        WriteCheckpoint(folder, maxShardBytes: 16_000);
        var r = CliRunner.Run("inspect", folder, "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        Assert.Equal("llama (LlamaForCausalLM)", root.GetProperty("architecture").GetString());
        Assert.Equal("apache-2.0", root.GetProperty("license").GetString());
        Assert.Equal("acme/tiny", root.GetProperty("name").GetString());
        Assert.Equal(100 * 64 + 64 * 64 + 64, root.GetProperty("parameters").GetInt64());
        Assert.Equal("pytorch", root.GetProperty("shape_order").GetString());
        Assert.Equal(64, root.GetProperty("metadata").GetProperty("hidden_size").GetInt32());
        var embed = root.GetProperty("tensors").EnumerateArray().Single(t => t.GetProperty("name").GetString() == "model.embed_tokens.weight");
        Assert.Equal("BF16", embed.GetProperty("type").GetString());
        Assert.Equal(12800, embed.GetProperty("bytes").GetInt64());
        Assert.StartsWith("model-0000", embed.GetProperty("file").GetString());
    }

    [Fact]
    public void Single_safetensors_file_is_summarised_as_text()
    {
        using var dir = new TempDir();
        string folder = Path.Combine(dir.Path, "tiny");
        WriteCheckpoint(folder, maxShardBytes: 1 << 30);
        var r = CliRunner.Run("inspect", Path.Combine(folder, "model.safetensors"));
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("format:       safetensors (3 tensors)", r.Stdout);
        Assert.Contains("architecture: llama (LlamaForCausalLM)", r.Stdout);
        Assert.Contains("model.layers.0.self_attn.q_proj.weight", r.Stdout);
        Assert.Contains("[64, 64]", r.Stdout);
    }

    [Fact]
    public void Folder_problems_are_named()
    {
        using var dir = new TempDir();
        var noConfig = CliRunner.Run("inspect", dir.Path);
        Assert.Equal(1, noConfig.ExitCode);
        Assert.Contains("no config.json", noConfig.Stderr);

        File.WriteAllText(dir.File("config.json"), "{\n  \"model_type\": \"llama\",\n  oops\n}");
        var badJson = CliRunner.Run("inspect", dir.Path);
        Assert.Equal(1, badJson.ExitCode);
        Assert.Contains("config.json: line 3, column 3: invalid JSON", badJson.Stderr);

        File.WriteAllText(dir.File("config.json"), "{}");
        File.WriteAllText(dir.File("pytorch_model.bin"), "");
        var noWeights = CliRunner.Run("inspect", dir.Path);
        Assert.Equal(1, noWeights.ExitCode);
        Assert.Contains("safetensors only", noWeights.Stderr);
    }
}
