namespace EdgeTune.Formats.Gguf;

/// <summary>Ordered GGUF key/value metadata. Order is kept because the file order is part of a faithful round trip.</summary>
public sealed class GgufMetadata : IEnumerable<KeyValuePair<string, GgufValue>>
{
    private readonly List<string> _order = [];
    private readonly Dictionary<string, GgufValue> _values = new(StringComparer.Ordinal);

    public int Count => _order.Count;

    public IEnumerable<string> Keys => _order;

    public bool ContainsKey(string key) => _values.ContainsKey(key);

    public bool TryGet(string key, out GgufValue value) => _values.TryGetValue(key, out value!);

    public GgufValue? Get(string key) => _values.GetValueOrDefault(key);

    public GgufValue this[string key]
    {
        get => _values.TryGetValue(key, out var v) ? v : throw new KeyNotFoundException($"metadata key '{key}' is missing");
        set => Set(key, value);
    }

    /// <summary>Set a value; a new key goes to the end, an existing key keeps its place.</summary>
    public void Set(string key, GgufValue value)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        ArgumentNullException.ThrowIfNull(value);
        if (!_values.ContainsKey(key)) _order.Add(key);
        _values[key] = value;
    }

    /// <summary>Add a key read from a file; false when it is already present (a duplicate).</summary>
    internal bool TryAdd(string key, GgufValue value)
    {
        if (!_values.TryAdd(key, value)) return false;
        _order.Add(key);
        return true;
    }

    public bool Remove(string key)
    {
        if (!_values.Remove(key)) return false;
        _order.Remove(key);
        return true;
    }

    public string? GetString(string key) => Get(key)?.AsString();

    public long? GetInteger(string key) => Get(key)?.AsInt64();

    public double? GetNumber(string key) => Get(key)?.AsDouble();

    public IEnumerator<KeyValuePair<string, GgufValue>> GetEnumerator()
    {
        foreach (var key in _order) yield return new(key, _values[key]);
    }

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

    public GgufMetadata Clone()
    {
        var copy = new GgufMetadata();
        foreach (var (k, v) in this) copy.Set(k, v);
        return copy;
    }
}
