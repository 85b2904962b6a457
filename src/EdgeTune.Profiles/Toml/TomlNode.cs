using System.Globalization;
using Tomlyn;
using Tomlyn.Model;

namespace EdgeTune.Profiles.Toml;

/// <summary>
/// A parsed TOML value that remembers where it was written. Tomlyn's <see cref="TomlTable"/> model loses
/// positions, so the document is copied into this small tree while Tomlyn's metadata store still knows
/// each key's span. Locations point at the key (for a table: its header or its key in the parent).
/// </summary>
public abstract class TomlNode(SourceLocation location)
{
    public SourceLocation Location { get; } = location;

    /// <summary>"a table", "a string", "an integer", ... for messages.</summary>
    public abstract string Describe();
}

public sealed class TomlTableNode(SourceLocation location) : TomlNode(location)
{
    private readonly List<KeyValuePair<string, TomlNode>> _items = [];

    public IReadOnlyList<KeyValuePair<string, TomlNode>> Items => _items;

    public TomlNode? this[string key] => _items.FirstOrDefault(kv => kv.Key == key).Value;

    public bool Contains(string key) => _items.Any(kv => kv.Key == key);

    public void Set(string key, TomlNode value)
    {
        int i = _items.FindIndex(kv => kv.Key == key);
        if (i >= 0) _items[i] = new(key, value);
        else _items.Add(new(key, value));
    }

    public override string Describe() => "a table";
}

public sealed class TomlArrayNode(SourceLocation location, IReadOnlyList<TomlNode> items) : TomlNode(location)
{
    public IReadOnlyList<TomlNode> Items { get; } = items;

    public override string Describe() => "an array";
}

/// <summary>A scalar: string, long, double, bool or <see cref="TomlDateTime"/>.</summary>
public sealed class TomlValueNode(SourceLocation location, object value) : TomlNode(location)
{
    public object Value { get; } = value;

    public override string Describe() => Value switch
    {
        string s => $"the string \"{s}\"",
        long l => $"the integer {l}",
        double d => $"the float {d.ToString(CultureInfo.InvariantCulture)}",
        bool b => b ? "true" : "false",
        TomlDateTime => $"the date {Value}",
        _ => $"a {Value.GetType().Name}",
    };

    public string Text => Value switch
    {
        string s => s,
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => Value.ToString() ?? "",
    };
}

/// <summary>Parses TOML text into a located <see cref="TomlTableNode"/>, or returns the syntax errors.</summary>
public static class TomlDocument
{
    public static TomlTableNode Parse(string text, string file, List<ProfileDiagnostic> diagnostics)
    {
        // The syntax tree with semantic validation catches what the model reader lets through (a key defined
        // twice, a table opened twice) and places every error; the model is read only from valid text.
        Tomlyn.Syntax.DocumentSyntax syntax;
        try
        {
            syntax = Tomlyn.Parsing.SyntaxParser.Parse(text, file, true);
        }
        catch (TomlException e) // what the parser refuses outright: nesting deeper than its limit of 64
        {
            diagnostics.Add(new ProfileDiagnostic(new SourceLocation(file, e.Line ?? 1, e.Column ?? 1), "syntax", StripPosition(e.Message)));
            return new TomlTableNode(SourceLocation.StartOf(file));
        }
        if (syntax.HasErrors)
        {
            foreach (var d in syntax.Diagnostics.Where(d => d.Kind == Tomlyn.Syntax.DiagnosticMessageKind.Error))
                diagnostics.Add(new ProfileDiagnostic(new SourceLocation(file, d.Span.Start.Line + 1, d.Span.Start.Column + 1), "syntax", d.Message.Replace("\u2424", " ", StringComparison.Ordinal)));
            return new TomlTableNode(SourceLocation.StartOf(file));
        }

        var store = new Tomlyn.Serialization.TomlMetadataStore();
        var options = new TomlSerializerOptions { MetadataStore = store, SourceName = file };
        TomlTable table;
        try
        {
            table = TomlSerializer.Deserialize<TomlTable>(text, options) ?? new TomlTable();
        }
        catch (TomlException e)
        {
            diagnostics.Add(new ProfileDiagnostic(new SourceLocation(file, e.Line ?? 1, e.Column ?? 1), "syntax", StripPosition(e.Message)));
            return new TomlTableNode(SourceLocation.StartOf(file));
        }
        return Copy(table, SourceLocation.StartOf(file), file, store);
    }

    // Tomlyn's message reads "file(l,c) : error : text" when it has a position; keep the text.
    private static string StripPosition(string message)
    {
        int i = message.IndexOf(" : error : ", StringComparison.Ordinal);
        return i >= 0 ? message[(i + " : error : ".Length)..] : message;
    }

    private static TomlTableNode Copy(TomlTable table, SourceLocation at, string file, Tomlyn.Serialization.TomlMetadataStore store)
    {
        var node = new TomlTableNode(at);
        store.TryGetProperties(table, out var metadata);
        foreach (var (key, value) in table)
        {
            var location = at;
            if (metadata is not null && metadata.TryGetProperty(key, out var property) && property is not null)
                location = new SourceLocation(file, property.Span.Start.Line + 1, property.Span.Start.Column + 1);
            node.Set(key, Convert(value, location, file, store));
        }
        return node;
    }

    private static TomlNode Convert(object? value, SourceLocation at, string file, Tomlyn.Serialization.TomlMetadataStore store) => value switch
    {
        TomlTable t => Copy(t, at, file, store),
        TomlTableArray ta => new TomlArrayNode(at, ta.Select(t => (TomlNode)Copy(t, at, file, store)).ToList()),
        TomlArray a => new TomlArrayNode(at, a.Select(v => Convert(v, at, file, store)).ToList()),
        null => new TomlValueNode(at, ""),
        _ => new TomlValueNode(at, value),
    };
}
