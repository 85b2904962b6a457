using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Models.Chat;

namespace EdgeTune.Data;

/// <summary>What reading produced: an example, or a finding about a line that could not be one.</summary>
public readonly record struct ReadItem(DatasetExample? Example, DataFinding? Finding);

/// <summary>Options of <see cref="DatasetReader"/>.</summary>
public sealed record ReadOptions
{
    public FieldMapping Fields { get; init; } = FieldMapping.Default;
    /// <summary>Longest line read; longer ones are findings.</summary>
    public int MaxLineBytes { get; init; } = LineReader.DefaultMaxLineBytes;
    /// <summary>A field whose value becomes each example's <see cref="DatasetExample.Stratum"/> (see <see cref="Strata"/>); null: none.</summary>
    public string? Stratify { get; init; }
}

/// <summary>
/// Streams examples from JSONL, a JSON array (.json starting with '['), or CSV (.csv/.tsv with a header row).
/// Bad lines become findings and reading goes on; a file that cannot be read at all (binary, missing CSV
/// column) yields one fatal finding and stops. Memory holds one line (one array element) at a time.
/// </summary>
public static class DatasetReader
{
    public static IEnumerable<ReadItem> Read(string path, ReadOptions? options = null)
    {
        options ??= new ReadOptions();
        if (!File.Exists(path)) throw new EdgeTuneException($"{path}: no such file");
        string ext = Path.GetExtension(path).ToLowerInvariant();
        if (ext is ".csv" or ".tsv") return CsvReader.Read(path, ext == ".tsv" ? '\t' : ',', options);
        if (ext == ".json" && StartsWithArray(path)) return ReadArray(path, options);
        return ReadJsonLines(path, options);
    }

    public static IEnumerable<ReadItem> ReadAll(IEnumerable<string> paths, ReadOptions? options = null) =>
        paths.SelectMany(p => Read(p, options));

    private static IEnumerable<ReadItem> ReadJsonLines(string path, ReadOptions options)
    {
        using var stream = File.OpenRead(path);
        foreach (var raw in LineReader.Read(stream, options.MaxLineBytes))
        {
            if (raw.Problem is not null) { yield return Malformed(path, raw.Number, raw.Problem, raw.Fatal); continue; }
            if (string.IsNullOrWhiteSpace(raw.Text)) continue; // blank lines separate nothing in JSONL
            yield return ParseLine(raw.Text, path, raw.Number, options);
        }
    }

    private static ReadItem ParseLine(string text, string path, long line, ReadOptions options)
    {
        try
        {
            using var doc = JsonDocument.Parse(text);
            return WithStratum(FromJson(doc.RootElement, path, line, options.Fields), doc.RootElement, options.Stratify);
        }
        catch (JsonException e) { return Malformed(path, line, $"not valid JSON ({FirstSentence(e.Message)})"); }
        catch (InvalidOperationException e) when (FromJsonReader(e)) { return UnpairedSurrogate(path, line, e); }
    }

    /// <summary>
    /// System.Text.Json parses a \uD800 escape without its low half but cannot turn it into a string: the failure
    /// comes as an InvalidOperationException when a name or value is read.
    /// </summary>
    private static bool FromJsonReader(InvalidOperationException e) => e.TargetSite?.DeclaringType?.Assembly == typeof(JsonDocument).Assembly;

    private static ReadItem UnpairedSurrogate(string path, long line, InvalidOperationException e) =>
        Malformed(path, line, $"not valid JSON (a \\u escape is half of a UTF-16 surrogate pair: {FirstSentence(e.Message)})");

    /// <summary>A JSON array: elements are streamed; "line" in findings is the element's 1-based index.</summary>
    private static IEnumerable<ReadItem> ReadArray(string path, ReadOptions options)
    {
        using var stream = File.OpenRead(path);
        var elements = JsonSerializer.DeserializeAsyncEnumerable<JsonElement>(stream).ToBlockingEnumerable().GetEnumerator();
        long index = 0;
        while (true)
        {
            JsonElement element = default;
            ReadItem? failure = null;
            try
            {
                if (!elements.MoveNext()) yield break;
                element = elements.Current;
            }
            catch (JsonException e)
            {
                failure = Malformed(path, (e.LineNumber ?? 0) + 1, $"not valid JSON ({FirstSentence(e.Message)}); reading stopped", true);
            }
            if (failure is { } f) { yield return f; yield break; }
            index++;
            ReadItem item;
            try
            {
                item = WithStratum(FromJson(element, path, index, options.Fields), element, options.Stratify);
            }
            catch (InvalidOperationException e) when (FromJsonReader(e))
            {
                item = UnpairedSurrogate(path, index, e);
            }
            yield return item;
        }
    }

    private static bool StartsWithArray(string path)
    {
        using var stream = File.OpenRead(path);
        int b;
        while ((b = stream.ReadByte()) >= 0)
        {
            if (b is ' ' or '\t' or '\r' or '\n' or 0xEF or 0xBB or 0xBF) continue;
            return b == '[';
        }
        return false;
    }

    private static ReadItem WithStratum(ReadItem item, JsonElement row, string? field) =>
        field is null || item.Example is not { } e ? item : new(e with { Stratum = Strata.Resolve(row, field, e.Answer) ?? Strata.Missing }, null);

    internal static ReadItem FromJson(JsonElement row, string path, long line, FieldMapping f)
    {
        if (row.ValueKind != JsonValueKind.Object) return Malformed(path, line, $"a JSON {row.ValueKind.ToString().ToLowerInvariant()}, not an object");
        var fields = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (var p in row.EnumerateObject())
            fields[p.Name] = p.Value.ValueKind switch
            {
                JsonValueKind.String => p.Value.GetString(),
                JsonValueKind.Null => null,
                _ => p.Value.GetRawText(),
            };
        if (row.TryGetProperty(f.Messages, out var messages)) return FromMessages(row, messages, fields, path, line, f);
        return FromFields(fields, path, line, f, Provenance(row));
    }

    /// <summary>Builds an example from flat fields (a JSON object's strings or a CSV row).</summary>
    internal static ReadItem FromFields(IReadOnlyDictionary<string, string?> fields, string path, long line, FieldMapping f, Dictionary<string, string> provenance)
    {
        string? user, answer;
        if (fields.TryGetValue(f.Instruction, out var instruction))
        {
            if (!fields.TryGetValue(f.Output, out answer)) return Malformed(path, line, $"has '{f.Instruction}' but no '{f.Output}'");
            string? input = fields.GetValueOrDefault(f.Input);
            user = string.IsNullOrWhiteSpace(input) ? instruction : $"{instruction}\n\n{input}";
        }
        else if (fields.TryGetValue(f.Prompt, out user))
        {
            string? key = f.Completion.FirstOrDefault(fields.ContainsKey);
            if (key is null) return Malformed(path, line, $"has '{f.Prompt}' but no '{string.Join("' or '", f.Completion)}'");
            answer = fields[key];
        }
        else
            return Malformed(path, line, $"no known fields: expected '{f.Messages}', '{f.Instruction}'/'{f.Output}' or '{f.Prompt}'/'{f.Completion[0]}' (use --map for other names)");

        var turns = new List<ChatMessage>();
        if (fields.TryGetValue(f.System, out var system) && !string.IsNullOrWhiteSpace(system)) turns.Add(new("system", system));
        turns.Add(new("user", user ?? ""));
        turns.Add(new("assistant", answer ?? ""));
        return new(new DatasetExample(turns, NonEmpty(fields.GetValueOrDefault(f.Label)), path, line, provenance), null);
    }

    private static ReadItem FromMessages(JsonElement row, JsonElement messages, Dictionary<string, string?> fields, string path, long line, FieldMapping f)
    {
        if (messages.ValueKind != JsonValueKind.Array) return Malformed(path, line, $"'{f.Messages}' is not an array");
        var turns = new List<ChatMessage>();
        int i = 0;
        foreach (var m in messages.EnumerateArray())
        {
            if (m.ValueKind != JsonValueKind.Object
                || !m.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String
                || !m.TryGetProperty("content", out var content) || content.ValueKind is not (JsonValueKind.String or JsonValueKind.Null))
                return Malformed(path, line, $"'{f.Messages}'[{i}] is not {{\"role\": string, \"content\": string}}");
            string r = role.GetString()!;
            if (r is not ("system" or "user" or "assistant")) return Malformed(path, line, $"'{f.Messages}'[{i}] has role '{r}' (system, user or assistant)");
            turns.Add(new(r, content.GetString() ?? ""));
            i++;
        }
        if (!turns.Any(t => t.Role == "assistant")) return Malformed(path, line, $"'{f.Messages}' has no assistant turn (nothing to learn)");
        if (turns[^1].Role != "assistant") return Malformed(path, line, $"'{f.Messages}' does not end with an assistant turn");
        return new(new DatasetExample(turns, NonEmpty(fields.GetValueOrDefault(f.Label)), path, line, Provenance(row)), null);
    }

    /// <summary>Provenance keys kept from a row: a "provenance" object, or top-level source/device/time/feedback.</summary>
    private static Dictionary<string, string> Provenance(JsonElement row)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        if (row.ValueKind != JsonValueKind.Object) return result;
        if (row.TryGetProperty("provenance", out var p) && p.ValueKind == JsonValueKind.Object)
            foreach (var kv in p.EnumerateObject()) result[kv.Name] = kv.Value.ValueKind == JsonValueKind.String ? kv.Value.GetString()! : kv.Value.GetRawText();
        foreach (var key in ProvenanceKeys)
            if (row.TryGetProperty(key, out var v) && v.ValueKind != JsonValueKind.Null)
                result[key] = v.ValueKind == JsonValueKind.String ? v.GetString()! : v.GetRawText();
        return result;
    }

    internal static readonly string[] ProvenanceKeys = ["source", "device", "time", "feedback", "synthetic"];

    private static string? NonEmpty(string? s) => string.IsNullOrWhiteSpace(s) ? null : s;

    /// <summary>A finding about a line that is not an example; what it quotes from the file is escaped, so it prints as one line.</summary>
    internal static ReadItem Malformed(string path, long line, string problem, bool fatal = false) =>
        new(null, new DataFinding(fatal ? "unreadable" : "malformed", Severity.Error, path, line, MessageText.Escape(problem)));

    private static string FirstSentence(string message)
    {
        int dot = message.IndexOf(". ", StringComparison.Ordinal);
        return (dot > 0 ? message[..dot] : message).TrimEnd('.');
    }
}
