using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Numerics;

namespace EdgeTune.Kernels.Cpu;

/// <summary>
/// The managed SIMD backend CPU training runs on (ARCHITECTURE.md, decision 1). Buffers are float arrays on the
/// pinned object heap, sliced by offset; ops run Vector&lt;float&gt; kernels (256-bit with AVX2, 128-bit NEON on a Jetson) split over a fixed number of threads. Every
/// output element is computed by one thread in an order that does not depend on the split, so results are
/// bitwise reproducible for a given input, whatever the thread count.
/// </summary>
public sealed unsafe partial class CpuBackend : IComputeBackend
{
    private readonly ParallelOptions _parallel;
    private readonly int _threads;

    /// <param name="threads">Worker threads; 0 = one per core.</param>
    public CpuBackend(int threads = 0)
    {
        if (threads < 0) throw new ArgumentOutOfRangeException(nameof(threads), threads, "threads must be 0 (all cores) or positive");
        _threads = threads == 0 ? Environment.ProcessorCount : threads;
        _parallel = new ParallelOptions { MaxDegreeOfParallelism = _threads };
    }

    public int Threads => _threads;

    public string Name => $"cpu (managed SIMD {(Vector.IsHardwareAccelerated ? 32 * Vector<float>.Count : 32)}-bit, {_threads} threads)";

    public void Dispose() { }

    // ---- buffers -------------------------------------------------------------------------------------------------

    private sealed class CpuBuffer : DeviceBuffer
    {
        public CpuBuffer(float[] array, long offset, long length) : base(length)
        {
            Array = array;
            Offset = offset;
        }

        public float[] Array { get; }
        public long Offset { get; }

        /// <summary>The array lives on the pinned object heap, so its address never moves.</summary>
        public float* Pointer => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(Array)) + Offset;

        public Span<float> Span => Array.AsSpan((int)Offset, (int)Length);

        public override DeviceBuffer Slice(long offset, long length)
        {
            if (offset < 0 || length < 0 || offset + length > Length)
                throw new ArgumentOutOfRangeException(nameof(offset), $"slice [{offset}, {offset + length}) lies outside a buffer of {Length}");
            return new CpuBuffer(Array, Offset + offset, length);
        }
    }

    private static CpuBuffer Of(DeviceBuffer buffer, string name) =>
        buffer as CpuBuffer ?? throw new ArgumentException($"{name} was not allocated by a CpuBackend", name);

    public DeviceBuffer Allocate(long length)
    {
        if (length < 0 || length > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(length), length, $"a CPU buffer holds 0 to {Array.MaxLength} floats");
        return new CpuBuffer(GC.AllocateArray<float>((int)length, pinned: true), 0, length);
    }

    public void Upload(ReadOnlySpan<float> source, DeviceBuffer target)
    {
        var t = Of(target, nameof(target));
        if (source.Length != t.Length) throw new ArgumentException($"source holds {source.Length} values, target {t.Length}", nameof(source));
        source.CopyTo(t.Span);
    }

    public void Download(DeviceBuffer source, Span<float> target)
    {
        var s = Of(source, nameof(source));
        if (target.Length != s.Length) throw new ArgumentException($"target holds {target.Length} values, source {s.Length}", nameof(target));
        s.Span.CopyTo(target);
    }

    public void Zero(DeviceBuffer buffer) => Of(buffer, nameof(buffer)).Span.Clear();

    public void Copy(DeviceBuffer source, DeviceBuffer target)
    {
        var s = Of(source, nameof(source));
        var t = Of(target, nameof(target));
        if (s.Length != t.Length) throw new ArgumentException($"source holds {s.Length} values, target {t.Length}", nameof(target));
        s.Span.CopyTo(t.Span);
    }

    // ---- parallel helpers ----------------------------------------------------------------------------------------

    /// <summary>Runs body(i) for i in [0, count): inline when there is one piece or one thread.</summary>
    private void For(int count, Action<int> body)
    {
        if (count <= 0) return;
        if (count == 1 || _threads == 1)
            for (int i = 0; i < count; i++) body(i);
        else
            Parallel.For(0, count, _parallel, body);
    }

    /// <summary>Splits [0, length) into fixed chunks (independent of the thread count) and runs body(start, count) on each.</summary>
    private void ForChunks(long length, int chunk, Action<long, int> body)
    {
        int chunks = (int)((length + chunk - 1) / chunk);
        For(chunks, c =>
        {
            long start = (long)c * chunk;
            body(start, (int)Math.Min(chunk, length - start));
        });
    }

    private const int ElementChunk = 1 << 15;

    // ---- elementwise ---------------------------------------------------------------------------------------------

    public void AddScaled(DeviceBuffer accumulator, DeviceBuffer x, float scale)
    {
        var a = Of(accumulator, nameof(accumulator));
        var b = Of(x, nameof(x));
        if (a.Length != b.Length) throw new ArgumentException($"x holds {b.Length} values, accumulator {a.Length}", nameof(x));
        ForChunks(a.Length, ElementChunk, (start, count) =>
        {
            var acc = new Span<float>(a.Pointer + start, count);
            TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(b.Pointer + start, count), scale, acc, acc);
        });
    }

    public void Scale(DeviceBuffer buffer, float scale)
    {
        var a = Of(buffer, nameof(buffer));
        ForChunks(a.Length, ElementChunk, (start, count) =>
        {
            var span = new Span<float>(a.Pointer + start, count);
            TensorPrimitives.Multiply(span, scale, span);
        });
    }

    public double SumOfSquares(DeviceBuffer buffer)
    {
        var a = Of(buffer, nameof(buffer));
        int chunks = (int)((a.Length + ElementChunk - 1) / ElementChunk);
        var partial = new double[chunks];
        ForChunks(a.Length, ElementChunk, (start, count) => partial[start / ElementChunk] = SumOfSquares(a.Pointer + start, count));
        double sum = 0;
        foreach (double p in partial) sum += p;
        return sum;
    }

    /// <summary>Σ x² with the squares widened to float64 before they are added.</summary>
    private static double SumOfSquares(float* x, int count)
    {
        var acc = Vector<double>.Zero;
        int i = 0;
        if (Vector.IsHardwareAccelerated)
            for (; i + Vector<float>.Count <= count; i += Vector<float>.Count)
            {
                Vector.Widen(Vector.Load(x + i), out Vector<double> low, out Vector<double> high);
                acc += low * low + high * high;
            }
        double sum = Vector.Sum(acc);
        for (; i < count; i++) sum += (double)x[i] * x[i];
        return sum;
    }
}
