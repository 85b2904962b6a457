using EdgeTune.Core;
using EdgeTune.Core.Quantization;
using EdgeTune.Formats.IO;

namespace EdgeTune.Formats.Gguf;

/// <summary>
/// A GGUF file (versions 2 and 3), memory-mapped. The header (metadata and tensor infos) is parsed and
/// validated on open; tensor data stays in the mapping and costs only the pages that are read.
/// Layout (ggml docs/gguf.md): "GGUF", u32 version, u64 tensor count, u64 kv count, kvs, tensor infos,
/// padding to the alignment, tensor data.
/// </summary>
public sealed class GgufFile : IDisposable
{
    public const uint Magic = 0x46554747; // "GGUF" read as little-endian u32
    public const int DefaultAlignment = 32;
    public const int MaxTensorNameBytes = 63; // GGML_MAX_NAME (64) including the terminating NUL
    public const int MaxDimensions = 4;       // GGML_MAX_DIMS

    private readonly MappedFile _file;
    private readonly Dictionary<string, GgufTensorInfo> _byName;

    private GgufFile(MappedFile file, uint version, GgufMetadata metadata, List<GgufTensorInfo> tensors, int alignment, long dataOffset)
    {
        _file = file;
        Version = version;
        Metadata = metadata;
        Tensors = tensors;
        Alignment = alignment;
        DataOffset = dataOffset;
        _byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    public string Path => _file.Path;
    public uint Version { get; }
    public long FileSize => _file.Length;
    public int Alignment { get; }

    /// <summary>Absolute file offset of the tensor data section.</summary>
    public long DataOffset { get; }

    public GgufMetadata Metadata { get; }
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }

    public string? Architecture => Metadata.Get("general.architecture")?.Value as string;

    public GgufTensorInfo? FindTensor(string name) => _byName.GetValueOrDefault(name);

    public GgufTensorInfo GetTensor(string name) =>
        _byName.TryGetValue(name, out var t) ? t : throw new EdgeTuneException($"{Path}: no tensor named '{name}'");

    /// <summary>The tensor's bytes, straight from the mapping.</summary>
    public NativeBytes GetData(GgufTensorInfo tensor) => _file.Bytes.Slice(DataOffset + tensor.Offset, tensor.ByteLength);

    /// <summary>Dequantise rows [firstRow, firstRow + destination.Length / rowLength) of a tensor into floats.</summary>
    public void ReadRows(GgufTensorInfo tensor, long firstRow, Span<float> destination)
    {
        long rowLength = tensor.RowLength;
        if (destination.Length % rowLength != 0) throw new ArgumentException("destination must hold whole rows", nameof(destination));
        long rows = destination.Length / rowLength;
        if (firstRow < 0 || firstRow + rows > tensor.RowCount) throw new ArgumentOutOfRangeException(nameof(firstRow));
        long rowBytes = tensor.RowBytes;
        var src = GetData(tensor).Span(firstRow * rowBytes, checked((int)(rows * rowBytes)));
        QuantCodecs.Dequantize(tensor.Type, src, destination);
    }

    public void Dispose() => _file.Dispose();

    public static GgufFile Open(string path)
    {
        var file = MappedFile.Open(path);
        try
        {
            return Parse(file);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    private static GgufFile Parse(MappedFile file)
    {
        var r = new HeaderReader(file.Bytes, file.Path);
        if (file.Length < 4 || r.U32("magic") != Magic)
            throw r.Error("not a GGUF file (the first four bytes are not \"GGUF\")", 0);
        long versionAt = r.Position;
        uint version = r.U32("version");
        if (version is 1) throw r.Error("GGUF version 1 is not supported (re-convert the model with a current llama.cpp)", versionAt);
        if (version is not (2 or 3))
        {
            string hint = (version & 0xFFFF) == 0 ? " (this looks like a big-endian GGUF, which is not supported)" : "";
            throw r.Error($"unsupported GGUF version {version}{hint}", versionAt);
        }

        long tensorCountAt = r.Position;
        ulong rawTensorCount = r.U64("tensor count");
        long kvCountAt = r.Position;
        ulong rawKvCount = r.U64("metadata count");
        // A tensor info takes at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset) bytes, a kv at least 8 + 4.
        long tensorCount = r.Count(rawTensorCount, 24, "tensor count", tensorCountAt);
        long kvCount = r.Count(rawKvCount, 12, "metadata count", kvCountAt);

        var metadata = new GgufMetadata();
        for (long i = 0; i < kvCount; i++)
        {
            long keyAt = r.Position;
            string key = ReadString(ref r, "metadata key");
            if (key.Length == 0) throw r.Error("empty metadata key", keyAt);
            long typeAt = r.Position;
            var type = (GgufValueType)r.U32($"type of key '{key}'");
            var value = ReadValue(ref r, type, key, typeAt, depth: 0);
            if (!metadata.TryAdd(key, value)) throw r.Error($"duplicate metadata key '{key}'", keyAt);
        }

        int alignment = DefaultAlignment;
        if (metadata.TryGet("general.alignment", out var alignValue))
        {
            if (alignValue.Type != GgufValueType.UInt32)
                throw FileFormatException.AtKey(file.Path, "general.alignment", $"must be UINT32, found {alignValue.Describe()}");
            uint a = (uint)alignValue.Value;
            if (a == 0 || (a & (a - 1)) != 0 || a > 1 << 30)
                throw FileFormatException.AtKey(file.Path, "general.alignment", $"{a} is not a power of two");
            alignment = (int)a;
        }

        var tensors = new List<GgufTensorInfo>((int)Math.Min(tensorCount, 1 << 16));
        var names = new HashSet<string>(StringComparer.Ordinal);
        var infoOffsets = new List<long>();
        for (long i = 0; i < tensorCount; i++)
        {
            long infoAt = r.Position;
            string name = ReadString(ref r, "tensor name");
            if (System.Text.Encoding.UTF8.GetByteCount(name) > MaxTensorNameBytes)
                throw r.Error($"tensor name '{name[..Math.Min(40, name.Length)]}...' is longer than {MaxTensorNameBytes} bytes", infoAt);
            if (!names.Add(name)) throw r.Error($"duplicate tensor name '{name}'", infoAt);
            long dimsAt = r.Position;
            uint nDims = r.U32($"dimension count of '{name}'");
            if (nDims > MaxDimensions) throw r.Error($"tensor '{name}' has {nDims} dimensions, at most {MaxDimensions} allowed", dimsAt);
            var shape = new long[nDims];
            long elements = 1;
            for (int d = 0; d < nDims; d++)
            {
                long dimAt = r.Position;
                long ne = r.I64($"dimension {d} of '{name}'");
                if (ne < 0) throw r.Error($"tensor '{name}' has negative dimension {ne}", dimAt);
                if (ne != 0 && elements > long.MaxValue / ne) throw r.Error($"tensor '{name}' has more elements than fit in 64 bits", dimAt);
                elements *= ne;
                shape[d] = ne;
            }
            long typeAt = r.Position;
            var type = (GgmlType)r.U32($"type of '{name}'");
            if (!GgmlTypes.IsKnown(type)) throw r.Error($"tensor '{name}' has unknown ggml type {(uint)type}", typeAt);
            int blockSize = GgmlTypes.BlockSize(type);
            long rowLength = shape.Length > 0 ? shape[0] : 1;
            if (rowLength % blockSize != 0)
                throw r.Error($"tensor '{name}': row length {rowLength} is not a multiple of the {GgmlTypes.Name(type)} block size {blockSize}", dimsAt);
            long offsetAt = r.Position;
            ulong offset = r.U64($"data offset of '{name}'");
            if (offset % (ulong)alignment != 0)
                throw r.Error($"tensor '{name}' data offset {offset} is not aligned to {alignment} bytes", offsetAt);
            if (offset > long.MaxValue) throw r.Error($"tensor '{name}' data offset {offset} is past the end of the file", offsetAt);
            tensors.Add(new GgufTensorInfo(name, shape, type, (long)offset));
            infoOffsets.Add(offsetAt);
        }

        long dataOffset = AlignUp(r.Position, alignment);
        if (dataOffset > file.Length && tensorCount > 0)
            throw r.Error($"file ends before the tensor data section at byte {dataOffset}");
        long dataSize = Math.Max(0, file.Length - dataOffset);

        // Every tensor must lie inside the file, and no two may overlap.
        var order = Enumerable.Range(0, tensors.Count).ToArray();
        Array.Sort(order, (a, b) => tensors[a].Offset.CompareTo(tensors[b].Offset));
        long previousEnd = 0;
        string? previousName = null;
        foreach (int i in order)
        {
            var t = tensors[i];
            long bytes = TensorBytes(t, ref r, infoOffsets[i]);
            if (t.Offset > dataSize || bytes > dataSize - t.Offset)
                throw r.Error($"tensor '{t.Name}' ({bytes} bytes at data offset {t.Offset}) runs past the end of the file ({dataSize} data bytes)", infoOffsets[i]);
            if (t.Offset < previousEnd)
                throw r.Error($"tensor '{t.Name}' overlaps tensor '{previousName}'", infoOffsets[i]);
            previousEnd = t.Offset + bytes;
            previousName = t.Name;
        }

        return new GgufFile(file, version, metadata, tensors, alignment, dataOffset);
    }

    private static long TensorBytes(GgufTensorInfo t, ref HeaderReader r, long at)
    {
        try
        {
            return t.ByteLength;
        }
        catch (OverflowException)
        {
            throw r.Error($"tensor '{t.Name}' is larger than 2^63 bytes", at);
        }
    }

    internal static long AlignUp(long value, int alignment) => (value + alignment - 1) / alignment * alignment;

    // Fixed-size elements: one bounds check, then a bulk copy out of the mapping.
    private static unsafe T[] Bulk<T>(ref HeaderReader r, int n, string key) where T : unmanaged
    {
        var src = new ReadOnlySpan<byte>(r.Take((long)n * sizeof(T), $"array of key '{key}'"), n * sizeof(T));
        var result = new T[n];
        src.CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(result.AsSpan()));
        return result;
    }

    private static string ReadString(ref HeaderReader r, string what)
    {
        long at = r.Position;
        ulong length = r.U64($"{what} length");
        if (length > (ulong)r.Remaining) throw r.Error($"{what} length {length} is past the end of the file", at);
        return r.Utf8((long)length, what);
    }

    // Nested arrays are legal; a depth limit keeps a hostile file from exhausting the stack.
    private const int MaxArrayDepth = 16;

    private static GgufValue ReadValue(ref HeaderReader r, GgufValueType type, string key, long typeAt, int depth)
    {
        switch (type)
        {
            case GgufValueType.UInt8: return GgufValue.U8(r.U8(key));
            case GgufValueType.Int8: return GgufValue.I8(r.I8(key));
            case GgufValueType.UInt16: return GgufValue.U16(r.U16(key));
            case GgufValueType.Int16: return GgufValue.I16(r.I16(key));
            case GgufValueType.UInt32: return GgufValue.U32(r.U32(key));
            case GgufValueType.Int32: return GgufValue.I32(r.I32(key));
            case GgufValueType.Float32: return GgufValue.F32(r.F32(key));
            case GgufValueType.UInt64: return GgufValue.U64(r.U64(key));
            case GgufValueType.Int64: return GgufValue.I64(r.I64(key));
            case GgufValueType.Float64: return GgufValue.F64(r.F64(key));
            case GgufValueType.Bool:
                long boolAt = r.Position;
                byte b = r.U8(key);
                if (b > 1) throw r.Error($"key '{key}': BOOL value {b} is neither 0 nor 1", boolAt);
                return GgufValue.Bool(b == 1);
            case GgufValueType.String: return GgufValue.String(ReadString(ref r, $"value of key '{key}'"));
            case GgufValueType.Array: return ReadArray(ref r, key, depth);
            default: throw r.Error($"key '{key}' has unknown value type {(uint)type}", typeAt);
        }
    }

    private static unsafe GgufValue ReadArray(ref HeaderReader r, string key, int depth)
    {
        if (depth >= MaxArrayDepth) throw r.Error($"key '{key}': arrays nested deeper than {MaxArrayDepth}");
        long typeAt = r.Position;
        var elementType = (GgufValueType)r.U32($"array type of key '{key}'");
        long countAt = r.Position;
        ulong rawCount = r.U64($"array length of key '{key}'");
        int elementBytes = elementType switch
        {
            GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
            GgufValueType.UInt16 or GgufValueType.Int16 => 2,
            GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
            GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 => 8,
            GgufValueType.String => 8,  // at least the length prefix
            GgufValueType.Array => 12,  // at least type + count
            _ => throw r.Error($"key '{key}' is an array of unknown type {(uint)elementType}", typeAt),
        };
        long count = r.Count(rawCount, elementBytes, $"array length of key '{key}'", countAt);
        if (count > int.MaxValue) throw r.Error($"array length {count} of key '{key}' is too large", countAt);
        int n = (int)count;

        switch (elementType)
        {
            case GgufValueType.UInt8: return GgufValue.Array(Bulk<byte>(ref r, n, key));
            case GgufValueType.Int8: return GgufValue.Array(Bulk<sbyte>(ref r, n, key));
            case GgufValueType.UInt16: return GgufValue.Array(Bulk<ushort>(ref r, n, key));
            case GgufValueType.Int16: return GgufValue.Array(Bulk<short>(ref r, n, key));
            case GgufValueType.UInt32: return GgufValue.Array(Bulk<uint>(ref r, n, key));
            case GgufValueType.Int32: return GgufValue.Array(Bulk<int>(ref r, n, key));
            case GgufValueType.Float32: return GgufValue.Array(Bulk<float>(ref r, n, key));
            case GgufValueType.UInt64: return GgufValue.Array(Bulk<ulong>(ref r, n, key));
            case GgufValueType.Int64: return GgufValue.Array(Bulk<long>(ref r, n, key));
            case GgufValueType.Float64: return GgufValue.Array(Bulk<double>(ref r, n, key));
            case GgufValueType.Bool:
                long boolsAt = r.Position;
                var raw = Bulk<byte>(ref r, n, key);
                var bools = new bool[n];
                for (int i = 0; i < n; i++)
                {
                    if (raw[i] > 1) throw r.Error($"key '{key}': BOOL element {i} is {raw[i]}", boolsAt + i);
                    bools[i] = raw[i] == 1;
                }
                return GgufValue.Array(bools);
            case GgufValueType.String:
                var strings = new string[n];
                for (int i = 0; i < n; i++) strings[i] = ReadString(ref r, $"element {i} of key '{key}'");
                return GgufValue.Array(strings);
            default:
                var nested = new GgufValue[n];
                for (int i = 0; i < n; i++) nested[i] = ReadArray(ref r, key, depth + 1);
                return GgufValue.Array(nested);
        }
    }
}
