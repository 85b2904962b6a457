using EdgeTune.Core;
using System.Text;
using System.Text.Json;

namespace EdgeTune.Formats.Safetensors;

/// <summary>Small JSON helpers shared by the safetensors reader and writers.</summary>
internal static class SafetensorsJson
{
    /// <summary>UTF-8 that throws on lone surrogates instead of writing U+FFFD, so names round-trip or fail loudly.</summary>
    public static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>
    /// Orders strings by Unicode code point, which is the byte order of their UTF-8 (Rust's String order and
    /// Python's str order). string.CompareOrdinal compares UTF-16 units and differs above U+FFFF.
    /// </summary>
    public static readonly Comparer<string> CodePointOrder = Comparer<string>.Create(static (a, b) =>
    {
        var ea = a.EnumerateRunes();
        var eb = b.EnumerateRunes();
        while (true)
        {
            bool ha = ea.MoveNext(), hb = eb.MoveNext();
            if (!ha || !hb) return ha.CompareTo(hb);
            int c = ea.Current.Value.CompareTo(eb.Current.Value);
            if (c != 0) return c;
        }
    });

    /// <summary>
    /// Appends a JSON string literal. asciiOnly=false escapes like serde_json (only '"', '\\' and control
    /// characters), so headers are byte-identical to the Python library's; asciiOnly=true escapes like Python's
    /// json.dumps default (ensure_ascii), used for the index file transformers writes.
    /// </summary>
    public static void AppendString(StringBuilder sb, string value, bool asciiOnly)
    {
        sb.Append('"');
        foreach (char c in value)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20 || (asciiOnly && c > 0x7e)) sb.Append("\\u").Append(((int)c).ToString("x4"));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }

    /// <summary>
    /// The absolute byte position of a JSON syntax error. System.Text.Json reports line and byte-in-line
    /// (lines end at '\n'), so walk the lines to turn that into an offset from the start of the JSON text.
    /// </summary>
    public static long ErrorPosition(JsonException e, ReadOnlySpan<byte> json)
    {
        long line = e.LineNumber ?? 0, column = e.BytePositionInLine ?? 0;
        int lineStart = 0;
        for (long i = 0; i < line; i++)
        {
            int next = json[lineStart..].IndexOf((byte)'\n');
            if (next < 0) break;
            lineStart += next + 1;
        }
        return Math.Min(lineStart + column, json.Length);
    }

    /// <summary>The first message line of a JsonException, without the path/line suffix we replace by an offset.</summary>
    public static string Describe(JsonException e)
    {
        string message = e.Message;
        int cut = message.IndexOf(" Path:", StringComparison.Ordinal);
        if (cut < 0) cut = message.IndexOf(" LineNumber:", StringComparison.Ordinal);
        if (cut >= 0) message = message[..cut];
        return "invalid JSON: " + OneLine(message.TrimEnd('.', ' '));
    }

    /// <summary>Names come from the file and may hold newlines or control characters, or be megabytes long: one readable line.</summary>
    public static string OneLine(string text) => MessageText.OneLine(text);
}
