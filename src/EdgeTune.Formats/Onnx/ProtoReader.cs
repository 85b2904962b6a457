using System.Buffers.Binary;
using System.Text;
using EdgeTune.Core;

namespace EdgeTune.Formats.Onnx;

/// <summary>One field of a protocol-buffer message: its number, wire type, where it starts in the file, and its value.</summary>
internal readonly record struct ProtoField(int Number, int WireType, long Offset, ulong Scalar, ReadOnlyMemory<byte> Bytes)
{
    public string AsString() => Encoding.UTF8.GetString(Bytes.Span);
    public long AsInt64() => (long)Scalar;
    public float AsFloat() => BitConverter.Int32BitsToSingle((int)Scalar);
}

/// <summary>
/// Decoding of protocol-buffer messages with every length checked against what is left, so a damaged file
/// gives "file: at byte N: …" and never a read past the end or an allocation sized by the file.
/// Offsets are absolute in the file (<paramref name="baseOffset"/> is where this message starts).
/// </summary>
internal sealed class ProtoReader(string path, ReadOnlyMemory<byte> message, long baseOffset = 0)
{
    public string Path => path;

    public IEnumerable<ProtoField> Fields()
    {
        int position = 0;
        while (position < message.Length)
        {
            long start = baseOffset + position;
            ulong tag = ReadVarint(ref position);
            int number = (int)(tag >> 3), wire = (int)(tag & 7);
            if (number == 0) throw FileFormatException.AtOffset(path, start, "field number 0 is not valid protobuf (is this an ONNX model?)");
            switch (wire)
            {
                case 0:
                    yield return new ProtoField(number, wire, start, ReadVarint(ref position), default);
                    break;
                case 1:
                    Need(position, 8, start);
                    yield return new ProtoField(number, wire, start, BinaryPrimitives.ReadUInt64LittleEndian(message.Span[position..]), default);
                    position += 8;
                    break;
                case 5:
                    Need(position, 4, start);
                    yield return new ProtoField(number, wire, start, BinaryPrimitives.ReadUInt32LittleEndian(message.Span[position..]), default);
                    position += 4;
                    break;
                case 2:
                    ulong length = ReadVarint(ref position);
                    if (length > (ulong)(message.Length - position))
                        throw FileFormatException.AtOffset(path, start, $"field {number} claims {length} bytes but only {message.Length - position} remain (truncated or damaged file)");
                    yield return new ProtoField(number, wire, start, length, message.Slice(position, (int)length));
                    position += (int)length;
                    break;
                default:
                    throw FileFormatException.AtOffset(path, start, $"wire type {wire} of field {number} is not valid protobuf (is this an ONNX model?)");
            }
        }
    }

    /// <summary>A nested message's reader, its offsets still absolute.</summary>
    public ProtoReader Nested(ProtoField field) => new(path, field.Bytes, field.Offset + HeaderLength(field));

    /// <summary>A packed repeated varint field (or one unpacked value).</summary>
    public IEnumerable<long> Varints(ProtoField field)
    {
        if (field.WireType == 0) return [field.AsInt64()];
        var values = new List<long>();
        var inner = new ProtoReader(path, field.Bytes, field.Offset);
        int position = 0;
        while (position < field.Bytes.Length) values.Add((long)inner.ReadVarint(ref position));
        return values;
    }

    private static int HeaderLength(ProtoField field)
    {
        int length = VarintLength((ulong)((field.Number << 3) | field.WireType));
        return length + VarintLength((ulong)field.Bytes.Length);
    }

    private static int VarintLength(ulong v)
    {
        int n = 1;
        while (v >= 0x80) { v >>= 7; n++; }
        return n;
    }

    private void Need(int position, int count, long start)
    {
        if (message.Length - position < count) throw FileFormatException.AtOffset(path, start, "field runs past the end of its message (truncated or damaged file)");
    }

    private ulong ReadVarint(ref int position)
    {
        ulong value = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            if (position >= message.Length) throw FileFormatException.AtOffset(path, baseOffset + position, "varint runs past the end of its message (truncated or damaged file)");
            byte b = message.Span[position++];
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80) return value;
        }
        throw FileFormatException.AtOffset(path, baseOffset + position, "varint longer than 10 bytes (damaged file)");
    }
}
