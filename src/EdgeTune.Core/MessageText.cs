using System.Text;

namespace EdgeTune.Core;

/// <summary>
/// Text from a file (a key, a column name, a value) going into an error message: the message must stay one line
/// whatever the file holds, so control characters (newlines included) are written as \uXXXX escapes.
/// </summary>
public static class MessageText
{
    /// <summary>Control characters as \uXXXX; everything else as it is.</summary>
    public static string Escape(string text)
    {
        if (!text.Any(char.IsControl)) return text;
        var sb = new StringBuilder(text.Length + 8);
        foreach (char c in text)
        {
            if (char.IsControl(c)) sb.Append("\\u").Append(((int)c).ToString("x4", System.Globalization.CultureInfo.InvariantCulture));
            else sb.Append(c);
        }
        return sb.ToString();
    }

    /// <summary><see cref="Escape"/>, and cut to 200 characters: a name from a file may be megabytes long.</summary>
    public static string OneLine(string text)
    {
        const int MaxLength = 200;
        return Escape(text.Length > MaxLength ? text[..MaxLength] + "..." : text);
    }
}
