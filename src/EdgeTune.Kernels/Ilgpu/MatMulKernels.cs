using System.Buffers.Binary;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;

namespace EdgeTune.Kernels.Ilgpu;

// All five matmuls are one generic GEMM, C (+)= A·B with C: (rows, cols) dense row-major and A: (rows, inner),
// B: (inner, cols) read through an IMatrixSource (strided dense, or a frozen weight dequantised on the fly):
//   MatMul                      x: (N,K)  w: (M,K)  y: (N,M)     A = x,            B = wᵀ (strides 1, K)
//   MatMulBackwardInput         dy: (N,M) w: (M,K)  dx: (N,K)    A = dy,           B = w
//   MatMulBackwardWeight        dy: (N,M) x: (N,K)  dw: (M,K)    A = dyᵀ (1, M),   B = x
//   FrozenMatMul                x: (N,Cols)  W: (Rows,Cols)  y: (N,Rows)      B = Wᵀ decoded element by element
//   FrozenMatMulBackwardInput   dy: (N,Rows)  dx: (N,Cols)                    B = W
// Two kernels: one thread per output (the CPU accelerator, where barriers are emulated with OS threads), and
// 64×64 shared-memory tiles with 4×4 outputs per thread (CUDA). Both sum over the inner index in ascending
// order with a separate multiply and add, so they give the same bits (barring FMA contraction by ptxas).
public sealed unsafe partial class IlgpuBackend
{
    /// <summary>Threads per side of a tiled GEMM group (16×16 = 256 threads).</summary>
    internal const int Tile = 16;
    /// <summary>Side of the output tile a group computes: Tile threads × 4 outputs each.</summary>
    internal const int Block = 4 * Tile;
    /// <summary>Inner-dimension depth of the shared-memory strips.</summary>
    internal const int Depth = 16;
    /// <summary>Row stride of a strip in shared memory, padded by one so that stores down a column hit distinct banks.</summary>
    internal const int StripStride = Block + 1;

    private GemmKernels<DenseSource, DenseSource>? _denseGemm;
    private GemmKernels<DenseSource, FrozenSource>? _frozenGemm;
    private MemoryBuffer1D<float, Stride1D.Dense>? _nf4Tables;

    public void MatMul(DeviceBuffer x, DeviceBuffer w, DeviceBuffer y, int n, int k, int m, bool accumulate)
    {
        var xv = View(x, nameof(x));
        var wv = View(w, nameof(w));
        var yv = View(y, nameof(y));
        Reference.CheckMatMul(xv.Length, wv.Length, yv.Length, n, k, m, nameof(x), nameof(w), nameof(y));
        Gemm(DenseGemm, new DenseSource(xv, k, 1), new DenseSource(wv, 1, k), yv, n, m, k, accumulate);
    }

    public void MatMulBackwardInput(DeviceBuffer dy, DeviceBuffer w, DeviceBuffer dx, int n, int k, int m, bool accumulate)
    {
        var dyv = View(dy, nameof(dy));
        var wv = View(w, nameof(w));
        var dxv = View(dx, nameof(dx));
        Reference.CheckMatMul(dxv.Length, wv.Length, dyv.Length, n, k, m, nameof(dx), nameof(w), nameof(dy));
        Gemm(DenseGemm, new DenseSource(dyv, m, 1), new DenseSource(wv, k, 1), dxv, n, k, m, accumulate);
    }

    public void MatMulBackwardWeight(DeviceBuffer dy, DeviceBuffer x, DeviceBuffer dw, int n, int k, int m, bool accumulate)
    {
        var dyv = View(dy, nameof(dy));
        var xv = View(x, nameof(x));
        var dwv = View(dw, nameof(dw));
        Reference.CheckMatMul(xv.Length, dwv.Length, dyv.Length, n, k, m, nameof(x), nameof(dw), nameof(dy));
        Gemm(DenseGemm, new DenseSource(dyv, 1, m), new DenseSource(xv, k, 1), dwv, m, k, n, accumulate);
    }

    public FrozenMatrix UploadFrozen(FrozenFormat format, ReadOnlySpan<byte> data, int rows, int cols)
    {
        ThrowIfDisposed();
        long count = (long)rows * cols;
        long expected = FrozenRows.ByteCount(format, rows, cols); // validates the shape against the format's blocks
        long rowBytes = format == FrozenFormat.Nf4 ? 0 : expected / rows;
        if (data.Length != expected)
            throw new ArgumentException($"{format} weight ({rows}×{cols}) needs {expected} bytes, got {data.Length}", nameof(data));

        // Padded to whole floats so the same memory can be read as F32.
        long padded = (expected + 3) & ~3L;
        var buffer = _accelerator.Allocate1D<byte>(padded);
        buffer.View.MemSetToZero();
        fixed (byte* pinned = data) buffer.View.SubView(0, expected).CopyFromCPU(ref *pinned, expected);
        var source = new FrozenSource
        {
            Bytes = buffer.View,
            Floats = ((ArrayView<byte>)buffer.View).Cast<float>(),
            Format = FrozenDecode.FormatCode(format),
            Cols = cols,
            RowBytes = rowBytes,
            Nf4Tables = Nf4Tables(),
        };
        if (format == FrozenFormat.Nf4)
        {
            source.Nf4CodeBytes = Nf4Codec.CodeBytes(count);
            source.Nf4Blocks = Nf4Codec.BlockCount(count);
            source.Nf4Offset = BinaryPrimitives.ReadSingleLittleEndian(data[^4..]);
        }
        return new IlgpuFrozenMatrix(this, format, rows, cols, expected, buffer, source);
    }

    public void FrozenMatMul(DeviceBuffer x, FrozenMatrix w, DeviceBuffer y, int n, bool accumulate)
    {
        var xv = View(x, nameof(x));
        var wf = Frozen(w, nameof(w));
        var yv = View(y, nameof(y));
        Shapes.NonNegative(n, nameof(n));
        Shapes.Require(xv.Length, (long)n * w.Cols, nameof(x), $"(N={n},Cols={w.Cols})");
        Shapes.Require(yv.Length, (long)n * w.Rows, nameof(y), $"(N={n},Rows={w.Rows})");
        var b = wf.Source;
        b.Transposed = 1;
        Gemm(FrozenGemm, new DenseSource(xv, w.Cols, 1), b, yv, n, w.Rows, w.Cols, accumulate);
    }

    public void FrozenMatMulBackwardInput(DeviceBuffer dy, FrozenMatrix w, DeviceBuffer dx, int n, bool accumulate)
    {
        var dyv = View(dy, nameof(dy));
        var wf = Frozen(w, nameof(w));
        var dxv = View(dx, nameof(dx));
        Shapes.NonNegative(n, nameof(n));
        Shapes.Require(dyv.Length, (long)n * w.Rows, nameof(dy), $"(N={n},Rows={w.Rows})");
        Shapes.Require(dxv.Length, (long)n * w.Cols, nameof(dx), $"(N={n},Cols={w.Cols})");
        var b = wf.Source;
        b.Transposed = 0;
        Gemm(FrozenGemm, new DenseSource(dyv, w.Rows, 1), b, dxv, n, w.Cols, w.Rows, accumulate);
    }

    private IlgpuFrozenMatrix Frozen(FrozenMatrix w, string name)
    {
        ArgumentNullException.ThrowIfNull(w, name);
        if (w is not IlgpuFrozenMatrix f || !ReferenceEquals(f.Owner, this))
            throw new ArgumentException($"{name} was not uploaded to this backend ({Name})", name);
        ObjectDisposedException.ThrowIf(f.IsDisposed, f);
        return f;
    }

    private ArrayView<float> Nf4Tables()
    {
        if (_nf4Tables is null)
        {
            var tables = new float[FrozenDecode.DynamicCodeOffset + 256];
            Nf4Codec.CodeBook.CopyTo(tables);
            Nf4Codec.DynamicCode.CopyTo(tables.AsSpan(FrozenDecode.DynamicCodeOffset));
            _nf4Tables = _accelerator.Allocate1D(tables);
        }
        return _nf4Tables.View;
    }

    private GemmKernels<DenseSource, DenseSource> DenseGemm => _denseGemm ??= new(_accelerator, _tiled);
    private GemmKernels<DenseSource, FrozenSource> FrozenGemm => _frozenGemm ??= new(_accelerator, _tiled);

    private void Gemm<TA, TB>(GemmKernels<TA, TB> kernels, TA a, TB b, ArrayView<float> c, int rows, int cols, int inner, bool accumulate)
        where TA : struct, IMatrixSource where TB : struct, IMatrixSource
    {
        if (rows == 0 || cols == 0) return;
        var shape = new GemmShape { Rows = rows, Cols = cols, Inner = inner, Accumulate = accumulate ? 1 : 0 };
        if (_tiled)
        {
            var grid = new Index2D((cols + Block - 1) / Block, (rows + Block - 1) / Block);
            kernels.Tiled!(new KernelConfig(grid, new Index2D(Tile, Tile)), a, b, c, shape);
        }
        else
        {
            kernels.Simple!(new Index2D(cols, rows), a, b, c, shape);
        }
    }

    internal struct GemmShape
    {
        public int Rows, Cols, Inner, Accumulate;
    }

    /// <summary>The two GEMM kernels for one pair of operand types, compiled once (only the one the device uses).</summary>
    private sealed class GemmKernels<TA, TB> where TA : struct, IMatrixSource where TB : struct, IMatrixSource
    {
        public GemmKernels(Accelerator accelerator, bool tiled)
        {
            if (tiled) Tiled = accelerator.LoadStreamKernel<TA, TB, ArrayView<float>, GemmShape>(GemmTiledKernel);
            else Simple = accelerator.LoadAutoGroupedStreamKernel<Index2D, TA, TB, ArrayView<float>, GemmShape>(GemmSimpleKernel);
        }

        public Action<Index2D, TA, TB, ArrayView<float>, GemmShape>? Simple { get; }
        public Action<KernelConfig, TA, TB, ArrayView<float>, GemmShape>? Tiled { get; }
    }

    // ---- kernels ---------------------------------------------------------------------------------------

    // a: (rows, inner)  b: (inner, cols)  c: (rows, cols)      c[r,col] (+)= Σ_p a(r,p)·b(p,col); one thread per output
    private static void GemmSimpleKernel<TA, TB>(Index2D index, TA a, TB b, ArrayView<float> c, GemmShape s)
        where TA : struct, IMatrixSource where TB : struct, IMatrixSource
    {
        int col = index.X, row = index.Y;
        float sum = 0f;
        for (int p = 0; p < s.Inner; p++) sum += a.Load(row, p) * b.Load(p, col);
        long at = (long)row * s.Cols + col;
        c[at] = s.Accumulate != 0 ? c[at] + sum : sum;
    }

    // Same contract, register-blocked: group (16, 16) computes a Block×Block (64×64) tile of c, each thread a 4×4
    // micro-tile (rows row0 + ty + 16i, cols col0 + tx + 16j), from Depth-deep (16) strips of a and b staged in
    // shared memory: per inner step a thread reads 4 + 4 values from shared memory for 16 multiply-adds. Each
    // thread loads (and for a frozen b, decodes) 4 elements of each strip, consecutive lanes along the operand's
    // contiguous index (x·wᵀ reads w along K, dyᵀ·x reads dy along M). Sums run over p in ascending order.
    private static void GemmTiledKernel<TA, TB>(TA a, TB b, ArrayView<float> c, GemmShape s)
        where TA : struct, IMatrixSource where TB : struct, IMatrixSource
    {
        var stripA = SharedMemory.Allocate<float>(Depth * StripStride); // [p][m]
        var stripB = SharedMemory.Allocate<float>(Depth * StripStride); // [p][n]
        int tx = Group.IdxX, ty = Group.IdxY, lane = ty * Tile + tx;
        int row0 = Grid.IdxY * Block, col0 = Grid.IdxX * Block;
        // Consecutive lanes load along whichever index is contiguous in memory (uniform over the group).
        bool aAlongInner = a.ColumnsContiguous, bAlongColumns = b.ColumnsContiguous;
        Float4 acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (int p0 = 0; p0 < s.Inner; p0 += Depth)
        {
            for (int q = 0; q < Block * Depth / (Tile * Tile); q++)
            {
                int e = lane + q * Tile * Tile;
                int am = aAlongInner ? e / Depth : e % Block, ap = aAlongInner ? e % Depth : e / Block;
                int ar = row0 + am, apIndex = p0 + ap;
                stripA[ap * StripStride + am] = ar < s.Rows && apIndex < s.Inner ? a.Load(ar, apIndex) : 0f;
                int bn = bAlongColumns ? e % Block : e / Depth, bp = bAlongColumns ? e / Block : e % Depth;
                int bc = col0 + bn, bpIndex = p0 + bp;
                stripB[bp * StripStride + bn] = bpIndex < s.Inner && bc < s.Cols ? b.Load(bpIndex, bc) : 0f;
            }
            Group.Barrier();
            int steps = Math.Min(Depth, s.Inner - p0);
            for (int p = 0; p < steps; p++)
            {
                int at = p * StripStride;
                var bv = new Float4(stripB[at + tx], stripB[at + tx + Tile], stripB[at + tx + 2 * Tile], stripB[at + tx + 3 * Tile]);
                acc0 = Float4.MultiplyAdd(acc0, stripA[at + ty], bv);
                acc1 = Float4.MultiplyAdd(acc1, stripA[at + ty + Tile], bv);
                acc2 = Float4.MultiplyAdd(acc2, stripA[at + ty + 2 * Tile], bv);
                acc3 = Float4.MultiplyAdd(acc3, stripA[at + ty + 3 * Tile], bv);
            }
            Group.Barrier();
        }
        StoreRow(c, s, row0 + ty, col0 + tx, acc0);
        StoreRow(c, s, row0 + ty + Tile, col0 + tx, acc1);
        StoreRow(c, s, row0 + ty + 2 * Tile, col0 + tx, acc2);
        StoreRow(c, s, row0 + ty + 3 * Tile, col0 + tx, acc3);
    }

    private static void StoreRow(ArrayView<float> c, GemmShape s, int row, int col, Float4 values)
    {
        if (row >= s.Rows) return;
        Store(c, s, row, col, values.X);
        Store(c, s, row, col + Tile, values.Y);
        Store(c, s, row, col + 2 * Tile, values.Z);
        Store(c, s, row, col + 3 * Tile, values.W);
    }

    private static void Store(ArrayView<float> c, GemmShape s, int row, int col, float sum)
    {
        if (col >= s.Cols) return;
        long at = (long)row * s.Cols + col;
        c[at] = s.Accumulate != 0 ? c[at] + sum : sum;
    }

    /// <summary>Four accumulators of a micro-tile row, a value type so they live in registers.</summary>
    internal readonly struct Float4(float x, float y, float z, float w)
    {
        public readonly float X = x, Y = y, Z = z, W = w;

        /// <summary>acc + a·b, element-wise (a separate multiply and add, as the simple kernel).</summary>
        public static Float4 MultiplyAdd(Float4 acc, float a, Float4 b) =>
            new(acc.X + a * b.X, acc.Y + a * b.Y, acc.Z + a * b.Z, acc.W + a * b.W);
    }
}

/// <summary>A frozen weight in accelerator memory, in its storage format (<see cref="FrozenMatrix.Bytes"/> is the format's size; the allocation pads it to whole floats).</summary>
internal sealed class IlgpuFrozenMatrix : FrozenMatrix
{
    private readonly MemoryBuffer1D<byte, Stride1D.Dense> _memory;

    public IlgpuFrozenMatrix(IlgpuBackend owner, FrozenFormat format, int rows, int cols, long bytes, MemoryBuffer1D<byte, Stride1D.Dense> memory, FrozenSource source)
        : base(format, rows, cols, bytes)
    {
        Owner = owner;
        _memory = memory;
        Source = source;
    }

    public IlgpuBackend Owner { get; }
    public FrozenSource Source { get; }
    public bool IsDisposed { get; private set; }

    protected override void Dispose(bool disposing)
    {
        if (disposing && !IsDisposed)
        {
            IsDisposed = true;
            _memory.Dispose();
        }
        base.Dispose(disposing);
    }
}
