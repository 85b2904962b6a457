using System.Text.RegularExpressions;

namespace EdgeTune.Retrieval.Tests;

/// <summary>A stand-in for a model's tokenizer: one id per word and per punctuation mark (the CLI and evaluation tests use a real GGUF's).</summary>
internal static partial class WordTokenizer
{
    [GeneratedRegex(@"\w+|[^\w\s]")]
    private static partial Regex Token();

    public static int[] Tokenize(string text) => Token().Matches(text).Select(m => m.Value.GetHashCode(StringComparison.Ordinal) & 0x7fff).ToArray();
}
