namespace EdgeTune.Kernels;

/// <summary>Argument checks shared by the references and the backends: a length against the shape it must hold.</summary>
internal static class Shapes
{
    /// <summary>Throws unless <paramref name="length"/> holds <paramref name="needed"/> elements (the shape, named, is in the message).</summary>
    public static void Require(long length, long needed, string name, string shape)
    {
        if (length < needed)
            throw new ArgumentException($"{name} holds {length} values, shape {shape} needs {needed}", name);
    }

    public static void Positive(int value, string name)
    {
        if (value <= 0) throw new ArgumentOutOfRangeException(name, value, $"{name} must be positive");
    }

    public static void NonNegative(long value, string name)
    {
        if (value < 0) throw new ArgumentOutOfRangeException(name, value, $"{name} must not be negative");
    }

    /// <summary>Query heads H must be a multiple of key/value heads KV (grouped-query attention).</summary>
    public static void Heads(int heads, int kvHeads, int headDim)
    {
        Positive(heads, nameof(heads));
        Positive(kvHeads, nameof(kvHeads));
        Positive(headDim, nameof(headDim));
        if (heads % kvHeads != 0)
            throw new ArgumentException($"query heads {heads} are not a multiple of key/value heads {kvHeads}", nameof(kvHeads));
    }
}
