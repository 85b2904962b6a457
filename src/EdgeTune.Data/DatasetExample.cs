using System.Text;
using EdgeTune.Models.Chat;

namespace EdgeTune.Data;

/// <summary>
/// One training example as a conversation (system, user and assistant turns; the last turn is the answer),
/// with an optional class label, where it was read (file and 1-based line) and its provenance (source,
/// device, time, feedback: whatever the input carried).
/// </summary>
public sealed record DatasetExample(
    IReadOnlyList<ChatMessage> Messages,
    string? Label,
    string File,
    long Line,
    IReadOnlyDictionary<string, string> Provenance)
{
    /// <summary>The value of the --stratify field (<see cref="Strata"/>), when reading was asked for one.</summary>
    public string? Stratum { get; init; }

    /// <summary>The answer: the content of the last assistant turn.</summary>
    public string Answer => Messages.LastOrDefault(m => m.Role == "assistant")?.Content ?? "";

    /// <summary>Everything before the last assistant turn, normalised: what "the same input" means for conflicts.</summary>
    public string NormalisedInput
    {
        get
        {
            int last = LastAssistant;
            return Join(Messages.Take(last < 0 ? Messages.Count : last));
        }
    }

    /// <summary>The whole conversation, normalised: what "the same example" means for duplicates and splits.</summary>
    public string NormalisedText => Join(Messages);

    /// <summary>The seed-free identity of the example (first 8 bytes of SHA-256 of <see cref="NormalisedText"/>).</summary>
    public ulong Hash => TextHash.Of(NormalisedText);

    private int LastAssistant
    {
        get
        {
            for (int i = Messages.Count - 1; i >= 0; i--) if (Messages[i].Role == "assistant") return i;
            return -1;
        }
    }

    private static string Join(IEnumerable<ChatMessage> messages) =>
        string.Join('\u001f', messages.Select(m => m.Role + ":" + Normaliser.Normalise(m.Content)));
}

/// <summary>Text normalisation for duplicate detection: case, whitespace runs and surrounding space do not count.</summary>
public static class Normaliser
{
    public static string Normalise(string text)
    {
        var sb = new StringBuilder(text.Length);
        bool space = false;
        foreach (char c in text)
        {
            if (char.IsWhiteSpace(c)) { space = sb.Length > 0; continue; }
            if (space) sb.Append(' ');
            space = false;
            sb.Append(char.ToLowerInvariant(c));
        }
        return sb.ToString();
    }

    /// <summary>Lower-cased words (letters and digits), the units of shingles.</summary>
    public static List<string> Words(string text)
    {
        var words = new List<string>();
        var sb = new StringBuilder();
        foreach (char c in text)
        {
            if (char.IsLetterOrDigit(c)) sb.Append(char.ToLowerInvariant(c));
            else if (sb.Length > 0) { words.Add(sb.ToString()); sb.Clear(); }
        }
        if (sb.Length > 0) words.Add(sb.ToString());
        return words;
    }
}

/// <summary>Stable 64-bit text hashes (the same on every machine and run: split assignments depend on them).</summary>
public static class TextHash
{
    public static ulong Of(string text)
    {
        Span<byte> digest = stackalloc byte[32];
        System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(text), digest);
        return System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(digest);
    }

    /// <summary>FNV-1a over UTF-16 code units: cheap, for shingles (quality, not security).</summary>
    public static ulong Fnv(string text)
    {
        ulong h = 14695981039346656037UL;
        foreach (char c in text) { h ^= c; h *= 1099511628211UL; }
        return h;
    }

    /// <summary>SplitMix64's finaliser: spreads a seed-mixed value over all 64 bits.</summary>
    public static ulong Mix(ulong x) => Core.Numerics.SplitMix64.Finalize(x + Core.Numerics.SplitMix64.Golden);

    public static string Hex(ulong h) => h.ToString("x16");
}
