using EdgeTune.Formats.Gguf;
using EdgeTune.Models.Tokenizers;
using EdgeTune.Testing;

namespace EdgeTune.Models.Tests;

/// <summary>The keys and exact types llama.cpp checks (llama-vocab.cpp reads ids as UINT32, flags as BOOL).</summary>
public class GgufVocabularyTests
{
    [Theory]
    [InlineData("qwen3", "gpt2", "qwen2")]
    [InlineData("llama2", "llama", null)]
    public void Keys_and_types_are_as_llama_cpp_reads_them(string name, string model, string? pre)
    {
        var keys = GgufVocabulary.FromHuggingFace(RealTokenizers.Folder(name)).ToDictionary(k => k.Key, k => k.Value);
        Assert.Equal(model, keys["tokenizer.ggml.model"].AsString());
        Assert.Equal(pre, keys.GetValueOrDefault("tokenizer.ggml.pre")?.AsString());
        Assert.Equal("ARRAY[STRING]", keys["tokenizer.ggml.tokens"].Describe());
        Assert.Equal("ARRAY[INT32]", keys["tokenizer.ggml.token_type"].Describe());
        Assert.Equal(model == "gpt2" ? "ARRAY[STRING]" : null, keys.GetValueOrDefault("tokenizer.ggml.merges")?.Describe());
        Assert.Equal(model == "llama" ? "ARRAY[FLOAT32]" : null, keys.GetValueOrDefault("tokenizer.ggml.scores")?.Describe());
        foreach (var (key, value) in keys.Where(k => k.Key.EndsWith("_token_id", StringComparison.Ordinal))) Assert.Equal("UINT32", value.Describe());
        Assert.Equal("BOOL", keys["tokenizer.ggml.add_bos_token"].Describe());
        Assert.Equal("BOOL", keys["tokenizer.ggml.add_eos_token"].Describe());
        int n = keys["tokenizer.ggml.tokens"].ArrayLength;
        Assert.Equal(n, keys["tokenizer.ggml.token_type"].ArrayLength);
    }

    [Fact]
    public void Token_types_follow_convert_hf_to_gguf()
    {
        var keys = GgufVocabulary.FromHuggingFace(RealTokenizers.Folder("llama2")).ToDictionary(k => k.Key, k => k.Value);
        var types = keys["tokenizer.ggml.token_type"].AsArray<int>();
        var tokens = keys["tokenizer.ggml.tokens"].AsArray<string>();
        Assert.Equal((int)GgufTokenType.Unknown, types[0]); // <unk>
        Assert.Equal((int)GgufTokenType.Control, types[1]); // <s>
        Assert.Equal("<0x0A>", tokens[13]);
        Assert.Equal((int)GgufTokenType.Byte, types[13]);
        Assert.Equal((int)GgufTokenType.Normal, types[1000]);
        Assert.True(keys["tokenizer.ggml.add_bos_token"].AsBool());

        var qwen = GgufVocabulary.FromHuggingFace(RealTokenizers.Folder("qwen3")).ToDictionary(k => k.Key, k => k.Value);
        var qt = qwen["tokenizer.ggml.token_type"].AsArray<int>();
        var qtokens = qwen["tokenizer.ggml.tokens"].AsArray<string>();
        Assert.Equal((int)GgufTokenType.Control, qt[Array.IndexOf(qtokens, "<|im_end|>")]);
        Assert.Equal((int)GgufTokenType.UserDefined, qt[Array.IndexOf(qtokens, "<think>")]);
        Assert.False(qwen["tokenizer.ggml.add_bos_token"].AsBool());
    }
}
