using System.IO.MemoryMappedFiles;
using Microsoft.Win32.SafeHandles;

namespace EdgeTune.Formats.IO;

/// <summary>
/// A whole file mapped read-only. Opening costs no reads: pages are faulted in only when touched, so a
/// 15 GB checkpoint opens instantly and reading one tensor costs only that tensor's pages.
/// </summary>
public sealed unsafe class MappedFile : IDisposable
{
    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly SafeMemoryMappedViewHandle? _handle;
    private byte* _pointer;

    private MappedFile(string path, long length, MemoryMappedFile? map, MemoryMappedViewAccessor? view)
    {
        Path = path;
        Length = length;
        _map = map;
        _view = view;
        if (view is not null)
        {
            _handle = view.SafeMemoryMappedViewHandle;
            byte* p = null;
            _handle.AcquirePointer(ref p);
            _pointer = p + view.PointerOffset;
        }
    }

    public string Path { get; }

    public long Length { get; }

    /// <summary>Map <paramref name="path"/>; an empty file maps to an empty view.</summary>
    public static MappedFile Open(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new Core.EdgeTuneException($"{path}: no such file");
        long length = info.Length;
        if (length == 0) return new MappedFile(path, 0, null, null);
        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, mapName: null, capacity: 0, MemoryMappedFileAccess.Read);
        try
        {
            var view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            return new MappedFile(path, length, map, view);
        }
        catch
        {
            map.Dispose();
            throw;
        }
    }

    /// <summary>The whole file as native bytes.</summary>
    public NativeBytes Bytes
    {
        get
        {
            ObjectDisposedException.ThrowIf(_pointer == null && Length != 0, this);
            return new NativeBytes(_pointer, Length);
        }
    }

    public void Dispose()
    {
        if (_handle is not null && _pointer != null)
        {
            _handle.ReleasePointer();
            _pointer = null;
        }
        _view?.Dispose();
        _map?.Dispose();
    }
}

/// <summary>
/// A native byte range with a 64-bit length (tensors may exceed the 2 GB a span can address).
/// Valid only while the owning <see cref="MappedFile"/> is open.
/// </summary>
public readonly unsafe struct NativeBytes
{
    public NativeBytes(byte* pointer, long length)
    {
        Pointer = pointer;
        Length = length;
    }

    public byte* Pointer { get; }

    public long Length { get; }

    public NativeBytes Slice(long offset, long length)
    {
        if ((ulong)offset > (ulong)Length || (ulong)length > (ulong)(Length - offset))
            throw new ArgumentOutOfRangeException(nameof(offset), $"range {offset}+{length} outside {Length} bytes");
        return new NativeBytes(Pointer + offset, length);
    }

    /// <summary>A span over a piece of at most 2 GB.</summary>
    public ReadOnlySpan<byte> Span(long offset, int length) => new(Slice(offset, length).Pointer, length);

    /// <summary>The whole range as a span; throws for ranges over 2 GB (use <see cref="Span(long,int)"/> in pieces).</summary>
    public ReadOnlySpan<byte> AsSpan() =>
        Length <= int.MaxValue
            ? new ReadOnlySpan<byte>(Pointer, (int)Length)
            : throw new InvalidOperationException($"{Length} bytes do not fit in one span; read it in pieces");

    /// <summary>A read-only stream over the range (for copying large tensors).</summary>
    public Stream AsStream() => new UnmanagedMemoryStream(Pointer, Length);
}
