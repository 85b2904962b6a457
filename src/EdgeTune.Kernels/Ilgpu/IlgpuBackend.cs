using System.Runtime.InteropServices;
using EdgeTune.Core;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;

namespace EdgeTune.Kernels.Ilgpu;

/// <summary>
/// <see cref="IComputeBackend"/> on an ILGPU accelerator: CUDA for training, ILGPU's CPU accelerator for kernel
/// tests only (it emulates GPU threads and is orders of magnitude slower than the managed CpuBackend).
/// Every op is a static kernel with value-type parameters, compiled once on first use and cached (the nullable
/// delegate fields at the top of each per-op file); everything runs on the accelerator's default stream, in
/// order, and a download synchronises.
/// Host memory is pinned (<c>fixed</c>) for every copy: ILGPU's CPU copies take the address of the ref they are given,
/// and a compacting GC moving an unpinned array mid-copy left CI reading zeros back. No float atomics anywhere: every result is deterministic. One op per file (<c>Ilgpu/*Kernels.cs</c>), forward and backward together.
/// </summary>
public sealed unsafe partial class IlgpuBackend : IComputeBackend
{
    private readonly Context _context;
    private readonly Accelerator _accelerator;
    private readonly bool _tiled;
    private readonly int _rowGroup;
    private readonly Dictionary<string, MemoryBuffer1D<float, Stride1D.Dense>> _floatScratch = new();
    private MemoryBuffer1D<int, Stride1D.Dense>? _intScratch;
    private bool _disposed;

    private IlgpuBackend(Context context, Accelerator accelerator, bool? tiled)
    {
        _context = context;
        _accelerator = accelerator;
        _tiled = tiled ?? accelerator.AcceleratorType == AcceleratorType.Cuda;
        // One group per row for the row reductions: the largest power of two the device allows, at most RowGroupMax.
        int g = 1;
        while (g * 2 <= Math.Min(RowGroupMax, accelerator.MaxNumThreadsPerGroup)) g *= 2;
        _rowGroup = g;
        Name = accelerator.AcceleratorType == AcceleratorType.Cuda
            ? $"cuda ({accelerator.Name}, {accelerator.MemorySize / (1L << 30)} GiB)"
            : $"ilgpu-cpu ({accelerator.Name}, {(_tiled ? "tiled" : "simple")} kernels)";
    }

    public string Name { get; }

    /// <summary>The accelerator kernels run on (for benchmarks and tests).</summary>
    internal Accelerator Accelerator => _accelerator;

    /// <summary>Whether the matmuls use the shared-memory tiled kernel (CUDA) or one thread per output (CPU accelerator).</summary>
    internal bool TiledMatMul => _tiled;

    /// <summary>Rows per chunk of the fused cross-entropy are chosen so a chunk's logits hold at most this many floats.</summary>
    internal long CrossEntropyChunkElements { get; set; } = 1L << 24;

    /// <summary>The names of the CUDA devices ILGPU sees (empty when there is none or no driver).</summary>
    public static IReadOnlyList<string> CudaDeviceNames()
    {
        try
        {
            using var context = Context.Create(b => b.Cuda());
            var names = new List<string>();
            foreach (var d in context.GetCudaDevices()) names.Add($"{d.Name} ({d.MemorySize / (1L << 30)} GiB)");
            return names;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return [];
        }
    }

    /// <summary>Every device ILGPU can see ("Cuda NVIDIA H200, CPU CPUAccelerator"), or why it could not look: for error messages.</summary>
    public static string DescribeDevices()
    {
        try
        {
            using var context = Context.Create(b => b.AllAccelerators());
            var names = new List<string>();
            foreach (var d in context.Devices) names.Add($"{d.AcceleratorType} {d.Name}");
            return names.Count == 0 ? "no devices" : string.Join(", ", names);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return $"{e.GetType().Name}: {e.Message}";
        }
    }

    /// <summary>The first CUDA device. Throws <see cref="EdgeTuneException"/> when ILGPU finds none.</summary>
    public static IlgpuBackend Cuda(int deviceIndex = 0)
    {
        Context? context = null;
        try
        {
            context = Context.Create(b => b.Cuda().Optimize(OptimizationLevel.O1));
            var devices = context.GetCudaDevices();
            if (devices.Count == 0)
                throw new EdgeTuneException($"no CUDA device found (ILGPU saw: {DescribeDevices()}); use --device cpu");
            if (deviceIndex < 0 || deviceIndex >= devices.Count)
                throw new EdgeTuneException($"CUDA device {deviceIndex} does not exist (ILGPU saw {devices.Count}); use --device cpu");
            var accelerator = devices[deviceIndex].CreateCudaAccelerator(context);
            return new IlgpuBackend(context, accelerator, tiled: true);
        }
        catch (EdgeTuneException)
        {
            context?.Dispose();
            throw;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            context?.Dispose();
            throw new EdgeTuneException($"no usable CUDA device ({e.GetType().Name}: {e.Message}); use --device cpu", e);
        }
    }

    /// <summary>
    /// ILGPU's CPU accelerator, which emulates GPU threads: for kernel tests at tiny sizes only.
    /// <paramref name="tiled"/> forces the shared-memory matmul (which needs the 1024-thread "Nvidia" CPU device).
    /// </summary>
    public static IlgpuBackend CpuAccelerator(bool tiled = false)
    {
        var context = Context.Create(b => b.CPU(tiled ? CPUDeviceKind.Nvidia : CPUDeviceKind.Default));
        try
        {
            var accelerator = context.CreateCPUAccelerator(0, CPUAcceleratorMode.Parallel);
            return new IlgpuBackend(context, accelerator, tiled);
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    public DeviceBuffer Allocate(long length)
    {
        ThrowIfDisposed();
        Shapes.NonNegative(length, nameof(length));
        var buffer = _accelerator.Allocate1D<float>(Math.Max(length, 1));
        buffer.View.MemSetToZero();
        return new IlgpuBuffer(this, buffer, length);
    }

    public void Upload(ReadOnlySpan<float> source, DeviceBuffer target)
    {
        var t = View(target, nameof(target));
        if (source.Length != t.Length)
            throw new ArgumentException($"source holds {source.Length} values, target {t.Length}", nameof(source));
        if (source.IsEmpty) return;
        fixed (float* pinned = source) t.CopyFromCPU(ref *pinned, source.Length);
    }

    public void Download(DeviceBuffer source, Span<float> target)
    {
        var s = View(source, nameof(source));
        if (target.Length != s.Length)
            throw new ArgumentException($"target holds {target.Length} values, source {s.Length}", nameof(target));
        if (target.IsEmpty) return;
        fixed (float* pinned = target) s.CopyToCPU(ref *pinned, target.Length);
    }

    public void Zero(DeviceBuffer buffer)
    {
        var b = View(buffer, nameof(buffer));
        if (b.Length > 0) b.MemSetToZero();
    }

    public void Copy(DeviceBuffer source, DeviceBuffer target)
    {
        var s = View(source, nameof(source));
        var t = View(target, nameof(target));
        if (s.Length != t.Length)
            throw new ArgumentException($"source holds {s.Length} values, target {t.Length}", nameof(target));
        if (s.Length > 0) s.CopyTo(t);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var buffer in _floatScratch.Values) buffer.Dispose();
        _intScratch?.Dispose();
        _accelerator.Dispose();
        _context.Dispose();
    }

    // ---- helpers shared by the op files ----------------------------------------------------------------

    /// <summary>The device view of a buffer of this backend (full validation happens here, at the boundary).</summary>
    internal ArrayView<float> View(DeviceBuffer buffer, string name)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(buffer, name);
        if (buffer is not IlgpuBuffer b || !ReferenceEquals(b.Owner, this))
            throw new ArgumentException($"{name} was not allocated by this backend ({Name})", name);
        return b.View;
    }

    /// <summary>
    /// A device copy of host ints (token ids, targets) in a scratch buffer reused across calls; valid until the next
    /// call (one upload per op: callers that need several int arrays concatenate them first).
    /// </summary>
    internal ArrayView<int> UploadInts(ReadOnlySpan<int> values)
    {
        long needed = Math.Max(values.Length, 1);
        if (_intScratch is null || _intScratch.Length < needed)
        {
            _accelerator.Synchronize();
            _intScratch?.Dispose();
            _intScratch = _accelerator.Allocate1D<int>(Math.Max(needed, 1024));
        }
        else _accelerator.Synchronize(); // a kernel still reading the previous contents
        var view = _intScratch.View.SubView(0, values.Length);
        if (!values.IsEmpty)
            fixed (int* pinned = values) view.CopyFromCPU(ref *pinned, values.Length);
        return view;
    }

    /// <summary>A named float scratch buffer of at least <paramref name="length"/> values (contents undefined).</summary>
    internal ArrayView<float> Scratch(string slot, long length)
    {
        if (!_floatScratch.TryGetValue(slot, out var buffer) || buffer.Length < length)
        {
            _accelerator.Synchronize();
            buffer?.Dispose();
            buffer = _accelerator.Allocate1D<float>(Math.Max(length, 1));
            _floatScratch[slot] = buffer;
        }
        return buffer.View.SubView(0, Math.Max(length, 1));
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    /// <summary>Threads launched by the grid-stride elementwise kernels: enough to fill a GPU, few enough to index in int.</summary>
    internal static int GridStrideThreads(long count) => (int)Math.Min(count, 1 << 20);

    internal const int RowGroupMax = 256;
}

/// <summary>A float32 buffer (or a view of one) in accelerator memory. Slices share the parent's memory and own nothing.</summary>
internal sealed class IlgpuBuffer : DeviceBuffer
{
    private readonly MemoryBuffer1D<float, Stride1D.Dense>? _memory;
    private readonly ArrayView<float> _view;

    public IlgpuBuffer(IlgpuBackend owner, MemoryBuffer1D<float, Stride1D.Dense> memory, long length) : base(length)
    {
        Owner = owner;
        _memory = memory;
        _view = memory.View.SubView(0, length);
    }

    private IlgpuBuffer(IlgpuBackend owner, ArrayView<float> view) : base(view.Length)
    {
        Owner = owner;
        _view = view;
    }

    public IlgpuBackend Owner { get; }

    public ArrayView<float> View => _view;

    public override DeviceBuffer Slice(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset + length > Length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"slice [{offset}, {offset + length}) lies outside a buffer of {Length}");
        return new IlgpuBuffer(Owner, _view.SubView(offset, length));
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _memory?.Dispose();
        base.Dispose(disposing);
    }
}
