using EdgeTune.Formats.Synthetic;
using EdgeTune.Testing;

namespace EdgeTune.Cli.Tests;

/// <summary>
/// `export onnx` says when the GGUF's SentencePiece vocabulary holds pieces whose characters are not pieces: ONNX Runtime
/// GenAI's tokenizer (Hugging Face BPE) would tokenize text with them differently from llama.cpp.
/// </summary>
public class ExportOnnxTokenizerWarningTests
{
    [Fact]
    public void A_vocabulary_without_its_alphabet_is_named_in_one_warning_line_and_a_complete_one_is_not()
    {
        using var dir = new TempDir();
        string complete = dir.File("complete.gguf"), gaps = dir.File("gaps.gguf");
        // The tiny vocabulary plus the characters its pieces are made of: complete. Plus "▁zqx", whose 'z', 'q'
        // and 'x' stand alone nowhere in it: one piece GenAI cannot reach.
        var alphabet = TinyLlama.Pieces.SelectMany(p => p.Select(c => c.ToString())).Distinct().Where(c => !TinyLlama.Pieces.Contains(c)).ToList();
        var config = new TinyLlamaConfig { Embedding = 32, Layers = 1, Heads = 2, KvHeads = 1, FeedForward = 64, ExtraTokens = alphabet.Count, ExtraPieces = alphabet };
        TinyLlama.WriteGguf(complete, config);
        TinyLlama.WriteGguf(gaps, config with { ExtraTokens = alphabet.Count + 1, ExtraPieces = [.. alphabet, "▁zqx"] });
        var clean = CliRunner.Run("export", "onnx", complete, "--out", dir.File("a"));
        Assert.True(clean.ExitCode == 0, clean.Stderr);
        var warned = CliRunner.Run("export", "onnx", gaps, "--out", dir.File("b"));
        Assert.True(warned.ExitCode == 0, warned.Stderr);
        var lines = warned.Stderr.Split('\n').Where(l => l.StartsWith("edgetune: warning:", StringComparison.Ordinal)).ToList();
        Assert.Single(lines);
        Assert.Contains("vocabulary pieces hold characters that are not pieces themselves", lines[0], StringComparison.Ordinal);
        Assert.Contains("1 of ", lines[0], StringComparison.Ordinal);
        Assert.Contains("'q' 'x' 'z'", lines[0], StringComparison.Ordinal);
        Assert.DoesNotContain("not pieces themselves", clean.Stderr, StringComparison.Ordinal);
    }
}
