using System.Text.Json;
using System.Text.Json.Nodes;
using EdgeTune.Core;

namespace EdgeTune.Evaluation.Metrics;

/// <summary>Labels: accuracy, macro-F1 and the confusion matrix.</summary>
public static class LabelMetrics
{
    /// <summary>
    /// The label of an answer: the JSON field <paramref name="field"/> when given (strings unquoted; an answer
    /// that is not a JSON object with that field has the label "" (no label)), otherwise the whole answer;
    /// either way normalised with <paramref name="options"/>.
    /// </summary>
    public static string LabelOf(string answer, string? field, NormaliseOptions options) =>
        field is null ? TextMetrics.Normalise(answer, options) : TextMetrics.Normalise(Json.Field(answer, field) ?? "", options);

    /// <summary>
    /// Macro-F1: the unweighted mean of per-label F1 over every label that occurs in the references or the
    /// predictions (scikit-learn's default set); a label with no true and no predicted positives cannot occur,
    /// and one with P+R = 0 counts 0.
    /// </summary>
    public static double MacroF1(IReadOnlyList<string> predicted, IReadOnlyList<string> gold)
    {
        if (predicted.Count != gold.Count) throw new ArgumentException("predictions and references differ in count");
        if (gold.Count == 0) return double.NaN;
        var labels = gold.Concat(predicted).Distinct(StringComparer.Ordinal).ToList();
        double sum = 0;
        foreach (var label in labels)
        {
            int tp = 0, fp = 0, fn = 0;
            for (int i = 0; i < gold.Count; i++)
            {
                bool g = gold[i] == label, p = predicted[i] == label;
                if (g && p) tp++;
                else if (p) fp++;
                else if (g) fn++;
            }
            sum += tp == 0 ? 0 : 2.0 * tp / (2.0 * tp + fp + fn);
        }
        return sum / labels.Count;
    }

    /// <summary>Rows: reference labels; columns: predicted labels (both sorted, gold labels first then any others).</summary>
    public static ConfusionMatrix Confusion(IReadOnlyList<string> predicted, IReadOnlyList<string> gold)
    {
        var labels = gold.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)
            .Concat(predicted.Distinct(StringComparer.Ordinal).Where(p => !gold.Contains(p)).Order(StringComparer.Ordinal)).ToList();
        var index = labels.Select((l, i) => (l, i)).ToDictionary(x => x.l, x => x.i, StringComparer.Ordinal);
        var counts = new int[labels.Count, labels.Count];
        for (int i = 0; i < gold.Count; i++) counts[index[gold[i]], index[predicted[i]]]++;
        return new ConfusionMatrix(labels, counts);
    }
}

public sealed record ConfusionMatrix(IReadOnlyList<string> Labels, int[,] Counts)
{
    public int[][] Rows => Enumerable.Range(0, Labels.Count).Select(r => Enumerable.Range(0, Labels.Count).Select(c => Counts[r, c]).ToArray()).ToArray();
}

/// <summary>
/// A small JSON-schema subset for structured extraction: <c>type</c> (object, array, string, number, integer,
/// boolean, null, or a list of them), <c>properties</c> (each a schema), <c>required</c> (key names),
/// <c>enum</c> (allowed values, compared in canonical form), <c>items</c> (one schema for every element) and
/// <c>additionalProperties: false</c>. Other keywords are refused when the schema is loaded, so a schema is never
/// silently half-checked.
/// </summary>
public sealed class JsonSchemaSubset
{
    private static readonly HashSet<string> Known = ["$schema", "$id", "title", "description", "type", "properties", "required", "enum", "items", "additionalProperties"];
    private readonly JsonNode _root;

    private JsonSchemaSubset(JsonNode root) => _root = root;

    public static JsonSchemaSubset Load(string file)
    {
        if (!File.Exists(file)) throw new EdgeTuneException($"{file}: no such schema file");
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(File.ReadAllText(file));
        }
        catch (JsonException e)
        {
            throw new EdgeTuneException($"{file}:{(e.LineNumber ?? 0) + 1}: not valid JSON: {e.Message}");
        }
        return Parse(node, file);
    }

    public static JsonSchemaSubset Parse(JsonNode? node, string origin = "schema")
    {
        if (node is not JsonObject) throw new EdgeTuneException($"{origin}: a schema is a JSON object");
        Check(node, origin, "$");
        return new JsonSchemaSubset(node);
    }

    private static void Check(JsonNode node, string origin, string path)
    {
        if (node is not JsonObject o) throw new EdgeTuneException($"{origin}: {path}: a schema is a JSON object");
        foreach (var (key, value) in o)
        {
            if (!Known.Contains(key)) throw new EdgeTuneException($"{origin}: {path}: keyword '{key}' is outside the supported subset (type, properties, required, enum, items, additionalProperties)");
            if (key == "properties" && value is JsonObject props)
                foreach (var (name, sub) in props) Check(sub!, origin, $"{path}.properties.{name}");
            if (key == "items") Check(value!, origin, $"{path}.items");
            if (key == "additionalProperties" && value is not JsonValue) Check(value!, origin, $"{path}.additionalProperties");
        }
    }

    /// <summary>True when the answer parses as JSON and satisfies the schema.</summary>
    public bool IsValid(string answer) => Json.Parse(answer, out bool valid) is var node && valid && Errors(node, _root, "$").Count == 0;

    /// <summary>Why an answer fails (empty when it passes).</summary>
    public IReadOnlyList<string> Validate(string answer)
    {
        var node = Json.Parse(answer, out bool valid);
        return valid ? Errors(node, _root, "$") : ["not valid JSON"];
    }

    private static List<string> Errors(JsonNode? value, JsonNode schema, string path)
    {
        var errors = new List<string>();
        var s = (JsonObject)schema;
        if (s["type"] is { } type)
        {
            var types = type is JsonArray a ? a.Select(t => t!.GetValue<string>()).ToList() : [type.GetValue<string>()];
            if (!types.Any(t => HasType(value, t))) errors.Add($"{path}: expected {string.Join(" or ", types)}, found {TypeName(value)}");
        }
        if (s["enum"] is JsonArray options && !options.Any(o => Json.Canonical(o) == Json.Canonical(value)))
            errors.Add($"{path}: {Json.Canonical(value)} is not one of {Json.Canonical(options)}");
        if (value is JsonObject obj)
        {
            if (s["required"] is JsonArray required)
                foreach (var key in required.Select(r => r!.GetValue<string>()))
                    if (!obj.ContainsKey(key)) errors.Add($"{path}: required key '{key}' is missing");
            var props = s["properties"] as JsonObject;
            foreach (var (key, child) in obj)
            {
                if (props is not null && props.TryGetPropertyValue(key, out var sub)) errors.AddRange(Errors(child, sub!, $"{path}.{key}"));
                else if (s["additionalProperties"] is JsonValue extra && extra.GetValueKind() == JsonValueKind.False) errors.Add($"{path}: key '{key}' is not allowed");
                else if (s["additionalProperties"] is JsonObject extraSchema) errors.AddRange(Errors(child, extraSchema, $"{path}.{key}"));
            }
        }
        if (value is JsonArray arr && s["items"] is { } items)
            for (int i = 0; i < arr.Count; i++) errors.AddRange(Errors(arr[i], items, $"{path}[{i}]"));
        return errors;
    }

    private static bool HasType(JsonNode? v, string type) => type switch
    {
        "null" => v is null,
        "object" => v is JsonObject,
        "array" => v is JsonArray,
        "string" => v is JsonValue s && s.GetValueKind() == JsonValueKind.String,
        "boolean" => v is JsonValue b && b.GetValueKind() is JsonValueKind.True or JsonValueKind.False,
        "number" => v is JsonValue n && n.GetValueKind() == JsonValueKind.Number,
        "integer" => v is JsonValue i && i.GetValueKind() == JsonValueKind.Number && double.TryParse(i.ToJsonString(), System.Globalization.CultureInfo.InvariantCulture, out double d) && Math.Floor(d) == d,
        _ => throw new EdgeTuneException($"schema: unknown type '{type}'"),
    };

    private static string TypeName(JsonNode? v) => v switch
    {
        null => "null",
        JsonObject => "object",
        JsonArray => "array",
        JsonValue x => x.GetValueKind().ToString().ToLowerInvariant() switch { "true" or "false" => "boolean", var k => k },
        _ => "unknown",
    };
}

/// <summary>Per-field accuracy of structured extraction.</summary>
public static class FieldMetrics
{
    /// <summary>
    /// For each top-level key of the reference JSON object: whether the prediction has the same value (canonical
    /// form; strings compared after <paramref name="options"/>). A prediction that is not a JSON object gets every
    /// field wrong. Empty when the reference is not a JSON object.
    /// </summary>
    public static IReadOnlyList<(string Field, bool Correct)> Fields(string prediction, string reference, NormaliseOptions options)
    {
        if (Json.Parse(reference, out bool rv) is not JsonObject r || !rv) return [];
        var p = Json.Parse(prediction, out bool pv) as JsonObject;
        var result = new List<(string, bool)>();
        foreach (var (key, value) in r)
        {
            bool ok = pv && p is not null && p.TryGetPropertyValue(key, out var pvalue) && Same(pvalue, value, options);
            result.Add((key, ok));
        }
        return result;
    }

    private static bool Same(JsonNode? a, JsonNode? b, NormaliseOptions options)
    {
        if (a is JsonValue x && b is JsonValue y && x.GetValueKind() == JsonValueKind.String && y.GetValueKind() == JsonValueKind.String)
            return TextMetrics.Normalise(x.GetValue<string>(), options) == TextMetrics.Normalise(y.GetValue<string>(), options);
        return Json.Canonical(a) == Json.Canonical(b);
    }
}
