using System.Runtime.InteropServices;
using EdgeTune.Kernels.Ilgpu;

namespace EdgeTune.Kernels.Tests.Ilgpu;

/// <summary>One ILGPU backend per test class (context creation and kernel compilation are paid once).</summary>
public abstract class IlgpuFixture : IDisposable
{
    protected IlgpuFixture(IlgpuBackend backend) => Backend = backend;

    public IlgpuBackend Backend { get; }

    public void Dispose()
    {
        Backend.Dispose();
        GC.SuppressFinalize(this);
    }
}

public sealed class SimpleCpuAcceleratorFixture() : IlgpuFixture(IlgpuBackend.CpuAccelerator());

public sealed class TiledCpuAcceleratorFixture() : IlgpuFixture(IlgpuBackend.CpuAccelerator(tiled: true));

/// <summary>
/// The ILGPU kernels against the scalar references (<see cref="Reference"/>, float), at sizes the CPU accelerator
/// runs quickly on two cores. Bitwise agreement is asserted where the kernel does the reference's arithmetic in the
/// reference's order (copies, embedding sums, frozen decoding, dropout); elsewhere a tolerance.
/// </summary>
public abstract class IlgpuTestBase
{
    protected IlgpuTestBase(IlgpuBackend backend) => B = backend;

    protected IlgpuBackend B { get; }

    protected DeviceBuffer Up(float[] values)
    {
        var buffer = B.Allocate(values.Length);
        B.Upload(values, buffer);
        return buffer;
    }

    protected float[] Down(DeviceBuffer buffer)
    {
        var values = new float[buffer.Length];
        B.Download(buffer, values);
        return values;
    }

    protected static void Close(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, float tolerance = 1e-5f)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            float bound = tolerance * Math.Max(1f, Math.Abs(expected[i]));
            if (!(Math.Abs(expected[i] - actual[i]) <= bound))
                Assert.Fail($"element {i}: expected {expected[i]:R}, got {actual[i]:R} (tolerance {bound:G3})");
        }
    }

    public static TheoryData<FrozenFormat, int, int> FrozenShapes => new()
    {
        { FrozenFormat.F32, 5, 17 },
        { FrozenFormat.Nf4, 5, 17 },   // 85 values: NF4 blocks of 64 straddle rows, odd count pads a nibble
        { FrozenFormat.Nf4, 3, 128 },
        { FrozenFormat.Q8_0, 3, 64 },
        { FrozenFormat.Q4_0, 2, 96 },
        { FrozenFormat.Q4_K, 3, 256 },
        { FrozenFormat.Q4_K, 2, 512 },
    };

    protected static (byte[] Data, float[] Dense) Frozen(FrozenFormat format, int rows, int cols, int seed)
    {
        var values = TestData.Gaussian(rows * cols, seed);
        byte[] data;
        if (format == FrozenFormat.F32) data = MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
        else if (format == FrozenFormat.Nf4) data = Nf4Codec.Quantize(values);
        else
        {
            var type = format switch
            {
                FrozenFormat.Q8_0 => Core.GgmlType.Q8_0,
                FrozenFormat.Q4_0 => Core.GgmlType.Q4_0,
                _ => Core.GgmlType.Q4_K,
            };
            data = new byte[FrozenRows.ByteCount(format, rows, cols)];
            Core.Quantization.QuantCodecs.Quantize(type, values, data);
        }
        var dense = new float[rows * cols];
        for (int r = 0; r < rows; r++) FrozenRows.DequantizeRow(format, data, rows, r, cols, dense.AsSpan(r * cols, cols));
        return (data, dense);
    }
}

/// <summary>
/// The ops whose kernels depend on the device: the GEMMs (one thread per output, or 16×16 shared-memory tiles) and
/// the row reductions (group size). Run on both kernel choices.
/// </summary>
public abstract class IlgpuDeviceDependentTests(IlgpuBackend backend) : IlgpuTestBase(backend)
{
    // ---- matmuls ---------------------------------------------------------------------------------------

    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(17, 33, 5)]
    [InlineData(3, 40, 19)]
    [InlineData(70, 33, 130)] // several 64×64 tiles with ragged edges in every dimension
    public void MatMulAndBothBackwards(int n, int k, int m)
    {
        foreach (bool accumulate in new[] { false, true })
        {
            var x = TestData.Gaussian(n * k, 12);
            var w = TestData.Gaussian(m * k, 13);
            var dy = TestData.Gaussian(n * m, 14);
            var y = TestData.Gaussian(n * m, 15);
            var dx = TestData.Gaussian(n * k, 16);
            var dw = TestData.Gaussian(m * k, 17);
            using var xb = Up(x);
            using var wb = Up(w);
            using var dyb = Up(dy);
            using var yb = Up(y);
            using var dxb = Up(dx);
            using var dwb = Up(dw);
            B.MatMul(xb, wb, yb, n, k, m, accumulate);
            B.MatMulBackwardInput(dyb, wb, dxb, n, k, m, accumulate);
            B.MatMulBackwardWeight(dyb, xb, dwb, n, k, m, accumulate);
            Reference.MatMul<float>(x, w, y, n, k, m, accumulate);
            Reference.MatMulBackwardInput<float>(dy, w, dx, n, k, m, accumulate);
            Reference.MatMulBackwardWeight<float>(dy, x, dw, n, k, m, accumulate);
            Close(y, Down(yb));
            Close(dx, Down(dxb));
            Close(dw, Down(dwb));
        }
    }

    [Theory]
    [MemberData(nameof(FrozenShapes))]
    public void FrozenMatMulIsTheDenseMatMulOfTheDecodedWeight(FrozenFormat format, int rows, int cols)
    {
        int n = 3;
        var (data, dense) = Frozen(format, rows, cols, seed: 21);
        using var w = B.UploadFrozen(format, data, rows, cols);
        var x = TestData.Gaussian(n * cols, 22);
        var y = TestData.Gaussian(n * rows, 23);
        var dy = TestData.Gaussian(n * rows, 24);
        var dx = TestData.Gaussian(n * cols, 25);
        using var xb = Up(x);
        using var yb = Up(y);
        using var dyb = Up(dy);
        using var dxb = Up(dx);
        B.FrozenMatMul(xb, w, yb, n, accumulate: true);
        B.FrozenMatMulBackwardInput(dyb, w, dxb, n, accumulate: true);
        Reference.MatMul<float>(x, dense, y, n, cols, rows, accumulate: true);
        Reference.MatMulBackwardInput<float>(dy, dense, dx, n, cols, rows, accumulate: true);
        Close(y, Down(yb), 1e-4f);
        Close(dx, Down(dxb), 1e-4f);
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(5, 17)]
    [InlineData(3, 1025)]
    public void RmsNormForwardAndBackward(int n, int c)
    {
        var x = TestData.Gaussian(n * c, 40);
        var weight = TestData.Gaussian(c, 41);
        var dy = TestData.Gaussian(n * c, 42);
        var y = new float[n * c];
        var rstd = new float[n];
        Reference.RmsNormForward<float>(x, weight, y, rstd, n, c, 1e-5f);
        using var xb = Up(x);
        using var wb = Up(weight);
        using var yb = B.Allocate(n * c);
        using var rb = B.Allocate(n);
        B.RmsNormForward(xb, wb, yb, rb, n, c, 1e-5f);
        Close(rstd, Down(rb));
        Close(y, Down(yb));

        var dx = TestData.Gaussian(n * c, 43);
        var dWeight = TestData.Gaussian(c, 44);
        using var dyb = Up(dy);
        using var dxb = Up(dx);
        using var dwb = Up(dWeight);
        B.RmsNormBackward(dyb, xb, wb, rb, dxb, dwb, n, c);
        Reference.RmsNormBackward<float>(dy, x, weight, rstd, dx, dWeight, n, c);
        Close(dx, Down(dxb), 1e-4f);
        Close(dWeight, Down(dwb), 1e-4f);
    }

    // ---- cross-entropy (GEMMs and row reductions) ------------------------------------------------------

    [Theory]
    [InlineData(1L << 24)] // one chunk
    [InlineData(2 * 37L)]  // chunks of two rows
    public void CrossEntropyLossAndGradients(long chunkElements)
    {
        int n = 5, c = 8, vocab = 37;
        int[] targets = [3, -1, 36, 0, 3];
        var hidden = TestData.Gaussian(n * c, 70);
        var head = TestData.Gaussian(vocab * c, 71, 0.5f);
        var dHidden = new float[n * c];
        var dHead = TestData.Gaussian(vocab * c, 72);
        float loss = Reference.CrossEntropy<float>(hidden, head, targets, n, c, vocab, 0.25f, dHidden, dHead);

        long saved = B.CrossEntropyChunkElements;
        B.CrossEntropyChunkElements = chunkElements;
        try
        {
            using var hb = Up(hidden);
            using var headb = Up(head);
            using var dhb = Up(TestData.Gaussian(n * c, 73)); // overwritten
            using var dheadb = Up(TestData.Gaussian(vocab * c, 72)); // accumulated onto
            double actual = B.CrossEntropy(hb, headb, targets, n, c, vocab, 0.25f, dhb, dheadb);
            Assert.Equal(loss, actual, 1e-4 * Math.Abs(loss));
            Close(dHidden, Down(dhb), 1e-4f);
            Close(dHead, Down(dheadb), 1e-4f);
            Assert.Equal(actual, B.CrossEntropy(hb, headb, targets, n, c, vocab, 0.25f, null, null), 1e-9);
        }
        finally
        {
            B.CrossEntropyChunkElements = saved;
        }
    }
}

/// <summary>The ops with one kernel for every device: run once, on the simple CPU accelerator.</summary>
public sealed class IlgpuKernelTests(SimpleCpuAcceleratorFixture fixture)
    : IlgpuTestBase(fixture.Backend), IClassFixture<SimpleCpuAcceleratorFixture>
{
    // ---- buffers and elementwise ----------------------------------------------------------------------

    [Theory]
    [InlineData(1)]
    [InlineData(17)]
    [InlineData(1025)]
    [InlineData(8197)]
    public void UploadDownloadCopyZeroAndSlices(int length)
    {
        var values = TestData.Gaussian(length, 1);
        using var a = Up(values);
        Assert.Equal(values, Down(a));
        using var b = B.Allocate(length);
        Assert.All(Down(b), v => Assert.Equal(0f, v));
        B.Copy(a, b);
        Assert.Equal(values, Down(b));
        var tail = b.Slice(length / 2, length - length / 2);
        B.Zero(tail);
        var expected = (float[])values.Clone();
        Array.Clear(expected, length / 2, length - length / 2);
        Assert.Equal(expected, Down(b));
        B.Upload(values.AsSpan(0, (int)tail.Length), tail.Slice(0, tail.Length));
        values.AsSpan(0, (int)tail.Length).CopyTo(expected.AsSpan(length / 2));
        Assert.Equal(expected, Down(b));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(17)]
    [InlineData(1025)]
    [InlineData(8197)]
    public void AddScaledScaleSumOfSquares(int length)
    {
        var acc = TestData.Gaussian(length, 2);
        var x = TestData.Gaussian(length, 3);
        using var accBuffer = Up(acc);
        using var xBuffer = Up(x);
        B.AddScaled(accBuffer, xBuffer, 0.25f);
        Reference.AddScaled(acc.AsSpan(), x, 0.25f);
        Assert.Equal(acc, Down(accBuffer));
        B.Scale(accBuffer, -1.5f);
        Reference.Scale(acc.AsSpan(), -1.5f);
        Assert.Equal(acc, Down(accBuffer));
        Assert.Equal(Reference.SumOfSquares<float>(acc), B.SumOfSquares(accBuffer), 1e-9 * Math.Max(1, Reference.SumOfSquares<float>(acc)));
    }

    [Theory]
    [InlineData(17)]
    [InlineData(1025)]
    public void SwiGluForwardAndBackwardIncludingAliases(int count)
    {
        var gate = TestData.Gaussian(count, 4, 3);
        var up = TestData.Gaussian(count, 5);
        var dOut = TestData.Gaussian(count, 6);
        var output = new float[count];
        Reference.SwiGluForward<float>(gate, up, output, count);
        using var g = Up(gate);
        using var u = Up(up);
        using var o = B.Allocate(count);
        B.SwiGluForward(g, u, o, count);
        Close(output, Down(o));

        var dGate = new float[count];
        var dUp = new float[count];
        Reference.SwiGluBackward<float>(dOut, gate, up, dGate, dUp, count);
        using var d = Up(dOut);
        B.SwiGluBackward(d, g, u, g, u, count); // in place: dGate over gate, dUp over up
        Close(dGate, Down(g));
        Close(dUp, Down(u));
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(1025, 3)]
    public void AdamWStep(int count, int step)
    {
        var p = TestData.Gaussian(count, 7);
        var grad = TestData.Gaussian(count, 8);
        var m = TestData.Gaussian(count, 9, 0.1f);
        var v = TestData.UniformF(count, 10, 0.01f).Select(Math.Abs).ToArray();
        using var pb = Up(p);
        using var gb = Up(grad);
        using var mb = Up(m);
        using var vb = Up(v);
        B.AdamW(pb, gb, mb, vb, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step);
        Reference.AdamW<float>(p, grad, m, v, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step);
        Close(p, Down(pb));
        Close(m, Down(mb));
        Close(v, Down(vb));
    }

    [Theory]
    [InlineData(1025, 0.1f)]
    [InlineData(17, 0f)]
    [InlineData(17, 1f)]
    public void DropoutIsTheReferenceMaskBitForBit(int count, float p)
    {
        var x = TestData.Gaussian(count, 11);
        var y = new float[count];
        Reference.Dropout<float>(x, y, count, p, 0xDEADBEEFUL);
        using var xb = Up(x);
        using var yb = B.Allocate(count);
        B.Dropout(xb, yb, count, p, 0xDEADBEEFUL);
        Assert.Equal(y, Down(yb));
    }

    // ---- frozen decoding (the same device function under both GEMM kernels) -----------------------------

    [Theory]
    [MemberData(nameof(FrozenShapes))]
    public void FrozenMatMulDecodesExactlyAsTheCodecs(FrozenFormat format, int rows, int cols)
    {
        var (data, dense) = Frozen(format, rows, cols, seed: 20);
        using var w = B.UploadFrozen(format, data, rows, cols);
        Assert.Equal(format, w.Format);
        Assert.True(w.Bytes >= data.Length);

        // x = I (cols × cols): y[i, j] = W[j, i] exactly, so every decoded value is checked bit for bit.
        var identity = new float[cols * cols];
        for (int i = 0; i < cols; i++) identity[i * cols + i] = 1f;
        using var xb = Up(identity);
        using var yb = B.Allocate((long)cols * rows);
        B.FrozenMatMul(xb, w, yb, cols, accumulate: false);
        var y = Down(yb);
        for (int i = 0; i < cols; i++)
            for (int j = 0; j < rows; j++)
                Assert.Equal(dense[j * cols + i], y[i * rows + j]);

        // dy = I (rows × rows): dx = W.
        var eye = new float[rows * rows];
        for (int i = 0; i < rows; i++) eye[i * rows + i] = 1f;
        using var dyb = Up(eye);
        using var dxb = B.Allocate((long)rows * cols);
        B.FrozenMatMulBackwardInput(dyb, w, dxb, rows, accumulate: false);
        Assert.Equal(dense, Down(dxb));
    }

    // ---- embedding, rope ---------------------------------------------------------------------------------

    [Fact]
    public void EmbeddingGatherAndDeterministicScatterAdd()
    {
        int vocab = 11, c = 17;
        int[] tokens = [3, 7, 3, 0, 10, 3, 7, 7, 1];
        var table = TestData.Gaussian(vocab * c, 30);
        var dOut = TestData.Gaussian(tokens.Length * c, 31);
        var dTable = TestData.Gaussian(vocab * c, 32);
        using var tb = Up(table);
        using var ob = B.Allocate(tokens.Length * c);
        B.EmbeddingForward(tokens, tb, ob, c);
        var output = new float[tokens.Length * c];
        Reference.EmbeddingForward<float>(tokens, table, output, c);
        Assert.Equal(output, Down(ob));

        using var db = Up(dOut);
        using var dtb = Up(dTable);
        B.EmbeddingBackward(tokens, db, dtb, c);
        Reference.EmbeddingBackward<float>(tokens, dOut, dTable, c);
        Assert.Equal(dTable, Down(dtb)); // same additions in the same order

        Assert.Throws<ArgumentOutOfRangeException>(() => B.EmbeddingForward([vocab], tb, ob, c));
    }

    [Theory]
    [InlineData(RopeLayout.Half)]
    [InlineData(RopeLayout.Interleaved)]
    public void RopeForwardAndInverse(RopeLayout layout)
    {
        int batch = 2, seqLen = 5, heads = 3, headDim = 8;
        var x = TestData.Gaussian(batch * seqLen * heads * headDim, 50);
        var invFreq = Enumerable.Range(0, headDim / 2).Select(j => (float)Math.Pow(10000, -2.0 * j / headDim)).ToArray();
        using var xb = Up(x);
        using var fb = Up(invFreq);
        var expected = (float[])x.Clone();
        Reference.Rope<float>(expected, invFreq, batch, seqLen, heads, headDim, layout, inverse: false);
        B.Rope(xb, fb, batch, seqLen, heads, headDim, layout, inverse: false);
        Close(expected, Down(xb), 1e-5f);
        B.Rope(xb, fb, batch, seqLen, heads, headDim, layout, inverse: true);
        Close(x, Down(xb), 1e-5f);
    }

    // ---- attention -------------------------------------------------------------------------------------

    [Theory]
    [InlineData(1, 1, 1, 1, 1)]
    [InlineData(2, 5, 4, 2, 8)]
    [InlineData(1, 9, 3, 1, 6)]
    public void AttentionForwardAndBackward(int batch, int seqLen, int heads, int kvHeads, int headDim)
    {
        int qCount = batch * seqLen * heads * headDim, kvCount = batch * seqLen * kvHeads * headDim;
        var q = TestData.Gaussian(qCount, 60);
        var k = TestData.Gaussian(kvCount, 61);
        var v = TestData.Gaussian(kvCount, 62);
        var dOut = TestData.Gaussian(qCount, 63);
        var output = new float[qCount];
        var lse = new float[batch * heads * seqLen];
        Reference.AttentionForward<float>(q, k, v, output, lse, batch, seqLen, heads, kvHeads, headDim);
        using var qb = Up(q);
        using var kb = Up(k);
        using var vb = Up(v);
        using var ob = B.Allocate(qCount);
        using var lb = B.Allocate(lse.Length);
        B.AttentionForward(qb, kb, vb, ob, lb, batch, seqLen, heads, kvHeads, headDim);
        Close(output, Down(ob), 1e-4f);
        Close(lse, Down(lb), 1e-5f);

        var dq = new float[qCount];
        var dk = new float[kvCount];
        var dv = new float[kvCount];
        Reference.AttentionBackward<float>(dOut, q, k, v, output, lse, dq, dk, dv, batch, seqLen, heads, kvHeads, headDim);
        using var dob = Up(dOut);
        using var dqb = Up(TestData.Gaussian(qCount, 64)); // overwritten, whatever was there
        using var dkb = Up(TestData.Gaussian(kvCount, 65));
        using var dvb = Up(TestData.Gaussian(kvCount, 66));
        B.AttentionBackward(dob, qb, kb, vb, ob, lb, dqb, dkb, dvb, batch, seqLen, heads, kvHeads, headDim);
        Close(dq, Down(dqb), 1e-4f);
        Close(dk, Down(dkb), 1e-4f);
        Close(dv, Down(dvb), 1e-4f);
    }

    // ---- the public boundary ---------------------------------------------------------------------------

    [Fact]
    public void ArgumentsAreValidated()
    {
        using var small = B.Allocate(3);
        using var big = B.Allocate(64);
        Assert.Throws<ArgumentException>(() => B.MatMul(small, big, big, 2, 2, 2, false));
        Assert.Throws<ArgumentException>(() => B.Copy(small, big));
        Assert.Throws<ArgumentException>(() => B.Upload(new float[4], small));
        Assert.Throws<ArgumentException>(() => B.AttentionForward(big, big, big, big, big, 1, 2, 3, 2, 4)); // 3 heads, 2 kv heads
        Assert.Throws<ArgumentException>(() => B.UploadFrozen(FrozenFormat.Q4_K, new byte[144], 1, 128));
        Assert.Throws<ArgumentException>(() => B.UploadFrozen(FrozenFormat.Q8_0, new byte[33], 1, 32));
        Assert.Throws<ArgumentOutOfRangeException>(() => B.CrossEntropy(big, big, [9], 1, 2, 4, 1f, null, null));
        Assert.Throws<ArgumentOutOfRangeException>(() => small.Slice(2, 2));
        using var other = IlgpuBackend.CpuAccelerator();
        using var foreign = other.Allocate(3);
        Assert.Throws<ArgumentException>(() => B.Scale(foreign, 2f));
    }
}

public sealed class IlgpuSimpleKernelTests(SimpleCpuAcceleratorFixture fixture)
    : IlgpuDeviceDependentTests(fixture.Backend), IClassFixture<SimpleCpuAcceleratorFixture>
{
    [Fact]
    public void UsesOneThreadPerOutput() => Assert.False(B.TiledMatMul);
}

/// <summary>The CUDA kernel choices (16×16 shared-memory GEMM tiles, 256-thread row groups) on the CPU accelerator.</summary>
public sealed class IlgpuTiledKernelTests(TiledCpuAcceleratorFixture fixture)
    : IlgpuDeviceDependentTests(fixture.Backend), IClassFixture<TiledCpuAcceleratorFixture>
{
    [Fact]
    public void UsesSharedMemoryTiles() => Assert.True(B.TiledMatMul);

    [Fact]
    public void TiledAndSimpleGemmsAgreeBitForBit()
    {
        // Both sum over the inner index in ascending order with a separate multiply and add.
        int n = 70, k = 33, m = 130;
        var x = TestData.Gaussian(n * k, 80);
        var w = TestData.Gaussian(m * k, 81);
        float[] Run(IlgpuBackend backend)
        {
            using var xb = backend.Allocate(x.Length);
            using var wb = backend.Allocate(w.Length);
            using var yb = backend.Allocate(n * m);
            backend.Upload(x, xb);
            backend.Upload(w, wb);
            backend.MatMul(xb, wb, yb, n, k, m, accumulate: false);
            var y = new float[n * m];
            backend.Download(yb, y);
            return y;
        }
        using var simple = IlgpuBackend.CpuAccelerator();
        Assert.Equal(Run(simple), Run(B));
    }
}
