using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace EdgeTune.Models.Tokenizers;

/// <summary>
/// A pre-tokenizer regex (Hugging Face's Split with behaviour Isolated; llama.cpp's pre-tokenizer regexes),
/// matched per code point. .NET regexes see UTF-16 units, so a letter outside the BMP would be two surrogates
/// that \p{L} does not match, where Oniguruma (HF), JavaScript and llama.cpp see one letter. We therefore
/// match on a copy where each supplementary code point is replaced by one BMP character of the same class
/// (letter, number, other) and cut the original text at the mapped positions.
/// </summary>
internal sealed class SplitPattern
{
    // Hugging Face's patterns for the models we support, and llama.cpp's names for them (llama-vocab.cpp).
    public const string Llama3 = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    public const string Qwen2 = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    public const string Gpt2 = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private readonly Regex _regex;

    public SplitPattern(string pattern)
    {
        Pattern = pattern;
        _regex = new Regex(pattern, RegexOptions.CultureInvariant);
    }

    public string Pattern { get; }

    /// <summary>llama.cpp's tokenizer.ggml.pre name for this pattern, or null when llama.cpp has no such pre-tokenizer.</summary>
    public static string? LlamaCppName(string pattern) => pattern switch
    {
        Llama3 => "llama-bpe",
        Qwen2 => "qwen2",
        Gpt2 => "gpt2",
        _ => null,
    };

    /// <summary>The pattern llama.cpp uses for a tokenizer.ggml.pre name, or null when we do not know it.</summary>
    public static string? ForLlamaCppName(string name) => name switch
    {
        "llama-bpe" or "llama3" or "llama-v3" or "smaug-bpe" => Llama3,
        "qwen2" => Qwen2,
        "gpt2" or "default" => Gpt2,
        _ => null,
    };

    /// <summary>Matches and the text between them, in order (behaviour Isolated: nothing is dropped).</summary>
    public List<string> Split(string text)
    {
        var folded = new StringBuilder(text.Length);
        var start = new List<int>(text.Length + 1); // start[k]: index in text of folded char k
        for (int i = 0; i < text.Length;)
        {
            start.Add(i);
            if (char.IsSurrogatePair(text, i))
            {
                folded.Append(Representative(CharUnicodeInfo.GetUnicodeCategory(char.ConvertToUtf32(text, i))));
                i += 2;
            }
            else folded.Append(text[i++]);
        }
        start.Add(text.Length);

        var pieces = new List<string>();
        int last = 0;
        foreach (Match m in _regex.Matches(folded.ToString()))
        {
            if (m.Length == 0) continue;
            if (m.Index > last) pieces.Add(text[start[last]..start[m.Index]]);
            pieces.Add(text[start[m.Index]..start[m.Index + m.Length]]);
            last = m.Index + m.Length;
        }
        if (last < folded.Length) pieces.Add(text[start[last]..]);
        return pieces;
    }

    // No supplementary character is whitespace, CR or LF, so letter / number / other is all the regexes can tell apart.
    private static char Representative(UnicodeCategory category) => category switch
    {
        UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
            or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => '\uA000', // YI SYLLABLE IT (Lo)
        UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => '\u0660', // ARABIC-INDIC DIGIT ZERO (Nd)
        _ => '\uE000', // private use (Co)
    };
}
