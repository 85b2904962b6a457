using System.Text.Json;
using EdgeTune.Formats.Onnx;
using EdgeTune.Testing;

namespace EdgeTune.Cli.Tests;

/// <summary>`edgetune export onnx` and `export check-onnx` as a user runs them; the numbers are judged in EdgeTune.Export.Tests.</summary>
public sealed class ExportOnnxCommandTests : IDisposable
{
    private readonly TempDir _dir = new();

    private string Checkpoint()
    {
        string hf = _dir.File("tiny-qwen2");
        if (!Directory.Exists(hf)) TinyHfCheckpoint.Write(hf, new TinyHfOptions { ModelType = "qwen2", Heads = 4, KvHeads = 2, Seed = 3 });
        return hf;
    }

    private string Exported(string name)
    {
        string output = _dir.File(name);
        var r = CliRunner.Run("export", "onnx", Checkpoint(), "--out", output, "--precision", "int4", "--block-size", "32", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        return output;
    }

    [Fact]
    public void Export_writes_the_genai_folder_reports_it_and_checks_clean()
    {
        string output = _dir.File("out");
        var r = CliRunner.Run("export", "onnx", Checkpoint(), "--out", output, "--precision", "int4", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var json = JsonDocument.Parse(r.Stdout);
        Assert.Equal("qwen2", json.RootElement.GetProperty("type").GetString());
        Assert.Equal("int4", json.RootElement.GetProperty("precision").GetString());
        Assert.Contains("export onnx int4:", r.Stderr); // progress goes to stderr
        foreach (var file in new[] { "model.onnx", "model.onnx.data", "genai_config.json" }) Assert.True(File.Exists(Path.Combine(output, file)), file);
        Assert.Empty(Directory.GetDirectories(_dir.Path, ".out.*")); // nothing left aside

        var check = CliRunner.Run("export", "check-onnx", output);
        Assert.True(check.ExitCode == 0, check.Stderr);
        Assert.Contains("ok: qwen2, 2 layers", check.Stdout);
        Assert.Contains("MatMulNBits", check.Stdout);

        var again = CliRunner.Run("export", "onnx", Checkpoint(), "--out", output);
        Assert.Equal(1, again.ExitCode);
        Assert.Contains("already exists", again.Stderr);
    }

    [Fact]
    public void Usage_errors_exit_2_and_help_exits_0()
    {
        Assert.Equal(0, CliRunner.Run("export", "onnx", "--help").ExitCode);
        Assert.Equal(2, CliRunner.Run("export", "onnx", Checkpoint(), "--out", _dir.File("x"), "--precision", "int3").ExitCode);
        Assert.Equal(2, CliRunner.Run("export", "onnx", Checkpoint(), "--out", _dir.File("x"), "--block-size", "48").ExitCode);
        Assert.Equal(2, CliRunner.Run("export", "onnx", Checkpoint()).ExitCode); // --out is required
    }

    [Fact]
    public void Folder_without_genai_config_fails_in_one_line()
    {
        string folder = Exported("no-config");
        File.Delete(Path.Combine(folder, "genai_config.json"));
        AssertOneLineFailure(folder, "genai_config.json: no such file");
    }

    [Fact]
    public void Unknown_op_is_named_with_its_byte_offset()
    {
        string folder = Exported("unknown-op");
        string model = Path.Combine(folder, "model.onnx");
        var (graph, opsets, _) = OnnxModelFile.Read(model);
        int at = graph.Nodes.FindIndex(n => n.OpType == "Sigmoid");
        graph.Nodes[at] = graph.Nodes[at] with { OpType = "Sigmoidish" };
        File.WriteAllBytes(model, OnnxModelFile.Encode(graph, opsets, "test", "0"));
        var message = AssertOneLineFailure(folder, "model.onnx: at byte ");
        Assert.Contains("op 'Sigmoidish'", message);
    }

    [Fact]
    public void Shape_that_contradicts_the_config_is_named()
    {
        string folder = Exported("contradiction");
        string config = Path.Combine(folder, "genai_config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 4", StringComparison.Ordinal));
        var message = AssertOneLineFailure(folder, "model.onnx: at byte ");
        Assert.Contains("'past_key_values.0.key' has shape [batch_size, 2, past_sequence_length, 16]", message);
        Assert.Contains("num_key_value_heads 4", message);
    }

    [Fact]
    public void Truncated_external_data_names_the_file_and_tensor()
    {
        string folder = Exported("truncated");
        string data = Path.Combine(folder, "model.onnx.data");
        using (var f = new FileStream(data, FileMode.Open)) f.SetLength(f.Length - 100);
        var message = AssertOneLineFailure(folder, "model.onnx.data: tensor '");
        Assert.Contains("(truncated?)", message);
    }

    private static string AssertOneLineFailure(string folder, string expected)
    {
        var r = CliRunner.Run("export", "check-onnx", folder);
        Assert.Equal(1, r.ExitCode);
        var lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.Contains(expected, lines[0]);
        Assert.Empty(r.Stdout);
        return lines[0];
    }

    public void Dispose() => _dir.Dispose();
}
