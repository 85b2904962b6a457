using System.Text.Json;
using EdgeTune.Core;

namespace EdgeTune.Models.Tokenizers;

/// <summary>Reading tokenizer.json / tokenizer_config.json with errors that name the file and the place.</summary>
internal static class TokenizerJson
{
    /// <summary>Parse a JSON file; a syntax error names the line and the byte in that line (both 1-based).</summary>
    public static JsonDocument Load(string path)
    {
        if (!File.Exists(path)) throw new EdgeTuneException($"{path}: no such file");
        try
        {
            using var stream = File.OpenRead(path);
            return JsonDocument.Parse(stream, new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException e)
        {
            string place = e.LineNumber is long line ? $"line {line + 1}, byte {e.BytePositionInLine + 1}" : "at the start";
            string why = e.Message.Split(". ")[0].Split(" LineNumber")[0].TrimEnd('.');
            throw new FileFormatException(path, place, $"malformed JSON ({why})");
        }
    }

    public static FileFormatException Bad(string path, string key, string problem) => FileFormatException.AtKey(path, key, problem);

    public static JsonElement? Child(JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    public static JsonElement Required(string path, JsonElement e, string name, string key) =>
        Child(e, name) ?? throw Bad(path, key, "is missing");

    public static string RequiredString(string path, JsonElement e, string name, string key)
    {
        var v = Required(path, e, name, key);
        return v.ValueKind == JsonValueKind.String ? v.GetString()! : throw Bad(path, key, $"must be a string, not {v.ValueKind}");
    }

    public static string? OptionalString(string path, JsonElement e, string name, string key)
    {
        var v = Child(e, name);
        if (v is null) return null;
        return v.Value.ValueKind == JsonValueKind.String ? v.Value.GetString() : throw Bad(path, key, $"must be a string, not {v.Value.ValueKind}");
    }

    public static bool OptionalBool(string path, JsonElement e, string name, string key, bool fallback)
    {
        var v = Child(e, name);
        if (v is null) return fallback;
        return v.Value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Bad(path, key, $"must be true or false, not {v.Value.ValueKind}"),
        };
    }

    public static int RequiredInt(string path, JsonElement e, string name, string key)
    {
        var v = Required(path, e, name, key);
        return v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) && i >= 0 ? i : throw Bad(path, key, $"must be a non-negative integer, not {v}");
    }

    /// <summary>A special-token entry of tokenizer_config.json: a string, or an object with "content" (AddedToken).</summary>
    public static string? TokenContent(string path, JsonElement config, string name) => Child(config, name) switch
    {
        null => null,
        { ValueKind: JsonValueKind.String } s => s.GetString(),
        { ValueKind: JsonValueKind.Object } o => RequiredString(path, o, "content", $"{name}.content"),
        var other => throw Bad(path, name, $"must be a string or an object with \"content\", not {other.Value.ValueKind}"),
    };
}
