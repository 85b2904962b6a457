using EdgeTune.Core;
using EdgeTune.Export.Onnx;
using EdgeTune.Models.Conversion;
using EdgeTune.Models.Tokenizers;
using EdgeTune.Testing;
using Microsoft.ML.OnnxRuntimeGenAI;
using Xunit.Abstractions;

namespace EdgeTune.Export.Tests;

/// <summary>
/// A GGUF's vocabulary written out as tokenizer.json: ONNX Runtime GenAI's tokenizer (onnxruntime-extensions)
/// must split text into the ids Hugging Face's tokenizer gives on the original tokenizer.json.
/// </summary>
public sealed class TokenizerExportTests(ITestOutputHelper output)
{
    private static readonly string[] Texts =
    [
        "Hello world", " leading space and trailing ", "multi\nline  text with   spaces", "émoji 🚀 and 中文 text",
        "numbers 12345 and 3.14", "The ticket: {\"priority\": \"high\"}",
    ];

    [Theory]
    [InlineData("llama2")]
    [InlineData("llama3")]
    [InlineData("qwen3")]
    public void GenAi_encodes_like_hugging_face_from_a_gguf_vocabulary(string name)
    {
        using var dir = new TempDir();
        string source = RealTokenizers.Folder(name);
        var hf = HuggingFaceTokenizer.Load(source);
        string folder = dir.File("hf");
        TinyHfCheckpoint.Write(folder, new TinyHfOptions { ModelType = "llama", Vocab = hf.VocabularySize, Hidden = 32, Heads = 2, KvHeads = 1, Intermediate = 64, Layers = 1 });
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json" }) File.Copy(Path.Combine(source, file), Path.Combine(folder, file));
        string gguf = dir.File("model.gguf");
        var vocabulary = GgufVocabulary.FromHuggingFace(folder);
        HfToGgufConverter.Convert(folder, gguf, GgmlType.F32, m => { foreach (var (k, v) in vocabulary) m.Set(k, v); });
        string onnx = dir.File("onnx");
        OnnxExporter.Export(gguf, onnx, new OnnxExportOptions());

        using var model = new Model(onnx);
        using var tokenizer = new Tokenizer(model);
        foreach (var text in Texts)
        {
            var expected = hf.Encode(text, addSpecialTokens: false).ToArray(); // GenAI adds no BOS here (nor on the original files): templates carry it
            using var sequences = tokenizer.Encode(text);
            var actual = sequences[0].ToArray();
            output.WriteLine($"{name}: \"{text}\" → [{string.Join(' ', actual)}]");
            Assert.Equal(expected, actual);
            // onnxruntime-extensions keeps SentencePiece's leading "▁" as a space where transformers strips it.
            Assert.Equal(text.TrimStart(' '), tokenizer.Decode(actual).TrimStart(' '));
        }
    }
}
