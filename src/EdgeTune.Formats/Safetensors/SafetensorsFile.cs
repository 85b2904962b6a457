using EdgeTune.Core;
using EdgeTune.Core.Quantization;

namespace EdgeTune.Formats.Safetensors;

/// <summary>
/// A safetensors file opened read-only through one memory-mapped view of the whole file. Opening parses and
/// validates only the header; tensor bytes are paged in by the OS when first read, so opening a 15 GB file is
/// as fast as opening a 15 KB one. Tensor data is little-endian, as the format specifies (and as every
/// platform .NET runs on is).
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    private readonly IO.MappedFile _file;
    private readonly byte* _base;
    private readonly Dictionary<string, SafetensorsTensorInfo> _byName;
    private bool _disposed;

    private SafetensorsFile(string path, IO.MappedFile file, byte* @base, long length, SafetensorsHeader header)
    {
        Path = path;
        _file = file;
        _base = @base;
        Length = length;
        Metadata = header.Metadata;
        Tensors = header.Tensors;
        _byName = header.Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    public string Path { get; }

    /// <summary>File size in bytes.</summary>
    public long Length { get; }

    /// <summary>The "__metadata__" map of the header; empty when there is none.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Tensors in the order their data appears in the file.</summary>
    public IReadOnlyList<SafetensorsTensorInfo> Tensors { get; }

    /// <summary>Opens and validates a file. Every problem with its content is a <see cref="FileFormatException"/>.</summary>
    public static SafetensorsFile Open(string path)
    {
        var file = IO.MappedFile.Open(path);
        try
        {
            long length = file.Length;
            if (length < 8)
                throw FileFormatException.AtOffset(path, 0, $"file is {length} bytes, too short for the 8-byte header length");
            byte* start = file.Bytes.Pointer;
            ulong headerLength = BitConverter.ToUInt64(new ReadOnlySpan<byte>(start, 8)); // little-endian on every .NET platform
            int jsonLength = SafetensorsHeaderParser.CheckHeaderLength(path, headerLength, length);
            var header = SafetensorsHeaderParser.Parse(path, new ReadOnlySpan<byte>(start + 8, jsonLength), length - 8 - jsonLength);
            return new SafetensorsFile(path, file, start, length, header);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    public bool Contains(string name) => _byName.ContainsKey(name);

    public bool TryGetTensor(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out SafetensorsTensorInfo? tensor) =>
        _byName.TryGetValue(name, out tensor);

    /// <summary>The tensor of that name; a missing one is reported like any other problem with the file.</summary>
    public SafetensorsTensorInfo GetTensor(string name) =>
        _byName.TryGetValue(name, out var tensor)
            ? tensor
            : throw FileFormatException.AtKey(Path, SafetensorsJson.OneLine(name), "no tensor of this name in the file");

    /// <summary>Pointer and 64-bit length of a tensor's bytes, valid until this file is disposed.</summary>
    public SafetensorsTensorData GetData(string name) => GetData(GetTensor(name));

    public SafetensorsTensorData GetData(SafetensorsTensorInfo tensor)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_byName.TryGetValue(tensor.Name, out var own) || !ReferenceEquals(own, tensor))
            throw new ArgumentException($"tensor '{tensor.Name}' is not from {Path}", nameof(tensor));
        return new SafetensorsTensorData(_base + tensor.FileOffset, tensor.ByteLength, tensor.Name);
    }

    /// <summary>A tensor's bytes as a span; throws InvalidOperationException for tensors of 2 GiB or more.</summary>
    public ReadOnlySpan<byte> GetBytes(string name) => GetData(name).Span;

    /// <summary>A read-only stream over a tensor's bytes, for tensors of any size.</summary>
    public UnmanagedMemoryStream OpenRead(string name) => GetData(name).OpenRead();

    /// <summary>Converts a whole F32, F16, BF16 or F64 tensor to float32; destination must hold exactly its elements.</summary>
    public void ReadAsFloat32(string name, Span<float> destination)
    {
        var tensor = GetTensor(name);
        if (destination.Length != tensor.ElementCount)
            throw new ArgumentException(
                $"tensor '{SafetensorsJson.OneLine(name)}' has {tensor.ElementCount} elements, destination holds {destination.Length}",
                nameof(destination));
        ReadAsFloat32(name, 0, destination);
    }

    /// <summary>
    /// Converts destination.Length elements starting at element firstElement, so tensors with more elements than
    /// a span can hold are read in pieces.
    /// </summary>
    public void ReadAsFloat32(string name, long firstElement, Span<float> destination)
    {
        var tensor = GetTensor(name);
        ArgumentOutOfRangeException.ThrowIfNegative(firstElement);
        if (firstElement > tensor.ElementCount - destination.Length)
            throw new ArgumentOutOfRangeException(nameof(firstElement),
                $"elements {firstElement}..{firstElement + destination.Length} are past the {tensor.ElementCount} of tensor '{SafetensorsJson.OneLine(name)}'");

        if (tensor.DType is not (SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16 or SafetensorsDType.F64))
            throw new EdgeTuneException(
                $"{Path}: key '{SafetensorsJson.OneLine(name)}': dtype {tensor.DType.Name()} cannot be read as float32");

        var data = GetData(tensor);
        int size = tensor.DType.Size();
        // A destination of int.MaxValue floats can cover up to 16 GiB of source, more than one span can view.
        const int Chunk = 1 << 20;
        for (int done = 0; done < destination.Length; done += Chunk)
        {
            int count = Math.Min(Chunk, destination.Length - done);
            var source = data.Slice((firstElement + done) * size, count * size);
            var target = destination.Slice(done, count);
            // The element codecs live in Core; safetensors dtypes map onto ggml's scalar types.
            QuantCodecs.Dequantize(tensor.DType switch
            {
                SafetensorsDType.F32 => GgmlType.F32,
                SafetensorsDType.F16 => GgmlType.F16,
                SafetensorsDType.BF16 => GgmlType.BF16,
                _ => GgmlType.F64,
            }, source, target);
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _file.Dispose();
    }
}
