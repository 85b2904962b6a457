using System.Text.RegularExpressions;

namespace EdgeTune.Agent.FieldLog;

/// <summary>
/// PII redaction applied to every text before it is stored (messages, outputs, corrections). Rules are built-in
/// names or .NET regular expressions; every match becomes the replacement. Answers to clients are not altered.
/// </summary>
public sealed class Redactor(IReadOnlyList<string> rules, string replacement)
{
    private static readonly Dictionary<string, string> BuiltIn = new(StringComparer.Ordinal)
    {
        ["email"] = @"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
        ["phone"] = @"(?<!\w)\+?\d[\d ()-]{7,}\d(?!\w)",
        ["ipv4"] = @"\b(?:\d{1,3}\.){3}\d{1,3}\b",
        ["card"] = @"\b(?:\d[ -]?){13,19}\b",
    };

    private readonly Regex[] _patterns = rules.Select(Compile).ToArray();

    public static Regex Compile(string rule) =>
        new(BuiltIn.TryGetValue(rule, out var pattern) ? pattern : rule, RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));

    public bool IsEmpty => _patterns.Length == 0;

    public string Apply(string text)
    {
        foreach (var p in _patterns) text = p.Replace(text, replacement);
        return text;
    }
}
