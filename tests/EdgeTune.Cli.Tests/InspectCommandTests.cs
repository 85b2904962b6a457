using System.Text.Json;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Testing;

namespace EdgeTune.Cli.Tests;

public class InspectCommandTests
{
    [Fact]
    public void Text_report_names_architecture_parameters_and_tensors()
    {
        using var dir = new TempDir();
        string path = dir.File("tiny.gguf");
        var config = new TinyLlamaConfig();
        TinyLlama.WriteGguf(path, config);
        var r = CliRunner.Run("inspect", path);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("architecture: llama", r.Stdout);
        Assert.Contains("GGUF v3", r.Stdout);
        Assert.Contains("tokenizer.ggml.tokens", r.Stdout);
        Assert.Contains("(281 items)", r.Stdout); // the vocabulary is summarised, not dumped
        Assert.Contains("blk.0.attn_q.weight", r.Stdout);
        long parameters = TinyLlama.TensorShapes(config).Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b));
        Assert.Contains($"({parameters})", r.Stdout);
        Assert.Equal("", r.Stderr);
    }

    [Fact]
    public void Json_report_is_valid_and_complete()
    {
        using var dir = new TempDir();
        string path = dir.File("tiny.gguf");
        TinyLlama.WriteGguf(path, new TinyLlamaConfig { Layers = 1 });
        var r = CliRunner.Run("inspect", path, "--json");
        Assert.Equal(0, r.ExitCode);
        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        Assert.Equal("llama", root.GetProperty("architecture").GetString());
        Assert.Equal(new FileInfo(path).Length, root.GetProperty("file_size").GetInt64());
        Assert.Equal(12, root.GetProperty("tensors").GetArrayLength()); // embeddings, 9 per layer, output norm, output
        var tokens = root.GetProperty("metadata").GetProperty("tokenizer.ggml.tokens");
        Assert.Equal(281, tokens.GetProperty("length").GetInt32());
        Assert.Equal(256, root.GetProperty("metadata").GetProperty("llama.embedding_length").GetInt32());
        var first = root.GetProperty("tensors")[0];
        Assert.Equal("token_embd.weight", first.GetProperty("name").GetString());
        Assert.Equal("f32", first.GetProperty("type").GetString());
    }

    [Fact]
    public void Bad_files_fail_with_one_line_and_exit_1()
    {
        using var dir = new TempDir();
        string path = dir.File("broken.gguf");
        TinyLlama.WriteGguf(path, new TinyLlamaConfig { Layers = 1 });
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        var r = CliRunner.RunProcess("inspect", path);
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith($"edgetune: {path}: ", r.Stderr);
        Assert.Contains("runs past the end of the file", r.Stderr);
        Assert.Single(r.Stderr.TrimEnd().Split('\n'));
        Assert.Equal("", r.Stdout);

        var missing = CliRunner.Run("inspect", dir.File("nope.gguf"));
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("no such file", missing.Stderr);
    }

    [Fact]
    public void Usage_errors_exit_2_and_help_exits_0()
    {
        Assert.Equal(2, CliRunner.Run("inspect").ExitCode);
        Assert.Equal(2, CliRunner.Run("no-such-verb").ExitCode);
        var bare = CliRunner.Run();
        Assert.Equal(2, bare.ExitCode);
        Assert.Contains("quantize", bare.Stderr); // the verbs are listed
        var help = CliRunner.Run("inspect", "--help");
        Assert.Equal(0, help.ExitCode);
        Assert.Contains("--json", help.Stdout);
        foreach (var verb in new[] { "inspect", "quantize", "convert", "tokenize", "generate", "demo", "profiles", "bench" })
            Assert.Equal(0, CliRunner.Run(verb, "--help").ExitCode);
    }
}
