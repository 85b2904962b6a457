namespace EdgeTune.Formats.Safetensors;

/// <summary>
/// The bytes of one tensor inside a memory-mapped file: a pointer and a 64-bit length, because spans stop at
/// 2 GiB and large embedding or MoE tensors do not. Valid only while the <see cref="SafetensorsFile"/> that
/// made it is open.
/// </summary>
public readonly unsafe struct SafetensorsTensorData
{
    private readonly string _name;

    internal SafetensorsTensorData(byte* pointer, long length, string name)
    {
        Pointer = pointer;
        Length = length;
        _name = name;
    }

    public byte* Pointer { get; }
    public long Length { get; }

    /// <summary>All the bytes as a span; throws for tensors of 2 GiB or more (use <see cref="Slice"/> or a stream).</summary>
    public ReadOnlySpan<byte> Span => Length <= int.MaxValue
        ? new ReadOnlySpan<byte>(Pointer, (int)Length)
        : throw new InvalidOperationException(
            $"tensor '{SafetensorsJson.OneLine(_name)}' is {Length} bytes, too large for a span; read it by slices or as a stream");

    /// <summary>A window of the bytes: start is 64-bit, the window itself at most int.MaxValue.</summary>
    public ReadOnlySpan<byte> Slice(long start, int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(start);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (start > Length - length)
            throw new ArgumentOutOfRangeException(nameof(length), $"bytes {start}..{start + length} are past the tensor's {Length}");
        return new ReadOnlySpan<byte>(Pointer + start, length);
    }

    /// <summary>A read-only stream over the bytes (64-bit length and position).</summary>
    public UnmanagedMemoryStream OpenRead() => new(Pointer, Length, Length, FileAccess.Read);
}
