using System.Text;

namespace EdgeTune.Data;

/// <summary>One line of a text file: its 1-based number and text, or why it could not be read.</summary>
internal readonly record struct RawLine(long Number, string? Text, string? Problem, bool Fatal);

/// <summary>
/// Reads a file line by line holding at most one line (capped at <c>maxBytes</c>) in memory, so a 5 GB file
/// streams and a 100 MB single line is a finding, not an out-of-memory crash. Bytes are decoded as strict
/// UTF-8: invalid sequences name their line instead of turning into U+FFFD silently. A NUL byte means a
/// binary file: reading stops there, since the rest would be noise.
/// </summary>
internal static class LineReader
{
    public const int DefaultMaxLineBytes = 8 << 20;
    private static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    public static IEnumerable<RawLine> Read(Stream stream, int maxBytes = DefaultMaxLineBytes)
    {
        var buffer = new byte[1 << 16];
        var line = new MemoryStream();
        long number = 1;
        bool tooLong = false, binary = false, first = true;
        int read;
        while ((read = stream.Read(buffer, 0, buffer.Length)) > 0)
        {
            int start = 0;
            if (first)
            {
                first = false;
                if (read >= 3 && buffer[0] == 0xEF && buffer[1] == 0xBB && buffer[2] == 0xBF) start = 3; // UTF-8 BOM
            }
            for (int i = start; i < read; i++)
            {
                byte b = buffer[i];
                if (b == 0) binary = true;
                if (b != (byte)'\n') continue;
                Append(line, buffer, start, i - start, maxBytes, ref tooLong);
                yield return Finish(number, line, tooLong, binary, maxBytes);
                if (binary) yield break;
                line.SetLength(0);
                tooLong = false;
                number++;
                start = i + 1;
            }
            Append(line, buffer, start, read - start, maxBytes, ref tooLong);
            if (binary)
            {
                yield return Finish(number, line, tooLong, binary, maxBytes);
                yield break;
            }
        }
        if (line.Length > 0 || tooLong) yield return Finish(number, line, tooLong, binary, maxBytes);
    }

    private static void Append(MemoryStream line, byte[] buffer, int start, int count, int maxBytes, ref bool tooLong)
    {
        if (tooLong || count == 0) return;
        if (line.Length + count > maxBytes) { tooLong = true; line.SetLength(0); return; }
        line.Write(buffer, start, count);
    }

    private static RawLine Finish(long number, MemoryStream line, bool tooLong, bool binary, int maxBytes)
    {
        if (binary) return new(number, null, "binary data (a NUL byte); not a text file, reading stopped", true);
        if (tooLong) return new(number, null, $"line longer than {maxBytes >> 20} MiB; skipped", false);
        var bytes = line.GetBuffer().AsSpan(0, (int)line.Length);
        if (bytes.Length > 0 && bytes[^1] == '\r') bytes = bytes[..^1];
        try { return new(number, Strict.GetString(bytes), null, false); }
        catch (DecoderFallbackException e)
        {
            int at = e.Index >= 0 ? e.Index : 0;
            return new(number, null, $"invalid UTF-8 at byte {at} of the line", false);
        }
    }
}
