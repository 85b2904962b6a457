namespace EdgeTune.Training.Model;

/// <summary>One trainable tensor: its GGUF-style name, PyTorch shape ([out, in] for matrices) and place in the flat buffers.</summary>
public sealed record ParameterSlot(string Name, long[] Shape, long Offset)
{
    public long Length => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// Every trainable tensor in one flat float32 buffer, with the gradients and both AdamW moments laid out the
/// same way (llm.c's habit: memory can be counted by reading this list, and a checkpoint is four arrays).
/// </summary>
public sealed class ParameterLayout
{
    private readonly List<ParameterSlot> _slots = [];
    private readonly Dictionary<string, ParameterSlot> _byName = new(StringComparer.Ordinal);

    public IReadOnlyList<ParameterSlot> Slots => _slots;
    public long Total { get; private set; }

    public ParameterSlot Add(string name, params long[] shape)
    {
        var slot = new ParameterSlot(name, shape, Total);
        _slots.Add(slot);
        _byName.Add(name, slot);
        Total += slot.Length;
        return slot;
    }

    public ParameterSlot this[string name] => _byName[name];
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>A stable description for checkpoints: a resume must find the same layout.</summary>
    public string Signature => string.Join(";", _slots.Select(s => $"{s.Name}[{string.Join(",", s.Shape)}]"));
}
