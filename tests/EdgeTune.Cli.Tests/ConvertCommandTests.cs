using System.Text;
using System.Text.Json;
using EdgeTune.Formats.Gguf;
using EdgeTune.Models.Reference;
using EdgeTune.Models.Tokenizers;
using EdgeTune.Testing;
using LLama;
using LLama.Common;

namespace EdgeTune.Cli.Tests;

/// <summary>`edgetune convert` as a user runs it, judged by llama.cpp: it loads the file, tokenizes as Hugging Face does, and computes our logits.</summary>
public class ConvertCommandTests
{
    [Fact]
    public void Converted_checkpoint_with_a_real_tokenizer_runs_in_llama_cpp_like_the_original()
    {
        using var dir = new TempDir();
        string folder = Path.Combine(dir.Path, "tiny-mistral");
        string tokenizerFolder = RealTokenizers.Folder("llama2"); // a real Mistral-style SentencePiece tokenizer.json
        int vocab = HuggingFaceTokenizer.Load(tokenizerFolder).VocabularySize;
        TinyHfCheckpoint.Write(folder, new TinyHfOptions { ModelType = "mistral", Vocab = vocab, Hidden = 64, Heads = 4, KvHeads = 2, Tied = true, MaxShardBytes = 4 << 20 });
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json" })
            File.Copy(Path.Combine(tokenizerFolder, file), Path.Combine(folder, file));
        File.WriteAllText(Path.Combine(folder, "README.md"), "---\nlicense: apache-2.0\n---\n");

        string output = dir.File("tiny-f32.gguf");
        var r = CliRunner.RunProcess("convert", folder, output, "--outtype", "f32");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains($"wrote {output}: llama", r.Stdout);
        Assert.Contains("no chat template", r.Stdout); // this tokenizer_config.json has none

        using (var gguf = GgufFile.Open(output))
        {
            Assert.Equal("apache-2.0", gguf.Metadata.GetString("general.license"));
            Assert.Equal("llama", gguf.Metadata.GetString("tokenizer.ggml.model"));
        }

        // llama.cpp's tokenizer on the converted file equals Hugging Face's on the folder.
        var hf = HuggingFaceTokenizer.Load(folder);
        const string text = "Hello world! Ça va? 東京 🚀 def f(x):\n    return x  # done";
        var parameters = new ModelParams(output) { ContextSize = 256, GpuLayerCount = 0, TypeK = LLama.Native.GGMLType.GGML_TYPE_F32, TypeV = LLama.Native.GGMLType.GGML_TYPE_F32, FlashAttention = false };
        LlamaCpp.EnsureLoaded();
        int[] llamaIds;
        using (var weights = LLamaWeights.LoadFromFile(parameters))
            llamaIds = weights.Tokenize(text, true, true, Encoding.UTF8).Select(t => (int)t).ToArray();
        var ids = hf.Encode(text).ToArray();
        Assert.Equal(ids, llamaIds);

        // And its logits equal our reference forward on the Hugging Face folder.
        var theirs = LlamaCpp.AllLogits(output, ids);
        var ours = ReferenceModel.FromHuggingFace(folder).Forward(ids);
        double error = 0, norm = 0;
        for (int i = 0; i < ours.Length; i++)
        {
            error += Math.Pow(ours[i] - theirs[i], 2);
            norm += Math.Pow(ours[i], 2);
        }
        Assert.True(Math.Sqrt(error / norm) < 1e-3, $"relative L2 error {Math.Sqrt(error / norm):G3}");
    }

    [Fact]
    public void Json_summary_and_bad_input()
    {
        using var dir = new TempDir();
        string folder = Path.Combine(dir.Path, "m");
        TinyHfCheckpoint.Write(folder, new TinyHfOptions());
        var noTokenizer = CliRunner.Run("convert", folder, dir.File("x.gguf"));
        Assert.Equal(1, noTokenizer.ExitCode);
        Assert.Contains("tokenizer.json", noTokenizer.Stderr);
        Assert.False(File.Exists(dir.File("x.gguf")));

        Assert.Equal(2, CliRunner.Run("convert", folder, dir.File("x.gguf"), "--outtype", "q4_k").ExitCode);
        Assert.Equal(1, CliRunner.Run("convert", dir.File("nope"), dir.File("x.gguf")).ExitCode);

        string tokenizerFolder = RealTokenizers.Folder("llama3"); // byte-level BPE with a chat template
        int vocab = HuggingFaceTokenizer.Load(tokenizerFolder).VocabularySize;
        string good = Path.Combine(dir.Path, "good");
        TinyHfCheckpoint.Write(good, new TinyHfOptions { Vocab = vocab, Hidden = 32, Heads = 2, KvHeads = 2, Tied = true });
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json" })
            File.Copy(Path.Combine(tokenizerFolder, file), Path.Combine(good, file));
        var r = CliRunner.Run("convert", good, dir.File("q8.gguf"), "--outtype", "q8_0", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        Assert.Equal("llama", doc.RootElement.GetProperty("architecture").GetString());
        Assert.Contains(doc.RootElement.GetProperty("tensors").EnumerateArray(), t => t.GetProperty("type").GetString() == "q8_0");
        var metadata = doc.RootElement.GetProperty("metadata");
        Assert.Equal("gpt2", metadata.GetProperty("tokenizer.ggml.model").GetString());
        Assert.Equal("llama-bpe", metadata.GetProperty("tokenizer.ggml.pre").GetString());
        Assert.Contains("start_header_id", metadata.GetProperty("tokenizer.chat_template").GetString());
        Assert.NotEmpty(LlamaCpp.LastLogits(dir.File("q8.gguf"), [128000, 9906, 1917]));
    }
}
