using System.Text.Json;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Testing;

namespace EdgeTune.Cli.Tests;

public class TokenizeCommandTests
{
    [Fact]
    public void Hugging_Face_folder_gives_ids_and_pieces_as_json()
    {
        var r = CliRunner.Run("tokenize", "--model", RealTokenizers.Folder("llama3"), "--text", "Hello world<|eot_id|>", "--json");
        Assert.Equal(0, r.ExitCode);
        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        // Llama 3's tokenizer.json adds no BOS (its post-processor is ByteLevel only); <|eot_id|> is one special token.
        Assert.Equal([9906, 1917, 128009], root.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(["Hello", "Ġworld", "<|eot_id|>"], root.GetProperty("pieces").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(["Hello", " world", "<|eot_id|>"], root.GetProperty("texts").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal("huggingface", root.GetProperty("tokenizer").GetString());
        Assert.Equal("", r.Stderr);
    }

    [Fact]
    public void Gguf_file_tokenizes_as_llama_cpp_with_bos()
    {
        using var dir = new TempDir();
        string path = dir.File("tiny.gguf");
        TinyLlama.WriteGguf(path, new TinyLlamaConfig { Layers = 1 });
        var r = CliRunner.RunProcess("tokenize", "--model", path, "--text", "hello world </s>", "--json");
        Assert.Equal(0, r.ExitCode);
        using var doc = JsonDocument.Parse(r.Stdout);
        var ids = doc.RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();

        LlamaCpp.EnsureLoaded();
        using var weights = LLama.LLamaWeights.LoadFromFile(new LLama.Common.ModelParams(path) { GpuLayerCount = 0, VocabOnly = true });
        var expected = weights.Tokenize("hello world </s>", true, true, System.Text.Encoding.UTF8).Select(t => (int)t).ToArray();
        Assert.Equal(expected, ids);
        Assert.Equal(1, ids[0]); // BOS
        Assert.Equal(2, ids[^1]); // </s> parsed as the special token
        Assert.Equal("<s>", doc.RootElement.GetProperty("pieces")[0].GetString());
    }

    [Fact]
    public void Text_output_lists_id_piece_and_text()
    {
        var r = CliRunner.Run("tokenize", "--model", RealTokenizers.Folder("qwen3"), "--text", "Hi there");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal(["2 tokens (huggingface tokenizer of " + RealTokenizers.Folder("qwen3") + ")", "  13048  Hi  \"Hi\"", "   1052  Ġthere  \" there\""],
            r.Stdout.ReplaceLineEndings("\n").TrimEnd().Split('\n'));
    }

    [Fact]
    public void Missing_tokenizer_json_names_the_file()
    {
        using var dir = new TempDir();
        var r = CliRunner.RunProcess("tokenize", "--model", dir.Path, "--text", "hi");
        Assert.Equal(1, r.ExitCode);
        Assert.Equal($"edgetune: {Path.Combine(dir.Path, "tokenizer.json")}: no such file (a Hugging Face tokenizer folder holds tokenizer.json)\n", r.Stderr.ReplaceLineEndings("\n"));
        Assert.Equal("", r.Stdout);
    }

    [Fact]
    public void Malformed_json_names_file_line_and_byte()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("tokenizer.json"), "{\n  \"model\": {\n    \"type\": \"BPE\",,\n  }\n}\n");
        var r = CliRunner.RunProcess("tokenize", "--model", dir.Path, "--text", "hi");
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith($"edgetune: {dir.File("tokenizer.json")}: line 3, byte 19: malformed JSON", r.Stderr);
        Assert.Single(r.Stderr.Trim().Split('\n')); // one line, no stack trace
    }

    [Fact]
    public void Malformed_config_json_is_reported_too()
    {
        using var dir = new TempDir();
        File.Copy(Path.Combine(RealTokenizers.Folder("llama2"), "tokenizer.json"), dir.File("tokenizer.json"));
        File.WriteAllText(dir.File("tokenizer_config.json"), "{\"bos_token\": \"<s>\"");
        var r = CliRunner.Run("tokenize", "--model", dir.Path, "--text", "hi");
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith($"edgetune: {dir.File("tokenizer_config.json")}: line 1, byte ", r.Stderr);
    }

    [Fact]
    public void Unsupported_component_names_the_key()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("tokenizer.json"), """{"model": {"type": "WordPiece", "vocab": {}}}""");
        var r = CliRunner.Run("tokenize", "--model", dir.Path, "--text", "hi");
        Assert.Equal(1, r.ExitCode);
        Assert.Equal($"edgetune: {dir.File("tokenizer.json")}: key 'model.type': 'WordPiece' is not supported (BPE only: Llama, Mistral, Qwen, TinyLlama)\n", r.Stderr.ReplaceLineEndings("\n"));
    }

    [Fact]
    public void Missing_model_is_exit_1_and_missing_text_is_usage()
    {
        var r = CliRunner.Run("tokenize", "--model", "/nonexistent/model.gguf", "--text", "hi");
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("edgetune: /nonexistent/model.gguf: no such file or folder\n", r.Stderr.ReplaceLineEndings("\n"));
        var usage = CliRunner.Run("tokenize", "--model", "x");
        Assert.Equal(2, usage.ExitCode);
        Assert.Contains("--text", usage.Stderr);
    }
}
