using EdgeTune.Core;

namespace EdgeTune.Profiles.Toml;

/// <summary>A configuration value that does not validate: <c>file:line:column: key: message</c>, one line.</summary>
public sealed class TomlConfigException : EdgeTuneException
{
    public TomlConfigException(string message) : base(message) { }
    public TomlConfigException() : base("configuration error") { }
    public TomlConfigException(string message, Exception inner) : base(message, inner) { }

    public static TomlConfigException At(TomlNode node, string key, string message) =>
        new(new ProfileDiagnostic(node.Location, key, message).ToString());
}

/// <summary>
/// Typed, located reads from one TOML table: every wrong type or out-of-range value is refused with the
/// file, line and column of the value, and <see cref="RefuseUnknown"/> refuses keys the schema does not know.
/// A missing table reads as empty, so optional sections need no special case.
/// </summary>
public sealed class TomlSection(string name, TomlTableNode? table, SourceLocation fallback)
{
    public string Name { get; } = name;
    public TomlTableNode? Table { get; } = table;
    public SourceLocation Location => Table?.Location ?? fallback;

    public bool Has(string key) => Table?[key] is not null;

    public TomlConfigException Error(string key, string message) =>
        Table?[key] is { } node ? TomlConfigException.At(node, Qualified(key), message)
                                : new TomlConfigException($"{Location}: {Qualified(key)}: {message}");

    public string Qualified(string key) => Name.Length == 0 ? key : $"{Name}.{key}";

    public void RefuseUnknown(IEnumerable<string> allowed)
    {
        if (Table is null) return;
        var set = allowed.ToList();
        foreach (var (key, node) in Table.Items)
            if (!set.Contains(key))
                throw TomlConfigException.At(node, Qualified(key), $"unknown key (allowed{(Name.Length == 0 ? "" : $" in [{Name}]")}: {string.Join(", ", set)})");
    }

    public TomlSection Sub(string key)
    {
        if (Table?[key] is not { } node) return new TomlSection(Qualified(key), null, Location);
        if (node is not TomlTableNode t) throw TomlConfigException.At(node, Qualified(key), $"expected a table, found {node.Describe()}");
        return new TomlSection(Qualified(key), t, t.Location);
    }

    public string? String(string key)
    {
        if (Table?[key] is not { } node) return null;
        if (node is TomlValueNode { Value: string s }) return s;
        throw TomlConfigException.At(node, Qualified(key), $"expected a string, found {node.Describe()}");
    }

    public string RequiredString(string key, string why) =>
        String(key) is { Length: > 0 } s ? s : throw Error(key, $"required ({why})");

    public string? Choice(string key, params string[] choices)
    {
        var s = String(key);
        if (s is null) return null;
        if (!choices.Contains(s, StringComparer.OrdinalIgnoreCase))
            throw Error(key, $"'{s}' is not one of {string.Join(", ", choices)}");
        return s.ToLowerInvariant();
    }

    public bool? Bool(string key)
    {
        if (Table?[key] is not { } node) return null;
        if (node is TomlValueNode { Value: bool b }) return b;
        throw TomlConfigException.At(node, Qualified(key), $"expected true or false, found {node.Describe()}");
    }

    public long? Integer(string key, long min, long max)
    {
        if (Table?[key] is not { } node) return null;
        if (node is not TomlValueNode { Value: long v }) throw TomlConfigException.At(node, Qualified(key), $"expected an integer, found {node.Describe()}");
        if (v < min || v > max) throw TomlConfigException.At(node, Qualified(key), $"{v} is out of range ({min}..{max})");
        return v;
    }

    public int? Int(string key, int min, int max) => (int?)Integer(key, min, max);

    /// <summary>A number (integers accepted) within [min, max].</summary>
    public double? Number(string key, double min, double max)
    {
        if (Table?[key] is not { } node) return null;
        double v = node switch
        {
            TomlValueNode { Value: double d } => d,
            TomlValueNode { Value: long l } => l,
            _ => throw TomlConfigException.At(node, Qualified(key), $"expected a number, found {node.Describe()}"),
        };
        if (!double.IsFinite(v) || v < min || v > max) throw TomlConfigException.At(node, Qualified(key), $"{v} is out of range ({min}..{max})");
        return v;
    }

    public IReadOnlyList<string>? Strings(string key)
    {
        if (Table?[key] is not { } node) return null;
        if (node is not TomlArrayNode array) throw TomlConfigException.At(node, Qualified(key), $"expected an array of strings, found {node.Describe()}");
        var list = new List<string>();
        foreach (var item in array.Items)
        {
            if (item is TomlValueNode { Value: string s }) list.Add(s);
            else throw TomlConfigException.At(item, Qualified(key), $"expected a string, found {item.Describe()}");
        }
        return list;
    }
}
