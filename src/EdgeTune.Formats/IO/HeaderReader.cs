using System.Buffers.Binary;
using System.Text;
using EdgeTune.Core;

namespace EdgeTune.Formats.IO;

/// <summary>
/// A bounds-checked little-endian cursor over a file header. Every read checks the bytes exist first,
/// and every length read from the file is checked against the bytes that remain before anything is
/// allocated, so a corrupted or hostile header yields a <see cref="FileFormatException"/> naming the
/// byte offset, never an out-of-memory or an access violation.
/// </summary>
internal unsafe struct HeaderReader
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
    private readonly NativeBytes _bytes;
    private readonly string _file;

    public HeaderReader(NativeBytes bytes, string file)
    {
        _bytes = bytes;
        _file = file;
        Position = 0;
    }

    public long Position { get; set; }

    public readonly long Remaining => _bytes.Length - Position;

    public readonly FileFormatException Error(string problem, long? at = null) =>
        FileFormatException.AtOffset(_file, at ?? Position, problem);

    /// <summary>Throws unless <paramref name="count"/> bytes remain; returns a pointer to them and advances.</summary>
    public byte* Take(long count, string what)
    {
        if (count < 0 || count > Remaining)
            throw Error($"{what} needs {count} bytes but the file has {Remaining} left (truncated or corrupt)");
        byte* p = _bytes.Pointer + Position;
        Position += count;
        return p;
    }

    public byte U8(string what) => *Take(1, what);
    public sbyte I8(string what) => (sbyte)*Take(1, what);
    public ushort U16(string what) => BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(Take(2, what), 2));
    public short I16(string what) => BinaryPrimitives.ReadInt16LittleEndian(new ReadOnlySpan<byte>(Take(2, what), 2));
    public uint U32(string what) => BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(Take(4, what), 4));
    public int I32(string what) => BinaryPrimitives.ReadInt32LittleEndian(new ReadOnlySpan<byte>(Take(4, what), 4));
    public ulong U64(string what) => BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(Take(8, what), 8));
    public long I64(string what) => BinaryPrimitives.ReadInt64LittleEndian(new ReadOnlySpan<byte>(Take(8, what), 8));
    public float F32(string what) => BinaryPrimitives.ReadSingleLittleEndian(new ReadOnlySpan<byte>(Take(4, what), 4));
    public double F64(string what) => BinaryPrimitives.ReadDoubleLittleEndian(new ReadOnlySpan<byte>(Take(8, what), 8));

    /// <summary>A count that must fit in the rest of the file given each item takes at least <paramref name="minItemBytes"/>.</summary>
    public long Count(ulong raw, long minItemBytes, string what, long at)
    {
        if (raw > (ulong)(Remaining / Math.Max(1, minItemBytes)))
            throw Error($"{what} is {raw}, more than the {Remaining} remaining bytes can hold", at);
        return (long)raw;
    }

    /// <summary>UTF-8 text of <paramref name="length"/> bytes; invalid UTF-8 is an error naming where it starts.</summary>
    public string Utf8(long length, string what)
    {
        long start = Position;
        if (length > int.MaxValue) throw Error($"{what} length {length} is absurd", start);
        byte* p = Take(length, what);
        try
        {
            return StrictUtf8.GetString(p, (int)length);
        }
        catch (DecoderFallbackException)
        {
            throw Error($"{what} is not valid UTF-8", start);
        }
    }
}
