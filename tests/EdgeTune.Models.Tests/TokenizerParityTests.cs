using EdgeTune.Models.Tokenizers;

namespace EdgeTune.Models.Tests;

/// <summary>
/// Four tokenizers must give the same ids for every corpus text: ours on tokenizer.json, transformers.js on the
/// same file (Hugging Face), llama.cpp on the GGUF we wrote from it, and ours on that GGUF.
/// </summary>
public abstract class TokenizerParityTests<T>(T f) where T : TokenizerFixture
{
    [Fact]
    public void Hugging_Face_ids_equal_transformers_js()
    {
        var wrong = new List<string>();
        for (int i = 0; i < f.Texts.Length; i++)
        {
            Check(wrong, f.Texts[i], "add special", f.JsWithSpecial[i], f.Hf.Encode(f.Texts[i], addSpecialTokens: true));
            Check(wrong, f.Texts[i], "no special", f.JsWithoutSpecial[i], f.Hf.Encode(f.Texts[i], addSpecialTokens: false));
        }
        Assert.True(wrong.Count == 0, string.Join("\n", wrong));
    }

    [Fact]
    public void Llama_cpp_ids_on_our_gguf_equal_Hugging_Face_and_our_gguf_tokenizer()
    {
        var wrong = new List<string>();
        for (int i = 0; i < f.Texts.Length; i++)
        {
            string text = f.Texts[i];
            foreach (bool add in new[] { true, false })
            {
                var js = add ? f.JsWithSpecial[i] : f.JsWithoutSpecial[i];
                var llama = f.LlamaCppIds(text, add, parseSpecial: true);
                Check(wrong, text, $"llama.cpp vs transformers.js, add={add}", js, llama);
                Check(wrong, text, $"our GGUF tokenizer vs llama.cpp, add={add}", llama, f.Gguf.Encode(text, add, parseSpecial: true));
            }
        }
        Assert.True(wrong.Count == 0, string.Join("\n", wrong));
    }

    [Fact]
    public void Special_text_stays_text_when_not_parsed()
    {
        var wrong = new List<string>();
        foreach (var text in f.Texts)
        {
            var llama = f.LlamaCppIds(text, addSpecial: false, parseSpecial: false);
            Check(wrong, text, "our GGUF tokenizer vs llama.cpp, parse_special=false", llama, f.Gguf.Encode(text, false, parseSpecial: false));
            Check(wrong, text, "our HF tokenizer vs llama.cpp, parse_special=false", llama, f.Hf.Encode(text, false, parseSpecial: false));
        }
        Assert.True(wrong.Count == 0, string.Join("\n", wrong));
    }

    [Fact]
    public void Decode_round_trips()
    {
        foreach (var text in f.Texts)
        {
            // Special text kept as text: SentencePiece decoders put a space after a special token, as HF's do.
            Assert.Equal(text, f.Hf.Decode(f.Hf.Encode(text, addSpecialTokens: false, parseSpecial: false)));
            Assert.Equal(text, f.Gguf.Decode(f.Gguf.Encode(text, addSpecialTokens: false, parseSpecial: false)));
            // BOS/EOS are special: skipping them gives the text back.
            Assert.Equal(text, f.Hf.Decode(f.Hf.Encode(text, addSpecialTokens: true, parseSpecial: false), skipSpecialTokens: true));
        }
    }

    [Fact]
    public void Special_ids_and_pieces_agree()
    {
        Assert.Equal(f.Hf.VocabularySize, f.Gguf.VocabularySize);
        Assert.Equal(f.Hf.BosId, f.Gguf.BosId);
        Assert.Equal(f.Hf.EosId, f.Gguf.EosId);
        for (int id = 0; id < f.Hf.VocabularySize; id += 97)
        {
            if (f.Hf.Piece(id).Length > 0) Assert.Equal(f.Hf.Piece(id), f.Gguf.Piece(id));
            Assert.Equal(f.Hf.IsSpecial(id), f.Gguf.IsSpecial(id));
        }
    }

    private static void Check(List<string> wrong, string text, string what, IReadOnlyList<int> expected, IReadOnlyList<int> actual)
    {
        if (!expected.SequenceEqual(actual))
            wrong.Add($"{what}: {System.Text.Json.JsonSerializer.Serialize(text)}\n  expected [{string.Join(",", expected)}]\n  actual   [{string.Join(",", actual)}]");
    }
}

public sealed class Llama3ParityTests(Llama3Tokenizer f) : TokenizerParityTests<Llama3Tokenizer>(f), IClassFixture<Llama3Tokenizer>;
public sealed class Qwen3ParityTests(Qwen3Tokenizer f) : TokenizerParityTests<Qwen3Tokenizer>(f), IClassFixture<Qwen3Tokenizer>;
public sealed class Llama2ParityTests(Llama2Tokenizer f) : TokenizerParityTests<Llama2Tokenizer>(f), IClassFixture<Llama2Tokenizer>;
