using System.Text.Json;

namespace EdgeTune.Data;

/// <summary>
/// The stratum of an example for <c>data split --stratify FIELD</c>. FIELD is looked up, first match wins:
/// (1) in the input row as written (a JSON key, or a CSV column), the name as given, then as a dotted path
/// through nested objects ("meta.lang"); (2) in the answer, when the answer is a JSON object, the same way
/// (so a classifier's {"label": "refund", …} answers stratify by "label"). A string value is the stratum as
/// it is; numbers, booleans, objects and arrays by their JSON text. A row where FIELD is absent, null or
/// blank belongs to the stratum <see cref="Missing"/>, which is counted and reported like any other.
/// </summary>
public static class Strata
{
    public const string Missing = "(missing)";

    /// <summary>FIELD in a JSON row, else in its answer; null when in neither.</summary>
    public static string? Resolve(JsonElement row, string field, string answer) => Lookup(row, field) ?? InAnswer(answer, field);

    /// <summary>FIELD as a CSV column, else in the answer; null when in neither.</summary>
    public static string? Resolve(IReadOnlyDictionary<string, string?> columns, string field, string answer) =>
        (columns.TryGetValue(field, out var v) && !string.IsNullOrWhiteSpace(v) ? v : null) ?? InAnswer(answer, field);

    private static string? InAnswer(string answer, string field)
    {
        string t = answer.Trim();
        if (t.Length == 0 || t[0] != '{') return null;
        try
        {
            using var doc = JsonDocument.Parse(t);
            return Lookup(doc.RootElement, field);
        }
        catch (JsonException) { return null; }
    }

    private static string? Lookup(JsonElement obj, string field)
    {
        if (obj.ValueKind != JsonValueKind.Object) return null;
        if (obj.TryGetProperty(field, out var direct)) return Value(direct);
        if (!field.Contains('.')) return null;
        var current = obj;
        foreach (var part in field.Split('.'))
        {
            if (current.ValueKind != JsonValueKind.Object || !current.TryGetProperty(part, out var next)) return null;
            current = next;
        }
        return Value(current);
    }

    private static string? Value(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.Null or JsonValueKind.Undefined => null,
        JsonValueKind.String => string.IsNullOrWhiteSpace(v.GetString()) ? null : v.GetString(),
        _ => v.GetRawText(),
    };
}
