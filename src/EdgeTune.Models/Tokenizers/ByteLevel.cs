namespace EdgeTune.Models.Tokenizers;

/// <summary>
/// GPT-2's byte-level alphabet: every byte maps to one printable character so that BPE can work on text.
/// Printable Latin-1 bytes map to themselves; the other 68 go to U+0100 onwards, in byte order
/// (bytes_to_unicode in GPT-2's encoder.py; llama.cpp's unicode_byte_to_utf8 builds the same table).
/// </summary>
internal static class ByteLevel
{
    public static readonly char[] ByteToChar = BuildTable();
    private static readonly Dictionary<char, byte> CharToByteMap = ByteToChar.Select((c, b) => (c, b)).ToDictionary(x => x.c, x => (byte)x.b);

    private static char[] BuildTable()
    {
        var table = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            table[b] = printable ? (char)b : (char)next++;
        }
        return table;
    }

    /// <summary>The byte-level text of <paramref name="text"/>'s UTF-8 bytes.</summary>
    public static string Encode(string text)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(text);
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) chars[i] = ByteToChar[bytes[i]];
        return new string(chars);
    }

    /// <summary>Append the bytes of byte-level text; characters outside the alphabet are kept as their UTF-8.</summary>
    public static void AppendBytes(string text, List<byte> output)
    {
        Span<byte> buffer = stackalloc byte[4];
        foreach (var rune in text.EnumerateRunes())
        {
            if (rune.IsBmp && CharToByteMap.TryGetValue((char)rune.Value, out byte b)) output.Add(b);
            else
            {
                int n = rune.EncodeToUtf8(buffer);
                for (int i = 0; i < n; i++) output.Add(buffer[i]);
            }
        }
    }
}
