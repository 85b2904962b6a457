using System.Runtime.InteropServices;

namespace EdgeTune.Formats.Onnx;

/// <summary>
/// The external data file of a model (model.onnx.data): tensors appended one at a time as they are made, so
/// a large model streams through memory one tensor at a time. Large tensors start on 64 KiB boundaries, as
/// onnx's save_model aligns them, so a runtime may map them directly.
/// </summary>
public sealed class OnnxExternalData : IDisposable
{
    private const long AlignThreshold = 1 << 20, Alignment = 1 << 16;
    private readonly FileStream _stream;
    private readonly string _location;

    /// <param name="path">The data file to create.</param>
    /// <param name="location">Its name as model.onnx refers to it (relative to the model's folder).</param>
    public OnnxExternalData(string path, string location)
    {
        _stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
        _location = location;
    }

    public long Length => _stream.Length;

    public OnnxInitializer Add(string name, OnnxDataType type, long[] dims, ReadOnlySpan<byte> data)
    {
        long expected = dims.Aggregate(1L, (a, b) => a * b) * OnnxDataTypes.Size(type);
        if (data.Length != expected) throw new ArgumentException($"tensor '{name}': {data.Length} bytes for shape [{string.Join(", ", dims)}] of {type} ({expected} expected)", nameof(data));
        if (data.Length >= AlignThreshold && _stream.Position % Alignment != 0)
        {
            long padding = Alignment - _stream.Position % Alignment;
            _stream.Write(new byte[padding]);
        }
        long offset = _stream.Position;
        _stream.Write(data);
        return new OnnxInitializer(name, type, dims, null, new OnnxExternalLocation(_location, offset, data.Length));
    }

    public OnnxInitializer Add(string name, long[] dims, ReadOnlySpan<float> data) =>
        Add(name, OnnxDataType.Float, dims, MemoryMarshal.AsBytes(data));

    public OnnxInitializer Add(string name, long[] dims, ReadOnlySpan<Half> data) =>
        Add(name, OnnxDataType.Float16, dims, MemoryMarshal.AsBytes(data));

    /// <summary>Flush to the disk (not only the OS cache) before the folder is renamed into place.</summary>
    public void Complete() => _stream.Flush(flushToDisk: true);

    public void Dispose() => _stream.Dispose();
}
