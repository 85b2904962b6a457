using System.Text.Json;

namespace EdgeTune.Data.Tests;

/// <summary>Generated rows: distinct random words, so only planted problems are problems.</summary>
internal static class Rows
{
    private static readonly string[] Vocabulary =
        ("apple river stone cloud quiet market engine garden silver orbit candle forest window ladder harbor " +
         "pencil thunder meadow copper lantern valley rocket bridge marble violin desert canyon pepper tunnel " +
         "island falcon velvet summit glacier beacon compass saddle anchor timber crystal willow ember mosaic").Split(' ');

    public static string Words(Random r, int n) => string.Join(' ', Enumerable.Range(0, n).Select(_ => Vocabulary[r.Next(Vocabulary.Length)]));

    public static string Sentence(Random r, int n)
    {
        string s = Words(r, n);
        return char.ToUpperInvariant(s[0]) + s[1..] + ".";
    }

    public static string Alpaca(string instruction, string output, string input = "") =>
        JsonSerializer.Serialize(new { instruction, input, output });

    public static List<string> Clean(int count, int seed = 1)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => Alpaca(Sentence(r, 10), Sentence(r, 8))).ToList();
    }
}
