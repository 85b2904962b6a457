using System.Buffers;
using EdgeTune.Core;
using EdgeTune.Core.Quantization;

namespace EdgeTune.Kernels.Cpu;

// x: (N,K)  w: (M,K)  y: (N,M)      y (+)= x·wᵀ        Gemm.Dot tiles; threads own (N-chunk × M-panel) blocks of y
// dy: (N,M) w: (M,K)  dx: (N,K)     dx (+)= dy·w       Gemm.Axpy; threads own (N-chunk × K-chunk) blocks of dx
// dy: (N,M) x: (N,K)  dw: (M,K)     dw (+)= dyᵀ·x      Gemm.Axpy with dy read by columns; threads own (M × K) blocks
// Frozen weights are expanded into a pooled per-task scratch, a panel of rows at a time (forward) or a block of
// 128 rows × 256 columns at a time (backward input), never as a whole.
public sealed unsafe partial class CpuBackend
{
    /// <summary>Rows of w one Dot task owns (a multiple of the 3-row tile).</summary>
    private const int DotPanel = 96;
    /// <summary>An Axpy task's block of the output: rows (multiple of 4) × columns (multiple of 16).</summary>
    private const int AxpyRows = 64, AxpyCols = 256;
    /// <summary>The block of a frozen weight the backward-input product expands at once (columns: a multiple of every GGUF block).</summary>
    private const int FrozenBackwardRows = 128, FrozenBackwardCols = 256;

    public void MatMul(DeviceBuffer x, DeviceBuffer w, DeviceBuffer y, int n, int k, int m, bool accumulate)
    {
        Reference.CheckMatMul(x.Length, w.Length, y.Length, n, k, m, nameof(x), nameof(w), nameof(y));
        float* px = Of(x, nameof(x)).Pointer, pw = Of(w, nameof(w)).Pointer, py = Of(y, nameof(y)).Pointer;
        DotProduct(px, n, k, m, py, accumulate, pw, null);
    }

    public void MatMulBackwardInput(DeviceBuffer dy, DeviceBuffer w, DeviceBuffer dx, int n, int k, int m, bool accumulate)
    {
        Reference.CheckMatMul(dx.Length, w.Length, dy.Length, n, k, m, nameof(dx), nameof(w), nameof(dy));
        float* pdy = Of(dy, nameof(dy)).Pointer, pw = Of(w, nameof(w)).Pointer, pdx = Of(dx, nameof(dx)).Pointer;
        AxpyGrid(n, k, (r0, rows, c0, cols) =>
            Gemm.Axpy(pdy + (long)r0 * m, m, 1, pw + c0, k, pdx + (long)r0 * k + c0, k, rows, cols, m, !accumulate));
    }

    public void MatMulBackwardWeight(DeviceBuffer dy, DeviceBuffer x, DeviceBuffer dw, int n, int k, int m, bool accumulate)
    {
        Reference.CheckMatMul(x.Length, dw.Length, dy.Length, n, k, m, nameof(x), nameof(dw), nameof(dy));
        float* pdy = Of(dy, nameof(dy)).Pointer, px = Of(x, nameof(x)).Pointer, pdw = Of(dw, nameof(dw)).Pointer;
        AxpyGrid(m, k, (r0, rows, c0, cols) =>
            Gemm.Axpy(pdy + r0, 1, m, px + c0, k, pdw + (long)r0 * k + c0, k, rows, cols, n, !accumulate));
    }

    // ---- frozen weights -----------------------------------------------------------------------------------------

    private sealed class CpuFrozen(FrozenFormat format, int rows, int cols, long bytes, byte[] data, float[]? values)
        : FrozenMatrix(format, rows, cols, bytes)
    {
        /// <summary>The format's bytes (NF4 layout or GGUF rows); F32 keeps only <see cref="Values"/>, pinned, and no bytes.</summary>
        public byte[] Data { get; } = data;
        public float[]? Values { get; } = values;

        public float* ValuesPointer => (float*)System.Runtime.CompilerServices.Unsafe.AsPointer(
            ref System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference(Values!));

        /// <summary>Rows [row0, row0 + count) as floats, row-major, into <paramref name="destination"/>.</summary>
        public void ExpandRows(int row0, int count, Span<float> destination)
        {
            destination = destination[..(count * Cols)];
            switch (Format)
            {
                case FrozenFormat.F32:
                    Values.AsSpan(row0 * Cols, count * Cols).CopyTo(destination);
                    break;
                case FrozenFormat.Nf4:
                    Nf4Codec.DequantizeRange(Data, (long)Rows * Cols, (long)row0 * Cols, destination);
                    break;
                default:
                    long rowBytes = FrozenRows.RowBytes(Format, Cols);
                    QuantCodecs.Dequantize(FrozenRows.ToGgml(Format), Data.AsSpan((int)(row0 * rowBytes), (int)(count * rowBytes)), destination);
                    break;
            }
        }

        /// <summary>
        /// The block rows [row0, row0 + rowCount) × cols [col0, col0 + colCount) as floats, row-major
        /// (rowCount × colCount). For the GGUF types col0 and colCount are whole blocks (multiples of 256 are).
        /// </summary>
        public void ExpandBlock(int row0, int rowCount, int col0, int colCount, Span<float> destination)
        {
            if (Format == FrozenFormat.Nf4)
            {
                for (int r = 0; r < rowCount; r++)
                    Nf4Codec.DequantizeRange(Data, (long)Rows * Cols, (long)(row0 + r) * Cols + col0, destination.Slice(r * colCount, colCount));
                return;
            }
            var type = FrozenRows.ToGgml(Format);
            long rowBytes = FrozenRows.RowBytes(Format, Cols);
            int blockSize = FrozenRows.RowMultiple(Format), blockBytes = (int)GgmlTypes.BlockBytes(type);
            for (int r = 0; r < rowCount; r++)
            {
                long at = (row0 + r) * rowBytes + (long)col0 / blockSize * blockBytes;
                QuantCodecs.Dequantize(type, Data.AsSpan((int)at, colCount / blockSize * blockBytes), destination.Slice(r * colCount, colCount));
            }
        }
    }

    public FrozenMatrix UploadFrozen(FrozenFormat format, ReadOnlySpan<byte> data, int rows, int cols)
    {
        long bytes = FrozenRows.ByteCount(format, rows, cols);
        if (data.Length != bytes)
            throw new ArgumentException($"a {format} matrix of shape (rows={rows},cols={cols}) takes {bytes} bytes, got {data.Length}", nameof(data));
        float[]? values = null;
        if (format == FrozenFormat.F32)
        {
            values = GC.AllocateArray<float>(checked(rows * cols), pinned: true);
            System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(data).CopyTo(values);
        }
        return new CpuFrozen(format, rows, cols, bytes, values is null ? data.ToArray() : [], values);
    }

    public FrozenMatrix UploadFrozenOwned(FrozenFormat format, byte[] data, int rows, int cols) =>
        format == FrozenFormat.F32 ? UploadFrozen(format, data, rows, cols) : Adopt(format, data, rows, cols);

    // The quantised bytes are used as they are: no second copy of the tensor.
    private static CpuFrozen Adopt(FrozenFormat format, byte[] data, int rows, int cols)
    {
        long bytes = FrozenRows.ByteCount(format, rows, cols);
        if (data.Length != bytes)
            throw new ArgumentException($"a {format} matrix of shape (rows={rows},cols={cols}) takes {bytes} bytes, got {data.Length}", nameof(data));
        return new CpuFrozen(format, rows, cols, bytes, data, null);
    }

    private static CpuFrozen Of(FrozenMatrix w) => w as CpuFrozen ?? throw new ArgumentException("the frozen matrix was not uploaded by a CpuBackend", nameof(w));

    public void FrozenMatMul(DeviceBuffer x, FrozenMatrix w, DeviceBuffer y, int n, bool accumulate)
    {
        var frozen = Of(w);
        int k = frozen.Cols, m = frozen.Rows;
        Reference.CheckMatMul(x.Length, (long)m * k, y.Length, n, k, m, nameof(x), nameof(w), nameof(y));
        float* px = Of(x, nameof(x)).Pointer, py = Of(y, nameof(y)).Pointer;
        if (frozen.Format == FrozenFormat.F32)
        {
            DotProduct(px, n, k, m, py, accumulate, frozen.ValuesPointer, null);
            return;
        }
        DotProduct(px, n, k, m, py, accumulate, null, frozen);
    }

    public void FrozenMatMulBackwardInput(DeviceBuffer dy, FrozenMatrix w, DeviceBuffer dx, int n, bool accumulate)
    {
        var frozen = Of(w);
        int k = frozen.Cols, m = frozen.Rows;
        Reference.CheckMatMul(dx.Length, (long)m * k, dy.Length, n, k, m, nameof(dx), nameof(w), nameof(dy));
        float* pdy = Of(dy, nameof(dy)).Pointer, pdx = Of(dx, nameof(dx)).Pointer;
        if (frozen.Format == FrozenFormat.F32)
        {
            float* pw = frozen.ValuesPointer;
            AxpyGrid(n, k, (r0, rows, c0, cols) =>
                Gemm.Axpy(pdy + (long)r0 * m, m, 1, pw + c0, k, pdx + (long)r0 * k + c0, k, rows, cols, m, !accumulate));
            return;
        }
        // A task owns a block of dx: (about N/threads rows) × (FrozenBackwardCols columns), which stays in L2 while the
        // task walks W in blocks of FrozenBackwardRows rows, expanding only the block's columns into its scratch.
        // W is expanded about `threads` times in all, dx is written from cache, and every dx element has one owner.
        int chunk = Math.Max(16, ((n + _threads - 1) / _threads + 3) / 4 * 4);
        int chunks = (n + chunk - 1) / chunk, colChunks = (k + FrozenBackwardCols - 1) / FrozenBackwardCols;
        For(chunks * colChunks, task =>
        {
            int r0 = task / colChunks * chunk, rows = Math.Min(chunk, n - r0);
            int c0 = task % colChunks * FrozenBackwardCols, cols = Math.Min(FrozenBackwardCols, k - c0);
            float[] scratch = CpuScratch.Pool.Rent(FrozenBackwardRows * cols);
            try
            {
                fixed (float* ps = scratch)
                    for (int m0 = 0; m0 < m; m0 += FrozenBackwardRows)
                    {
                        int block = Math.Min(FrozenBackwardRows, m - m0);
                        frozen.ExpandBlock(m0, block, c0, cols, scratch);
                        Gemm.Axpy(pdy + (long)r0 * m + m0, m, 1, ps, cols, pdx + (long)r0 * k + c0, k, rows, cols, block, m0 == 0 && !accumulate);
                    }
            }
            finally
            {
                CpuScratch.Pool.Return(scratch);
            }
        });
    }

    // ---- grids --------------------------------------------------------------------------------------------------

    /// <summary>
    /// y (+)= x·wᵀ over a grid of (N-chunk × M-panel) tasks. w is either <paramref name="w"/> (floats, row-major) or
    /// <paramref name="frozen"/>, whose panel of rows each task expands into a pooled scratch of its own.
    /// </summary>
    private void DotProduct(float* x, int n, int k, int m, float* y, bool accumulate, float* w, CpuFrozen? frozen)
    {
        int panels = (m + DotPanel - 1) / DotPanel;
        int chunk = Math.Max(n, 1);
        while (panels * ((n + chunk - 1) / chunk) < 4 * _threads && chunk > 16) chunk = (chunk / 2 + 3) / 4 * 4;
        int chunks = Math.Max(1, (n + chunk - 1) / chunk);
        For(panels * chunks, task =>
        {
            int p = task / chunks, c = task % chunks;
            int m0 = p * DotPanel, cols = Math.Min(DotPanel, m - m0);
            int n0 = c * chunk, rows = Math.Min(chunk, n - n0);
            if (rows <= 0) return;
            if (frozen is null)
            {
                DotPanelProduct(x + (long)n0 * k, k, w + (long)m0 * k, y + (long)n0 * m + m0, m, rows, cols, accumulate);
                return;
            }
            float[] scratch = CpuScratch.Pool.Rent(cols * k);
            try
            {
                frozen.ExpandRows(m0, cols, scratch);
                fixed (float* panel = scratch)
                    DotPanelProduct(x + (long)n0 * k, k, panel, y + (long)n0 * m + m0, m, rows, cols, accumulate);
            }
            finally
            {
                CpuScratch.Pool.Return(scratch);
            }
        });
    }

    /// <summary>One task's block: y[rows × cols] (+)= x[rows × k]·panel[cols × k]ᵀ, K in blocks that stay in L1.</summary>
    private static void DotPanelProduct(float* x, int k, float* panel, float* y, int ldy, int rows, int cols, bool accumulate)
    {
        for (int kb = 0; kb < k; kb += Gemm.DotDepthBlock)
            Gemm.Dot(x + kb, k, panel + kb, k, y, ldy, rows, cols, Math.Min(Gemm.DotDepthBlock, k - kb), kb == 0 && !accumulate);
    }

    /// <summary>Runs body(r0, rows, c0, cols) over (AxpyRows × AxpyCols) blocks of a rows × cols output.</summary>
    private void AxpyGrid(int rows, int cols, Action<int, int, int, int> body)
    {
        int rowBlock = AxpyRows;
        int rowChunks = (rows + rowBlock - 1) / rowBlock, colChunks = (cols + AxpyCols - 1) / AxpyCols;
        For(rowChunks * colChunks, task =>
        {
            int r0 = task / colChunks * rowBlock, c0 = task % colChunks * AxpyCols;
            body(r0, Math.Min(rowBlock, rows - r0), c0, Math.Min(AxpyCols, cols - c0));
        });
    }
}
