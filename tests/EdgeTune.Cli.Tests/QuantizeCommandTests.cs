using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Testing;

namespace EdgeTune.Cli.Tests;

public class QuantizeCommandTests
{
    [Fact]
    public void Quantizes_a_model_that_llama_cpp_then_runs()
    {
        using var dir = new TempDir();
        string input = dir.File("f32.gguf"), output = dir.File("q8.gguf");
        TinyLlama.WriteGguf(input, new TinyLlamaConfig { Layers = 1 });
        var r = CliRunner.RunProcess("quantize", input, output, "Q8_0", "--threads", "2");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("wrote " + output, r.Stdout);
        Assert.Contains("quantize Q8_0:", r.Stderr); // progress lines when stderr is not a terminal
        using (var file = GgufFile.Open(output))
        {
            Assert.Equal(GgmlType.Q8_0, file.GetTensor("blk.0.attn_q.weight").Type);
            Assert.Equal(GgmlType.F32, file.GetTensor("blk.0.attn_norm.weight").Type);
            Assert.Equal(7L, file.Metadata.GetInteger("general.file_type"));
        }
        var logits = LlamaCpp.LastLogits(output, [1, 260, 270]);
        Assert.All(logits, l => Assert.True(float.IsFinite(l)));
    }

    [Fact]
    public void Dry_run_json_lists_the_plan_and_writes_nothing()
    {
        using var dir = new TempDir();
        string input = dir.File("f32.gguf");
        TinyLlama.WriteGguf(input, new TinyLlamaConfig { Layers = 8 });
        var r = CliRunner.Run("quantize", input, dir.File("out.gguf"), "q4_k_m", "--dry-run", "--json");
        Assert.Equal(0, r.ExitCode);
        Assert.False(File.Exists(dir.File("out.gguf")));
        using var doc = JsonDocument.Parse(r.Stdout);
        var types = doc.RootElement.GetProperty("tensors").EnumerateArray()
            .ToDictionary(t => t.GetProperty("name").GetString()!, t => t.GetProperty("to").GetString());
        Assert.Equal("q6_K", types["output.weight"]);
        Assert.Equal("q6_K", types["blk.0.attn_v.weight"]);
        Assert.Equal("q4_K", types["blk.1.attn_v.weight"]);
        Assert.Equal("f32", types["blk.1.ffn_norm.weight"]);
    }

    [Fact]
    public void Refuses_bad_input_without_touching_the_output()
    {
        using var dir = new TempDir();
        string output = dir.File("out.gguf");
        File.WriteAllText(output, "keep me");
        File.WriteAllText(dir.File("junk.gguf"), "GGUF but not really");
        var r = CliRunner.Run("quantize", dir.File("junk.gguf"), output, "Q4_0");
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith($"edgetune: {dir.File("junk.gguf")}: at byte ", r.Stderr);
        Assert.Equal("keep me", File.ReadAllText(output));

        Assert.Equal(2, CliRunner.Run("quantize", dir.File("junk.gguf"), output, "Q7_X").ExitCode);
        Assert.Equal(2, CliRunner.Run("quantize", dir.File("junk.gguf"), output, "Q4_0", "--threads", "-3").ExitCode);
    }

    [Fact]
    public void Refuses_to_requantize_unless_asked()
    {
        using var dir = new TempDir();
        string q8 = dir.File("q8.gguf");
        TinyLlama.WriteGguf(q8, new TinyLlamaConfig { Layers = 1 }, GgmlType.Q8_0);
        var refused = CliRunner.Run("quantize", q8, dir.File("q4.gguf"), "Q4_0");
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("already quantised (q8_0)", refused.Stderr);
        var allowed = CliRunner.Run("quantize", q8, dir.File("q4.gguf"), "Q4_0", "--allow-requantize");
        Assert.True(allowed.ExitCode == 0, allowed.Stderr);
    }
}
