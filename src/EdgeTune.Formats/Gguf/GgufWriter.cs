using System.Text;
using EdgeTune.Core;

namespace EdgeTune.Formats.Gguf;

/// <summary>
/// Writes GGUF version 3, streaming: tensors are declared first (name, type, shape and a callback that
/// writes their bytes), then <see cref="Write"/> emits the header and calls each callback in turn, so a
/// model never has to sit in memory. The file appears under its name only when complete; a failure
/// leaves any existing file untouched.
/// </summary>
public sealed class GgufWriter
{
    private readonly List<PendingTensor> _tensors = [];
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);

    public GgufMetadata Metadata { get; } = new();

    public IReadOnlyList<GgufTensorInfo> Tensors => _tensors.Select(t => t.Info).ToList();

    /// <summary>Alignment from <c>general.alignment</c> when set (it must be a UINT32 power of two), else 32.</summary>
    public int Alignment
    {
        get
        {
            if (!Metadata.TryGet("general.alignment", out var v)) return GgufFile.DefaultAlignment;
            if (v.Type != GgufValueType.UInt32) throw new EdgeTuneException($"general.alignment must be UINT32, not {v.Describe()}");
            uint a = (uint)v.Value;
            if (a == 0 || (a & (a - 1)) != 0) throw new EdgeTuneException($"general.alignment {a} is not a power of two");
            return (int)a;
        }
    }

    /// <summary>
    /// Declare a tensor. <paramref name="shape"/> is ggml order (innermost first). <paramref name="writeData"/>
    /// must write exactly the tensor's byte length to the stream it is given.
    /// </summary>
    public void AddTensor(string name, GgmlType type, long[] shape, Action<Stream> writeData)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (Encoding.UTF8.GetByteCount(name) > GgufFile.MaxTensorNameBytes)
            throw new EdgeTuneException($"tensor name '{name}' is longer than {GgufFile.MaxTensorNameBytes} bytes");
        if (shape.Length > GgufFile.MaxDimensions)
            throw new EdgeTuneException($"tensor '{name}' has {shape.Length} dimensions, at most {GgufFile.MaxDimensions} allowed");
        if (shape.Any(d => d < 0)) throw new EdgeTuneException($"tensor '{name}' has a negative dimension");
        if (!GgmlTypes.IsKnown(type)) throw new EdgeTuneException($"tensor '{name}' has unknown ggml type {(uint)type}");
        if (shape.Length > 0 && shape[0] % GgmlTypes.BlockSize(type) != 0)
            throw new EdgeTuneException($"tensor '{name}': row length {shape[0]} is not a multiple of the {GgmlTypes.Name(type)} block size {GgmlTypes.BlockSize(type)}");
        if (!_names.Add(name)) throw new EdgeTuneException($"duplicate tensor name '{name}'");
        _tensors.Add(new PendingTensor(new GgufTensorInfo(name, (long[])shape.Clone(), type, Offset: 0), writeData));
    }

    /// <summary>Declare a tensor whose bytes are already in memory.</summary>
    public void AddTensor(string name, GgmlType type, long[] shape, ReadOnlyMemory<byte> data) =>
        AddTensor(name, type, shape, s => s.Write(data.Span));

    /// <summary>Write the file. <paramref name="progress"/> receives (tensors done, total, name).</summary>
    public void Write(string path, IProgress<(int Done, int Total, string Name)>? progress = null, CancellationToken cancellationToken = default)
    {
        int alignment = Alignment;
        var laidOut = new List<GgufTensorInfo>(_tensors.Count);
        long offset = 0;
        foreach (var t in _tensors)
        {
            laidOut.Add(t.Info with { Offset = offset });
            offset = GgufFile.AlignUp(offset + t.Info.ByteLength, alignment);
        }

        string fullPath = System.IO.Path.GetFullPath(path);
        string? dir = System.IO.Path.GetDirectoryName(fullPath);
        if (dir is not null) Directory.CreateDirectory(dir);
        string temp = fullPath + $".partial-{Environment.ProcessId}";
        try
        {
            using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 1 << 20))
            {
                WriteHeader(file, laidOut, alignment);
                long dataStart = file.Position;
                for (int i = 0; i < _tensors.Count; i++)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var info = laidOut[i];
                    Pad(file, dataStart + info.Offset - file.Position);
                    var counter = new CountingStream(file);
                    _tensors[i].WriteData(counter);
                    if (counter.Written != info.ByteLength)
                        throw new EdgeTuneException($"tensor '{info.Name}': {counter.Written} bytes were written, {info.ByteLength} expected for {GgmlTypes.Name(info.Type)} [{info.ShapeText}]");
                    progress?.Report((i + 1, _tensors.Count, info.Name));
                }
                // Pad the last tensor too, as gguf.cpp does, so the data section is a whole number of alignments.
                Pad(file, GgufFile.AlignUp(file.Position - dataStart, alignment) - (file.Position - dataStart));
                // On disk before the rename, and the rename durable after it: a power cut leaves the old file or the whole new one.
                file.Flush(flushToDisk: true);
            }
            File.Move(temp, fullPath, overwrite: true);
            if (dir is not null) EdgeTune.Core.IO.DurableFiles.SyncFolder(dir);
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { }
            throw;
        }
    }

    private void WriteHeader(Stream stream, List<GgufTensorInfo> tensors, int alignment)
    {
        using var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        w.Write(GgufFile.Magic);
        w.Write(3u);
        w.Write((ulong)tensors.Count);
        w.Write((ulong)Metadata.Count);
        foreach (var (key, value) in Metadata)
        {
            WriteString(w, key);
            w.Write((uint)value.Type);
            WriteValue(w, value);
        }
        foreach (var t in tensors)
        {
            WriteString(w, t.Name);
            w.Write((uint)t.Shape.Length);
            foreach (var d in t.Shape) w.Write(d);
            w.Write((uint)t.Type);
            w.Write((ulong)t.Offset);
        }
        w.Flush();
        Pad(stream, GgufFile.AlignUp(stream.Position, alignment) - stream.Position);
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static void WriteValue(BinaryWriter w, GgufValue v)
    {
        switch (v.Value)
        {
            case byte x: w.Write(x); break;
            case sbyte x: w.Write(x); break;
            case ushort x: w.Write(x); break;
            case short x: w.Write(x); break;
            case uint x: w.Write(x); break;
            case int x: w.Write(x); break;
            case float x: w.Write(x); break;
            case bool x: w.Write((byte)(x ? 1 : 0)); break;
            case string x: WriteString(w, x); break;
            case ulong x: w.Write(x); break;
            case long x: w.Write(x); break;
            case double x: w.Write(x); break;
            case Array array:
                w.Write((uint)v.ElementType);
                w.Write((ulong)array.Length);
                WriteArrayElements(w, v.ElementType, array);
                break;
            default: throw new InvalidOperationException($"cannot write GGUF value of {v.Value.GetType()}");
        }
    }

    private static void WriteArrayElements(BinaryWriter w, GgufValueType elementType, Array array)
    {
        switch (array)
        {
            case string[] strings: foreach (var s in strings) WriteString(w, s); break;
            case bool[] bools: foreach (var b in bools) w.Write((byte)(b ? 1 : 0)); break;
            case GgufValue[] nested:
                foreach (var n in nested)
                {
                    w.Write((uint)n.ElementType);
                    w.Write((ulong)n.ArrayLength);
                    WriteArrayElements(w, n.ElementType, (Array)n.Value);
                }
                break;
            default:
                // Primitive arrays are stored little-endian, exactly as they sit in memory here.
                w.Flush();
                var bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(ArraySpan(array, elementType));
                w.Write(bytes);
                break;
        }
    }

    private static ReadOnlySpan<byte> ArraySpan(Array array, GgufValueType type) => array switch
    {
        byte[] a => a,
        sbyte[] a => System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()),
        ushort[] a => System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()),
        short[] a => System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()),
        uint[] a => System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()),
        int[] a => System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()),
        float[] a => System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()),
        ulong[] a => System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()),
        long[] a => System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()),
        double[] a => System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()),
        _ => throw new InvalidOperationException($"array of {type} cannot be written"),
    };

    private static readonly byte[] Zeros = new byte[4096];

    private static void Pad(Stream stream, long count)
    {
        while (count > 0)
        {
            int n = (int)Math.Min(count, Zeros.Length);
            stream.Write(Zeros, 0, n);
            count -= n;
        }
    }

    private sealed record PendingTensor(GgufTensorInfo Info, Action<Stream> WriteData);

    /// <summary>Passes writes through and counts them, so a callback that writes too much or too little is caught.</summary>
    private sealed class CountingStream(Stream inner) : Stream
    {
        public long Written { get; private set; }
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => Written; set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) { inner.Write(buffer, offset, count); Written += count; }
        public override void Write(ReadOnlySpan<byte> buffer) { inner.Write(buffer); Written += buffer.Length; }
    }
}
