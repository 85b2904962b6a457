using System.Buffers.Binary;
using System.Text;

namespace EdgeTune.Formats.Safetensors;

/// <summary>
/// Writes a safetensors file without holding the tensors in memory: each tensor is described up front and its
/// bytes come from a callback that streams them when <see cref="Write"/> reaches it. The file is written
/// under a temporary name and renamed into place, so a failure leaves any previous file untouched.
/// </summary>
/// <remarks>
/// Output is byte-identical to the Python library (safetensors.torch.save_file / serialize): compact JSON
/// header with "__metadata__" first, padded with spaces to a multiple of 8 bytes, tensors sorted by dtype
/// alignment, largest first, then by name, which keeps every tensor aligned to its element size. Metadata keys
/// are written in sorted order (the Python library's order is a hash map's).
/// </remarks>
public sealed class SafetensorsWriter
{
    private readonly List<Pending> _tensors = [];
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);

    /// <summary>The header's "__metadata__" map (string to string, as the format requires). Omitted when empty.</summary>
    public IDictionary<string, string> Metadata { get; } = new Dictionary<string, string>(StringComparer.Ordinal);

    /// <summary>Tensors added so far.</summary>
    public int Count => _tensors.Count;

    /// <summary>Sum of the byte lengths of the tensors added so far.</summary>
    public long DataLength { get; private set; }

    /// <summary>
    /// Describes a tensor whose bytes (little-endian, row-major, exactly elements × dtype size of them)
    /// writeData writes to the stream it is given during <see cref="Write"/>.
    /// </summary>
    public void AddTensor(string name, SafetensorsDType dtype, ReadOnlySpan<long> shape, Action<Stream> writeData)
    {
        ArgumentNullException.ThrowIfNull(writeData);
        long byteLength = CheckDescriptor(name, dtype, shape);
        if (!_names.Add(name))
            throw new ArgumentException($"tensor '{name}' was already added", nameof(name));
        _tensors.Add(new Pending(name, dtype, shape.ToArray(), byteLength, writeData));
        DataLength += byteLength;
    }

    /// <summary>Describes a tensor whose bytes are already in memory; their length is checked now.</summary>
    public void AddTensor(string name, SafetensorsDType dtype, ReadOnlySpan<long> shape, ReadOnlyMemory<byte> data)
    {
        CheckData(name, dtype, shape, data);
        AddTensor(name, dtype, shape, stream => stream.Write(data.Span));
    }

    /// <summary>Checks what a tensor descriptor must satisfy to be written and read back; returns its byte length.</summary>
    internal static long CheckDescriptor(string name, SafetensorsDType dtype, ReadOnlySpan<long> shape)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (name == SafetensorsHeaderParser.MetadataKey)
            throw new ArgumentException($"'{name}' is reserved for the metadata map", nameof(name));
        if (!Enum.IsDefined(dtype))
            throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not a safetensors dtype");
        try
        {
            SafetensorsJson.StrictUtf8.GetByteCount(name);
        }
        catch (EncoderFallbackException e)
        {
            throw new ArgumentException($"tensor name '{name}' is not valid Unicode (lone surrogate)", nameof(name), e);
        }
        return SafetensorsDTypes.ByteLength(dtype, shape)
            ?? throw new ArgumentException(
                $"tensor '{name}': shape [{string.Join(", ", shape.ToArray())}] has a negative dimension or too many bytes", nameof(shape));
    }

    internal static void CheckData(string name, SafetensorsDType dtype, ReadOnlySpan<long> shape, ReadOnlyMemory<byte> data)
    {
        long expected = CheckDescriptor(name, dtype, shape);
        if (expected != data.Length)
            throw new ArgumentException(
                $"tensor '{name}': {data.Length} bytes given, {dtype.Name()} [{string.Join(", ", shape.ToArray())}] needs {expected}", nameof(data));
    }

    /// <summary>Writes the file, calling each tensor's writeData once, in file order.</summary>
    public void Write(string path)
    {
        var ordered = _tensors
            .OrderByDescending(t => t.DType)
            .ThenBy(t => t.Name, SafetensorsJson.CodePointOrder)
            .ToList();
        byte[] header = BuildHeader(ordered);

        string full = Path.GetFullPath(path);
        // Same folder as the target, so the final rename stays on one file system and is atomic.
        string temporary = $"{full}.{Guid.NewGuid():N}.tmp";
        try
        {
            using (var file = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 20))
            {
                Span<byte> length = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
                file.Write(length);
                file.Write(header);
                foreach (var tensor in ordered)
                {
                    var counted = new TensorDataStream(file, tensor.Name, tensor.ByteLength);
                    tensor.WriteData(counted);
                    counted.CheckComplete();
                }
                file.Flush(flushToDisk: true);
            }
            File.Move(temporary, full, overwrite: true);
        }
        catch
        {
            TryDelete(temporary);
            throw;
        }
    }

    private byte[] BuildHeader(List<Pending> ordered)
    {
        var json = new StringBuilder("{");
        if (Metadata.Count > 0)
        {
            SafetensorsJson.AppendString(json, SafetensorsHeaderParser.MetadataKey, asciiOnly: false);
            json.Append(":{");
            bool first = true;
            foreach (var (key, value) in Metadata.OrderBy(p => p.Key, SafetensorsJson.CodePointOrder))
            {
                if (value is null) throw new InvalidOperationException($"metadata '{key}' has a null value");
                if (!first) json.Append(',');
                first = false;
                SafetensorsJson.AppendString(json, key, asciiOnly: false);
                json.Append(':');
                SafetensorsJson.AppendString(json, value, asciiOnly: false);
            }
            json.Append('}');
        }

        long offset = 0;
        foreach (var tensor in ordered)
        {
            if (json.Length > 1) json.Append(',');
            SafetensorsJson.AppendString(json, tensor.Name, asciiOnly: false);
            json.Append(":{\"dtype\":\"").Append(tensor.DType.Name())
                .Append("\",\"shape\":[").AppendJoin(',', tensor.Shape)
                .Append("],\"data_offsets\":[").Append(offset).Append(',').Append(offset + tensor.ByteLength)
                .Append("]}");
            offset += tensor.ByteLength;
        }
        json.Append('}');

        byte[] text;
        try
        {
            text = SafetensorsJson.StrictUtf8.GetBytes(json.ToString());
        }
        catch (EncoderFallbackException e)
        {
            throw new InvalidOperationException("a metadata key or value is not valid Unicode (lone surrogate)", e);
        }
        // Pad with spaces so the data starts 8-byte aligned (8 + a multiple of 8), as the reference writer does.
        int padded = (text.Length + 7) / 8 * 8;
        var header = new byte[padded];
        text.CopyTo(header, 0);
        header.AsSpan(text.Length).Fill((byte)' ');
        return header;
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    private sealed record Pending(string Name, SafetensorsDType DType, long[] Shape, long ByteLength, Action<Stream> WriteData);

    /// <summary>
    /// The stream a tensor callback writes to: passes bytes through to the file and refuses more than the
    /// tensor's length, so a wrong callback fails at once and names its tensor instead of shifting every
    /// later tensor. Disposing it leaves the file open.
    /// </summary>
    private sealed class TensorDataStream(Stream target, string name, long expected) : Stream
    {
        private long _written;

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => expected;
        public override long Position
        {
            get => _written;
            set => throw new NotSupportedException();
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (buffer.Length > expected - _written)
                throw new InvalidOperationException(
                    $"tensor '{name}': data callback wrote more than the {expected} bytes its dtype and shape call for");
            target.Write(buffer);
            _written += buffer.Length;
        }

        public override void WriteByte(byte value) => Write([value]);

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        {
            Write(buffer, offset, count);
            return Task.CompletedTask;
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Write(buffer.Span);
            return ValueTask.CompletedTask;
        }

        public void CheckComplete()
        {
            if (_written != expected)
                throw new InvalidOperationException(
                    $"tensor '{name}': data callback wrote {_written} bytes, its dtype and shape call for {expected}");
        }

        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
