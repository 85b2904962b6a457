using System.Text;
using System.Text.RegularExpressions;

namespace EdgeTune.Agent.FieldLog;

/// <summary>
/// PII redaction applied to every text before it is stored (messages, outputs, corrections, comments). Rules are
/// built-in names or .NET regular expressions; every match becomes the replacement. Answers to clients are not
/// altered. The built-ins find candidates with a loose pattern and keep only those that pass a check (a card
/// number's Luhn digit, an IBAN's mod-97, a phone number's digit count), so order numbers and dates stay.
/// </summary>
public sealed class Redactor
{
    /// <summary>What the field log redacts when <c>field_log.redact</c> is not given (<c>redact = []</c> turns redaction off).</summary>
    public static readonly IReadOnlyList<string> DefaultRules = ["email", "card", "iban", "phone"];

    /// <param name="Search">Whether a candidate that fails its check is cut to its longest valid prefix and searched
    /// again from its next group (a number with a check digit can follow or precede other text); otherwise a
    /// candidate is taken whole or not at all.</param>
    private sealed record Rule(Regex Candidate, Func<string, bool>? Valid, bool Search);

    private static readonly Dictionary<string, (string Pattern, Func<string, bool>? Valid, bool Search)> BuiltIn = new(StringComparer.Ordinal)
    {
        ["email"] = (@"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}", null, false),
        // 13 to 19 digits, optionally grouped by spaces or hyphens; kept only when the Luhn check digit holds.
        ["card"] = (@"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w])", Luhn, true),
        // Country code, check digits, 11 to 30 letters or digits, optionally in groups; kept only when mod-97 = 1.
        ["iban"] = (@"(?<![\w])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}(?![\w])", Iban, true),
        // An optional + or 00 prefix, then digits with spaces, dots, hyphens, slashes or parentheses; whole or not at
        // all (a part of a longer digit sequence is not a phone number).
        ["phone"] = (@"(?<![\w+])(?:\+|\(\+?)?\d[\d ()./-]{5,}\d(?![\w])", Phone, false),
        ["ipv4"] = (@"\b(?:\d{1,3}\.){3}\d{1,3}\b", null, false),
    };

    private readonly Rule[] _rules;
    private readonly string _replacement;

    public Redactor(IReadOnlyList<string> rules, string replacement)
    {
        _rules = rules.Select(Compile).ToArray();
        _replacement = replacement;
    }

    private static Rule Compile(string rule) => BuiltIn.TryGetValue(rule, out var b)
        ? new Rule(new Regex(b.Pattern, RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1)), b.Valid, b.Search)
        : new Rule(Validate(rule), null, false);

    /// <summary>The rule as a regular expression (a built-in name, or the text itself); throws ArgumentException when it is not one.</summary>
    public static Regex Validate(string rule) =>
        new(BuiltIn.TryGetValue(rule, out var b) ? b.Pattern : rule, RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));

    public bool IsEmpty => _rules.Length == 0;

    public string Apply(string text)
    {
        foreach (var rule in _rules)
            text = rule.Valid is null ? rule.Candidate.Replace(text, _replacement)
                : rule.Search ? ReplaceChecked(text, rule)
                : rule.Candidate.Replace(text, m => rule.Valid(m.Value) ? _replacement : m.Value);
        return text;
    }

    // Every candidate is cut at its longest prefix that passes the check (a loose pattern can run into a following
    // group); a candidate with no valid prefix is searched again from its next group, so a number that follows
    // unrelated digits is still found.
    private string ReplaceChecked(string text, Rule rule)
    {
        var result = new StringBuilder(text.Length);
        int position = 0;
        while (position < text.Length)
        {
            var match = rule.Candidate.Match(text, position);
            if (!match.Success) break;
            int end = LongestValidPrefix(match.Value, rule.Valid!);
            if (end > 0)
            {
                result.Append(text, position, match.Index - position).Append(_replacement);
                position = match.Index + end;
                continue;
            }
            int next = NextGroup(match.Value);
            result.Append(text, position, match.Index + next - position);
            position = match.Index + next;
        }
        return result.Append(text, position, text.Length - position).ToString();
    }

    private static int LongestValidPrefix(string candidate, Func<string, bool> valid)
    {
        for (int end = candidate.Length; end > 0; end--)
        {
            bool boundary = end == candidate.Length || !char.IsLetterOrDigit(candidate[end]);
            if (boundary && char.IsLetterOrDigit(candidate[end - 1]) && valid(candidate[..end])) return end;
        }
        return 0;
    }

    private static int NextGroup(string candidate)
    {
        int i = 0;
        while (i < candidate.Length && char.IsLetterOrDigit(candidate[i])) i++;
        while (i < candidate.Length && !char.IsLetterOrDigit(candidate[i])) i++;
        return Math.Max(i, 1);
    }

    /// <summary>The Luhn check of a payment card number (separators ignored).</summary>
    public static bool Luhn(string text)
    {
        int sum = 0, digits = 0;
        for (int i = text.Length - 1; i >= 0; i--)
        {
            if (!char.IsAsciiDigit(text[i])) continue;
            int d = text[i] - '0';
            if (digits++ % 2 == 1) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
            sum += d;
        }
        return digits is >= 13 and <= 19 && sum % 10 == 0;
    }

    /// <summary>The ISO 13616 check of an IBAN: the rearranged number, letters as 10..35, is 1 modulo 97.</summary>
    public static bool Iban(string text)
    {
        string compact = text.Replace(" ", "", StringComparison.Ordinal).ToUpperInvariant();
        if (compact.Length is < 15 or > 34 || !char.IsAsciiLetter(compact[0]) || !char.IsAsciiLetter(compact[1])) return false;
        int remainder = 0;
        foreach (char c in compact[4..] + compact[..4])
        {
            if (char.IsAsciiDigit(c)) remainder = (remainder * 10 + (c - '0')) % 97;
            else if (char.IsAsciiLetterUpper(c)) remainder = (remainder * 100 + (c - 'A' + 10)) % 97;
            else return false;
        }
        return remainder == 1;
    }

    private static readonly Regex DateLike = new(@"^(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})$", RegexOptions.CultureInvariant);

    /// <summary>A phone number: 8 to 15 digits (E.164's maximum), written with an international prefix, a trunk 0 or in
    /// groups; not a date. A bare run of digits without a leading + or 0 is left alone (order and ticket numbers).</summary>
    public static bool Phone(string text)
    {
        int digits = text.Count(char.IsAsciiDigit);
        if (digits is < 8 or > 15 || DateLike.IsMatch(text)) return false;
        bool international = text.StartsWith('+') || text.StartsWith("(+", StringComparison.Ordinal) || text.StartsWith("00", StringComparison.Ordinal);
        bool trunk = text.StartsWith('0') || text.StartsWith("(0", StringComparison.Ordinal);
        bool grouped = text.Any(c => c is ' ' or '-' or '(' or ')' or '/' or '.');
        return international || trunk || grouped;
    }
}
