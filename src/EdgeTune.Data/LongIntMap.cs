namespace EdgeTune.Data;

/// <summary>
/// A map from 64-bit hashes to non-negative ints (example ids) with open addressing: 12 bytes a slot, at most
/// three quarters full, and no object per entry, where a Dictionary costs about 40 bytes an entry.
/// </summary>
internal sealed class LongIntMap
{
    private ulong[] _keys = new ulong[64];
    private int[] _values = Filled(64);
    private int _count;

    public int Count => _count;

    public bool TryGetValue(ulong key, out int value)
    {
        int mask = _keys.Length - 1;
        for (int slot = Home(key, mask); _values[slot] >= 0; slot = (slot + 1) & mask)
            if (_keys[slot] == key) { value = _values[slot]; return true; }
        value = -1;
        return false;
    }

    /// <summary>Adds the key unless present; returns false (and leaves the value) when it was.</summary>
    public bool TryAdd(ulong key, int value)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(value);
        if (4 * (_count + 1) > 3 * _keys.Length) Grow();
        int mask = _keys.Length - 1;
        int slot = Home(key, mask);
        for (; _values[slot] >= 0; slot = (slot + 1) & mask)
            if (_keys[slot] == key) return false;
        _keys[slot] = key;
        _values[slot] = value;
        _count++;
        return true;
    }

    private static int Home(ulong key, int mask) => (int)(TextHash.Mix(key) & (ulong)mask);

    private static int[] Filled(int n)
    {
        var v = new int[n];
        Array.Fill(v, -1);
        return v;
    }

    private void Grow()
    {
        var keys = _keys;
        var values = _values;
        _keys = new ulong[keys.Length * 2];
        _values = Filled(keys.Length * 2);
        int mask = _keys.Length - 1;
        for (int i = 0; i < keys.Length; i++)
        {
            if (values[i] < 0) continue;
            int slot = Home(keys[i], mask);
            while (_values[slot] >= 0) slot = (slot + 1) & mask;
            _keys[slot] = keys[i];
            _values[slot] = values[i];
        }
    }
}
