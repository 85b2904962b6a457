using System.Runtime.InteropServices;
using EdgeTune.Core;
using EdgeTune.Core.Quantization;
using static EdgeTune.Kernels.Tests.TestData;

namespace EdgeTune.Kernels.Tests;

/// <summary>
/// Every op of an <see cref="IComputeBackend"/> against the float64 references, at awkward sizes. A backend's test
/// class derives from this, creates the backend, and may shrink <see cref="Sizes"/> (a slow backend such as ILGPU's
/// CPU accelerator) or loosen <see cref="Tolerance"/>. Comparisons: |actual − expected| ≤ Tolerance·max(|expected|, rms(expected)).
/// </summary>
public abstract class BackendContractTests : IDisposable
{
    private IComputeBackend? _backend;

    protected abstract IComputeBackend CreateBackend();

    protected IComputeBackend Backend => _backend ??= CreateBackend();

    /// <summary>The sizes each op is run at (the dimension that varies: rows, K, count, sequence length).</summary>
    protected virtual int[] Sizes => [1, 17, 1025];

    /// <summary>Relative tolerance of float32 results against the float64 references.</summary>
    protected virtual double Tolerance => 1e-4;

    public void Dispose()
    {
        _backend?.Dispose();
        GC.SuppressFinalize(this);
    }

    protected DeviceBuffer Up(float[] values)
    {
        var buffer = Backend.Allocate(values.Length);
        Backend.Upload(values, buffer);
        return buffer;
    }

    protected float[] Down(DeviceBuffer buffer)
    {
        var values = new float[buffer.Length];
        Backend.Download(buffer, values);
        return values;
    }

    /// <summary>The float inputs as the reference sees them (exactly the same values, widened).</summary>
    protected static double[] D(float[] values) => ToDouble(values);

    protected void Close(string name, double[] expected, DeviceBuffer actual) => TestData.Close(name, expected, Down(actual), Tolerance);

    // ---- matmuls ----------------------------------------------------------------------------------------------------

    private IEnumerable<(int N, int K, int M)> MatMulShapes()
    {
        foreach (int s in Sizes)
        {
            yield return (s, 17, 33);
            yield return (5, s, 7);
            yield return (9, 64, s);
        }
        yield return (8, 2100, 13); // K spans several of the CPU's K-blocks
    }

    [Fact]
    public void MatMulForwardAndBackward()
    {
        foreach (var (n, k, m) in MatMulShapes())
            foreach (bool accumulate in new[] { false, true })
            {
                string at = $"(N={n},K={k},M={m}, accumulate={accumulate})";
                float[] x = UniformF(n * k, 1), w = UniformF(m * k, 2), dy = UniformF(n * m, 3);
                float[] y0 = UniformF(n * m, 4), dx0 = UniformF(n * k, 5), dw0 = UniformF(m * k, 6);
                var (bx, bw, bdy) = (Up(x), Up(w), Up(dy));
                var (by, bdx, bdw) = (Up(y0), Up(dx0), Up(dw0));
                Backend.MatMul(bx, bw, by, n, k, m, accumulate);
                Backend.MatMulBackwardInput(bdy, bw, bdx, n, k, m, accumulate);
                Backend.MatMulBackwardWeight(bdy, bx, bdw, n, k, m, accumulate);

                double[] y = D(y0), dx = D(dx0), dw = D(dw0);
                Reference.MatMul<double>(D(x), D(w), y, n, k, m, accumulate);
                Reference.MatMulBackwardInput<double>(D(dy), D(w), dx, n, k, m, accumulate);
                Reference.MatMulBackwardWeight<double>(D(dy), D(x), dw, n, k, m, accumulate);
                Close("y " + at, y, by);
                Close("dx " + at, dx, bdx);
                Close("dw " + at, dw, bdw);
            }
    }

    /// <summary>Formats × (cols, rows); the larger ones span several of the CPU backend's 256-column, 128-row blocks.</summary>
    public static TheoryData<FrozenFormat, int, int> FrozenCases => new()
    {
        { FrozenFormat.F32, 17, 37 }, { FrozenFormat.Nf4, 17, 37 }, { FrozenFormat.Nf4, 256, 37 },
        { FrozenFormat.Q8_0, 64, 37 }, { FrozenFormat.Q4_0, 96, 37 }, { FrozenFormat.Q4_K, 256, 37 },
        { FrozenFormat.Nf4, 600, 150 }, { FrozenFormat.Q8_0, 288, 150 }, { FrozenFormat.Q4_K, 768, 131 },
    };

    [Theory]
    [MemberData(nameof(FrozenCases))]
    public void FrozenMatMulEqualsMatMulOfTheDequantisedWeight(FrozenFormat format, int cols, int rows)
    {
        var weights = Gaussian(rows * cols, 11);
        byte[] data = Encode(format, weights, rows, cols);
        var dequantised = new float[rows * cols];
        for (int r = 0; r < rows; r++) FrozenRows.DequantizeRow(format, data, rows, r, cols, dequantised.AsSpan(r * cols, cols));
        using var frozen = Backend.UploadFrozen(format, data, rows, cols);
        Assert.Equal(data.Length, frozen.Bytes);
        foreach (int n in Sizes)
            foreach (bool accumulate in new[] { false, true })
            {
                float[] x = UniformF(n * cols, 1), dy = UniformF(n * rows, 2), y0 = UniformF(n * rows, 3), dx0 = UniformF(n * cols, 4);
                var (by, bdx) = (Up(y0), Up(dx0));
                Backend.FrozenMatMul(Up(x), frozen, by, n, accumulate);
                Backend.FrozenMatMulBackwardInput(Up(dy), frozen, bdx, n, accumulate);
                double[] y = D(y0), dx = D(dx0);
                Reference.MatMul<double>(D(x), D(dequantised), y, n, cols, rows, accumulate);
                Reference.MatMulBackwardInput<double>(D(dy), D(dequantised), dx, n, cols, rows, accumulate);
                Close($"{format} y (N={n})", y, by);
                Close($"{format} dx (N={n})", dx, bdx);
            }
    }

    protected static byte[] Encode(FrozenFormat format, float[] weights, int rows, int cols)
    {
        switch (format)
        {
            case FrozenFormat.F32: return MemoryMarshal.AsBytes(weights.AsSpan()).ToArray();
            case FrozenFormat.Nf4: return Nf4Codec.Quantize(weights);
            default:
                var type = format switch { FrozenFormat.Q8_0 => GgmlType.Q8_0, FrozenFormat.Q4_0 => GgmlType.Q4_0, _ => GgmlType.Q4_K };
                long rowBytes = GgmlTypes.RowBytes(type, cols);
                var data = new byte[rows * rowBytes];
                for (int r = 0; r < rows; r++)
                    QuantCodecs.Quantize(type, weights.AsSpan(r * cols, cols), data.AsSpan((int)(r * rowBytes), (int)rowBytes));
                return data;
        }
    }

    [Fact]
    public void UploadFrozenRejectsWrongSizes()
    {
        Assert.Throws<ArgumentException>(() => Backend.UploadFrozen(FrozenFormat.Q4_K, new byte[144], 1, 255));
        Assert.Throws<ArgumentException>(() => Backend.UploadFrozen(FrozenFormat.F32, new byte[12], 2, 2));
    }

    // ---- embedding, norm, rope ---------------------------------------------------------------------------------

    [Fact]
    public void Embedding()
    {
        int vocab = 11, c = 19;
        float[] table = UniformF(vocab * c, 1);
        foreach (int n in Sizes)
        {
            int[] tokens = Tokens(n, vocab, n);
            if (n > 2) tokens[2] = tokens[0]; // repeated
            float[] dOut = UniformF(n * c, 2), dTable0 = UniformF(vocab * c, 3);
            var output = Backend.Allocate(n * c);
            Backend.EmbeddingForward(tokens, Up(table), output, c);
            var bdTable = Up(dTable0);
            Backend.EmbeddingBackward(tokens, Up(dOut), bdTable, c);
            var expected = new double[n * c];
            Reference.EmbeddingForward<double>(tokens, D(table), expected, c);
            double[] dTable = D(dTable0);
            Reference.EmbeddingBackward<double>(tokens, D(dOut), dTable, c);
            Close($"output (N={n})", expected, output);
            Close($"dTable (N={n})", dTable, bdTable);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => Backend.EmbeddingForward([vocab], Up(table), Backend.Allocate(c), c));
    }

    [Fact]
    public void RmsNorm()
    {
        foreach (int n in Sizes)
            foreach (int c in new[] { 17, 64 })
            {
                float[] x = UniformF(n * c, 1, 3), weight = UniformF(c, 2), dy = UniformF(n * c, 3), dx0 = UniformF(n * c, 4), dw0 = UniformF(c, 5);
                var (by, brstd) = (Backend.Allocate(n * c), Backend.Allocate(n));
                var (bx, bweight) = (Up(x), Up(weight));
                Backend.RmsNormForward(bx, bweight, by, brstd, n, c, 1e-5f);
                var (bdx, bdw) = (Up(dx0), Up(dw0));
                Backend.RmsNormBackward(Up(dy), bx, bweight, brstd, bdx, bdw, n, c);
                var bdxOnly = Up(dx0);
                Backend.RmsNormBackward(Up(dy), bx, bweight, brstd, bdxOnly, null, n, c);

                double[] y = new double[n * c], rstd = new double[n], dx = D(dx0), dw = D(dw0);
                Reference.RmsNormForward<double>(D(x), D(weight), y, rstd, n, c, 1e-5);
                Reference.RmsNormBackward<double>(D(dy), D(x), D(weight), rstd, dx, dw, n, c);
                string at = $"(N={n},C={c})";
                Close("y " + at, y, by);
                Close("rstd " + at, rstd, brstd);
                Close("dx " + at, dx, bdx);
                Close("dx without dWeight " + at, dx, bdxOnly);
                Close("dWeight " + at, dw, bdw);
            }
    }

    [Theory]
    [InlineData(RopeLayout.Half)]
    [InlineData(RopeLayout.Interleaved)]
    public void Rope(RopeLayout layout)
    {
        int heads = 3, headDim = 16;
        float[] invFreq = [.. Enumerable.Range(0, headDim / 2).Select(j => (float)Math.Pow(10000, -2.0 * j / headDim))];
        foreach (int seqLen in Sizes)
            foreach (bool inverse in new[] { false, true })
            {
                int batch = 2, count = batch * seqLen * heads * headDim;
                float[] x = UniformF(count, seqLen);
                var bx = Up(x);
                Backend.Rope(bx, Up(invFreq), batch, seqLen, heads, headDim, layout, inverse);
                double[] expected = D(x);
                Reference.Rope<double>(expected, D(invFreq), batch, seqLen, heads, headDim, layout, inverse);
                // Angles up to 1024 rad: float32 cos/sin of them carry ~1e-4 absolute error in any float implementation.
                TestData.Close($"rope (T={seqLen}, inverse={inverse})", expected, Down(bx), Math.Max(Tolerance, 3e-4));
            }
    }

    // ---- attention ---------------------------------------------------------------------------------------------

    private IEnumerable<(int B, int T, int H, int KV, int D)> AttentionShapes()
    {
        foreach (int s in Sizes)
        {
            yield return (1, s, 4, 2, 8);
            yield return (2, Math.Min(s, 70), 3, 1, 16);
        }
        yield return (1, 5, 2, 2, 64);
    }

    [Fact]
    public void AttentionForwardAndBackward()
    {
        foreach (var (batch, seqLen, heads, kvHeads, headDim) in AttentionShapes())
        {
            string at = $"(B={batch},T={seqLen},H={heads},KV={kvHeads},D={headDim})";
            int qCount = batch * seqLen * heads * headDim, kvCount = batch * seqLen * kvHeads * headDim;
            float[] q = UniformF(qCount, 1, 2), k = UniformF(kvCount, 2, 2), v = UniformF(kvCount, 3), dOut = UniformF(qCount, 4);
            var (bq, bk, bv) = (Up(q), Up(k), Up(v));
            var (bo, blse) = (Backend.Allocate(qCount), Backend.Allocate(batch * heads * seqLen));
            Backend.AttentionForward(bq, bk, bv, bo, blse, batch, seqLen, heads, kvHeads, headDim);
            // Gradients overwrite: start them from garbage.
            var (bdq, bdk, bdv) = (Up(UniformF(qCount, 9)), Up(UniformF(kvCount, 9)), Up(UniformF(kvCount, 9)));
            Backend.AttentionBackward(Up(dOut), bq, bk, bv, bo, blse, bdq, bdk, bdv, batch, seqLen, heads, kvHeads, headDim);

            double[] o = new double[qCount], lse = new double[batch * heads * seqLen];
            double[] dq = new double[qCount], dk = new double[kvCount], dv = new double[kvCount];
            Reference.AttentionForward<double>(D(q), D(k), D(v), o, lse, batch, seqLen, heads, kvHeads, headDim);
            Reference.AttentionBackward<double>(D(dOut), D(q), D(k), D(v), o, lse, dq, dk, dv, batch, seqLen, heads, kvHeads, headDim);
            Close("output " + at, o, bo);
            Close("logSumExp " + at, lse, blse);
            Close("dq " + at, dq, bdq);
            Close("dk " + at, dk, bdk);
            Close("dv " + at, dv, bdv);
        }
    }

    [Fact]
    public void PackedAttentionAndRopeAgreeWithTheReference()
    {
        // Examples of 1, 2, 63, 64, 65 … tokens: segment edges on and off the CPU backend's 64-key blocks.
        foreach (var (batch, seqLen, heads, kvHeads, headDim) in AttentionShapes())
        {
            string at = $"packed (B={batch},T={seqLen},H={heads},KV={kvHeads},D={headDim})";
            int qCount = batch * seqLen * heads * headDim, kvCount = batch * seqLen * kvHeads * headDim;
            int[] starts = PackedStarts(batch, seqLen, seed: seqLen);
            float[] q = UniformF(qCount, 1, 2), k = UniformF(kvCount, 2, 2), v = UniformF(kvCount, 3), dOut = UniformF(qCount, 4);
            float[] invFreq = [.. Enumerable.Range(0, headDim / 2).Select(j => (float)Math.Pow(10000, -2.0 * j / headDim))];
            var (bq, bk, bv) = (Up(q), Up(k), Up(v));
            Backend.Rope(bq, Up(invFreq), batch, seqLen, heads, headDim, RopeLayout.Half, inverse: false, starts);
            double[] rq = D(q);
            Reference.Rope<double>(rq, D(invFreq), batch, seqLen, heads, headDim, RopeLayout.Half, inverse: false, starts);
            TestData.Close("rope " + at, rq, Down(bq), Math.Max(Tolerance, 3e-4));
            Backend.Upload(q, bq);

            var (bo, blse) = (Backend.Allocate(qCount), Backend.Allocate(batch * heads * seqLen));
            Backend.AttentionForward(bq, bk, bv, bo, blse, batch, seqLen, heads, kvHeads, headDim, starts);
            var (bdq, bdk, bdv) = (Up(UniformF(qCount, 9)), Up(UniformF(kvCount, 9)), Up(UniformF(kvCount, 9)));
            Backend.AttentionBackward(Up(dOut), bq, bk, bv, bo, blse, bdq, bdk, bdv, batch, seqLen, heads, kvHeads, headDim, starts);

            double[] o = new double[qCount], lse = new double[batch * heads * seqLen];
            double[] dq = new double[qCount], dk = new double[kvCount], dv = new double[kvCount];
            Reference.AttentionForward<double>(D(q), D(k), D(v), o, lse, batch, seqLen, heads, kvHeads, headDim, starts);
            Reference.AttentionBackward<double>(D(dOut), D(q), D(k), D(v), o, lse, dq, dk, dv, batch, seqLen, heads, kvHeads, headDim, starts);
            Close("output " + at, o, bo);
            Close("logSumExp " + at, lse, blse);
            Close("dq " + at, dq, bdq);
            Close("dk " + at, dk, bdk);
            Close("dv " + at, dv, bdv);
        }
    }

    [Fact]
    public void SegmentStartsThatCrossExamplesAreRefused()
    {
        using var x = Backend.Allocate(1 * 4 * 2 * 4);
        using var f = Backend.Allocate(2);
        using var lse = Backend.Allocate(2 * 4);
        // Row 3 jumps back into an earlier example; row 2 claims a start in its future; a (B,T) array one short.
        Assert.Throws<ArgumentException>(() => Backend.Rope(x, f, 1, 4, 2, 4, RopeLayout.Half, false, [0, 1, 1, 0]));
        Assert.Throws<ArgumentException>(() => Backend.AttentionForward(x, x, x, x, lse, 1, 4, 2, 2, 4, [0, 0, 3, 3]));
        Assert.Throws<ArgumentException>(() => Backend.AttentionForward(x, x, x, x, lse, 1, 4, 2, 2, 4, [0, 0, 0]));
    }

    // ---- elementwise -------------------------------------------------------------------------------------------

    [Fact]
    public void SwiGlu()
    {
        foreach (int count in Sizes)
        {
            float[] gate = UniformF(count, 1, 5), up = UniformF(count, 2), dOut = UniformF(count, 3);
            var output = Backend.Allocate(count);
            Backend.SwiGluForward(Up(gate), Up(up), output, count);
            var (bdg, bdu) = (Backend.Allocate(count), Backend.Allocate(count));
            Backend.SwiGluBackward(Up(dOut), Up(gate), Up(up), bdg, bdu, count);
            double[] o = new double[count], dg = new double[count], du = new double[count];
            Reference.SwiGluForward<double>(D(gate), D(up), o, count);
            Reference.SwiGluBackward<double>(D(dOut), D(gate), D(up), dg, du, count);
            Close($"output (count={count})", o, output);
            Close($"dGate (count={count})", dg, bdg);
            Close($"dUp (count={count})", du, bdu);

            // Aliasing: output over gate; dGate over gate and dUp over up.
            var (bg, bu) = (Up(gate), Up(up));
            Backend.SwiGluForward(bg, bu, bg, count);
            Close($"output aliasing gate (count={count})", o, bg);
            (bg, bu) = (Up(gate), Up(up));
            Backend.SwiGluBackward(Up(dOut), bg, bu, bg, bu, count);
            Close($"dGate aliasing gate (count={count})", dg, bg);
            Close($"dUp aliasing up (count={count})", du, bu);
        }
    }

    [Fact]
    public void CrossEntropy()
    {
        int c = 16, vocab = 37;
        float[] head = UniformF(vocab * c, 2, 2);
        foreach (int n in Sizes)
        {
            float[] hidden = UniformF(n * c, 1, 2), dHead0 = UniformF(vocab * c, 3);
            int[] targets = Tokens(n, vocab, 4);
            for (int i = 1; i < n; i += 5) targets[i] = -1;
            var (bh, bw) = (Up(hidden), Up(head));
            var (bdh, bdw) = (Up(UniformF(n * c, 9)), Up(dHead0));
            double loss = Backend.CrossEntropy(bh, bw, targets, n, c, vocab, 0.25f, bdh, bdw);
            double lossOnly = Backend.CrossEntropy(bh, bw, targets, n, c, vocab, 0.25f, null, null);

            double[] dh = new double[n * c], dw = D(dHead0);
            double expected = Reference.CrossEntropy<double>(D(hidden), D(head), targets, n, c, vocab, 0.25, dh, dw);
            Assert.Equal(expected, loss, expected * Tolerance);
            Assert.Equal(expected, lossOnly, expected * Tolerance);
            Close($"dHidden (N={n})", dh, bdh);
            Close($"dHead (N={n})", dw, bdw);
        }
    }

    [Theory]
    [InlineData(DistillDivergence.ForwardKl, 0.0, 1.0, 1.0)]
    [InlineData(DistillDivergence.ReverseKl, 1.0, 2.0, 0.5)]
    [InlineData(DistillDivergence.Jsd, 0.5, 0.7, 0.9)]
    [InlineData(DistillDivergence.Jsd, 0.0, 1.0, 0.3)]
    public void Distill(DistillDivergence divergence, double beta, double temperature, double alpha)
    {
        int c = 16, vocab = 37, k = 8;
        float[] head = UniformF(vocab * c, 2, 2);
        var settings = new DistillSettings(divergence, beta, temperature, alpha, k);
        foreach (int n in Sizes)
        {
            float[] hidden = UniformF(n * c, 1, 2), dHead0 = UniformF(vocab * c, 3);
            int[] targets = Tokens(n, vocab, 4);
            for (int i = 1; i < n; i += 5) targets[i] = -1;
            int[] ids = new int[n * k];
            float[] logProbs = UniformF(n * k, 5, 3);
            for (int r = 0; r < n; r++)
            {
                // k distinct ids per row, as a teacher's top-k are
                var perm = Tokens(vocab, 1 << 20, 6 + r).Select((key, v) => (key, v)).OrderBy(p => p.key).Select(p => p.v).Take(k).ToArray();
                perm.CopyTo(ids, r * k);
                var row = logProbs.AsSpan(r * k, k);
                float max = row.ToArray().Max(), lse = max + MathF.Log(row.ToArray().Sum(x => MathF.Exp(x - max)));
                for (int i = 0; i < k; i++) row[i] -= lse;
            }
            var (bh, bw) = (Up(hidden), Up(head));
            var (bdh, bdw) = (Up(UniformF(n * c, 9)), Up(dHead0));
            var sums = Backend.Distill(bh, bw, targets, ids, logProbs, settings, n, c, vocab, 0.25f, bdh, bdw);
            var lossOnly = Backend.Distill(bh, bw, targets, ids, logProbs, settings, n, c, vocab, 0.25f, null, null);

            double[] dh = new double[n * c], dw = D(dHead0);
            var expected = Reference.Distill<double>(D(hidden), D(head), targets, ids, D(logProbs), settings, n, c, vocab, 0.25, dh, dw);
            Assert.Equal(expected.CrossEntropy, sums.CrossEntropy, Math.Abs(expected.CrossEntropy) * Tolerance + 1e-9);
            Assert.Equal(expected.Distill, sums.Distill, Math.Abs(expected.Distill) * Tolerance + 1e-6);
            Assert.Equal(expected.Distill, lossOnly.Distill, Math.Abs(expected.Distill) * Tolerance + 1e-6);
            Close($"dHidden (N={n})", dh, bdh);
            Close($"dHead (N={n})", dw, bdw);
        }
    }

    [Fact]
    public void DistillFromItselfIsZero()
    {
        int n = 5, c = 8, vocab = 23, k = 6;
        float[] hidden = UniformF(n * c, 1, 2), head = UniformF(vocab * c, 2, 2);
        var logits = new double[n * vocab];
        Reference.MatMul<double>(D(hidden), D(head), logits, n, c, vocab, accumulate: false);
        int[] ids = new int[n * k];
        float[] logProbs = new float[n * k];
        for (int r = 0; r < n; r++)
        {
            var top = Enumerable.Range(0, vocab).OrderByDescending(v => logits[r * vocab + v]).Take(k).ToArray();
            double max = logits[r * vocab + top[0]], lse = max + Math.Log(top.Sum(v => Math.Exp(logits[r * vocab + v] - max)));
            for (int i = 0; i < k; i++) (ids[r * k + i], logProbs[r * k + i]) = (top[i], (float)(logits[r * vocab + top[i]] - lse));
        }
        int[] targets = [0, -1, 3, 7, 22];
        foreach (var divergence in new[] { DistillDivergence.ForwardKl, DistillDivergence.ReverseKl, DistillDivergence.Jsd })
        {
            var (bdh, bdw) = (Backend.Allocate(n * c), Backend.Allocate(vocab * c));
            var sums = Backend.Distill(Up(hidden), Up(head), targets, ids, logProbs, new DistillSettings(divergence, 0.5, 1.5, 1, k), n, c, vocab, 1, bdh, bdw);
            Assert.True(Math.Abs(sums.Distill) < 1e-5, $"{divergence}: D = {sums.Distill}");
            Assert.All(Down(bdh), g => Assert.True(Math.Abs(g) < 1e-5, $"{divergence}: ∂/∂hidden = {g}"));
            Assert.All(Down(bdw), g => Assert.True(Math.Abs(g) < 1e-5, $"{divergence}: ∂/∂head = {g}"));
        }
    }

    [Fact]
    public void AdamW()
    {
        foreach (int count in Sizes)
        {
            float[] p = UniformF(count, 1), m = new float[count], v = new float[count];
            var (bp, bm, bv) = (Up(p), Up(m), Up(v));
            double[] rp = D(p), rm = new double[count], rv = new double[count];
            for (int step = 1; step <= 3; step++)
            {
                float[] g = UniformF(count, 10 + step, 0.1f);
                Backend.AdamW(bp, Up(g), bm, bv, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, step);
                Reference.AdamW<double>(rp, D(g), rm, rv, 1e-3, 0.9, 0.999, 1e-8, 0.01, step);
            }
            Close($"parameters (count={count})", rp, bp);
            Close($"m (count={count})", rm, bm);
            Close($"v (count={count})", rv, bv);
        }
    }

    [Fact]
    public void Dropout()
    {
        foreach (int count in Sizes)
            foreach (float p in new[] { 0f, 0.1f, 0.5f, 1f })
            {
                float[] x = UniformF(count, 1);
                var y = Backend.Allocate(count);
                Backend.Dropout(Up(x), y, count, p, seed: 1234);
                var expected = new double[count];
                Reference.Dropout<double>(D(x), expected, count, p, seed: 1234);
                Close($"dropout (count={count}, p={p})", expected, y);
            }
    }

    [Fact]
    public void ElementwiseOps()
    {
        foreach (int count in Sizes)
        {
            float[] a = UniformF(count, 1), b = UniformF(count, 2);
            var ba = Up(a);
            Backend.AddScaled(ba, Up(b), -0.5f);
            double[] expected = D(a);
            Reference.AddScaled<double>(expected, D(b), -0.5);
            Close("AddScaled", expected, ba);
            Backend.Scale(ba, 3f);
            Reference.Scale<double>(expected, 3);
            Close("Scale", expected, ba);
            Assert.Equal(Reference.SumOfSquares<float>(Down(ba)), Backend.SumOfSquares(ba), Reference.SumOfSquares<float>(Down(ba)) * 1e-12);
            var copy = Backend.Allocate(count);
            Backend.Copy(ba, copy);
            Assert.Equal(Down(ba), Down(copy));
            Backend.Zero(copy);
            Assert.All(Down(copy), value => Assert.Equal(0f, value));
        }
    }

    // ---- properties every backend keeps ------------------------------------------------------------------------

    [Fact]
    public void ResultsAreDeterministic()
    {
        int n = 67, k = 45, m = 39, vocab = 53, seqLen = 37;
        float[] x = UniformF(n * k, 1), w = UniformF(m * k, 2), dy = UniformF(n * m, 3), head = UniformF(vocab * k, 4);
        int[] targets = Tokens(n, vocab, 5);
        byte[] Run()
        {
            var (bx, bw, bdy) = (Up(x), Up(w), Up(dy));
            var (y, dx, dw) = (Backend.Allocate(n * m), Backend.Allocate(n * k), Backend.Allocate(m * k));
            Backend.MatMul(bx, bw, y, n, k, m, false);
            Backend.MatMulBackwardInput(bdy, bw, dx, n, k, m, false);
            Backend.MatMulBackwardWeight(bdy, bx, dw, n, k, m, false);
            var (dh, dHead) = (Backend.Allocate(n * k), Backend.Allocate(vocab * k));
            double loss = Backend.CrossEntropy(bx, Up(head), targets, n, k, vocab, 1f / n, dh, dHead);
            int qCount = 2 * seqLen * 4 * 8, kvCount = 2 * seqLen * 2 * 8;
            var (q, kk, v) = (Up(UniformF(qCount, 6)), Up(UniformF(kvCount, 7)), Up(UniformF(kvCount, 8)));
            var (o, lse) = (Backend.Allocate(qCount), Backend.Allocate(2 * 4 * seqLen));
            Backend.AttentionForward(q, kk, v, o, lse, 2, seqLen, 4, 2, 8);
            var (dq, dk, dv) = (Backend.Allocate(qCount), Backend.Allocate(kvCount), Backend.Allocate(kvCount));
            Backend.AttentionBackward(Up(UniformF(qCount, 9)), q, kk, v, o, lse, dq, dk, dv, 2, seqLen, 4, 2, 8);
            var all = new List<float>();
            foreach (var buffer in new[] { y, dx, dw, dh, dHead, o, lse, dq, dk, dv }) all.AddRange(Down(buffer));
            all.Add((float)loss);
            all.Add((float)(loss - (float)loss));
            return MemoryMarshal.AsBytes(all.ToArray().AsSpan()).ToArray();
        }
        Assert.Equal(Run(), Run());
    }

    [Fact]
    public void OpsOnSlicesStayInsideThem()
    {
        const float sentinel = 12345f;
        int n = 5, k = 7, m = 3;
        var arena = Backend.Allocate(1000);
        Backend.Upload(Enumerable.Repeat(sentinel, 1000).ToArray(), arena);
        var x = arena.Slice(10, n * k);
        var w = arena.Slice(100, m * k);
        var y = arena.Slice(200, n * m);
        var g = arena.Slice(300, 40);
        Backend.Upload(UniformF(n * k, 1), x);
        Backend.Upload(UniformF(m * k, 2), w);
        Backend.Upload(UniformF(40, 3), g);
        Backend.MatMul(x, w, y, n, k, m, accumulate: false);
        Backend.MatMulBackwardWeight(y, x, w, n, k, m, accumulate: true);
        Backend.AddScaled(g, g, 1f);
        Backend.Scale(g.Slice(5, 10), 2f);
        Backend.Zero(g.Slice(30, 5));
        float[] all = Down(arena);
        bool Inside(int i) => i is >= 10 and < 45 || i is >= 100 and < 121 || i is >= 200 and < 215 || i is >= 300 and < 340;
        for (int i = 0; i < all.Length; i++)
            if (!Inside(i)) Assert.True(all[i] == sentinel, $"element {i} outside every slice changed to {all[i]}");

        // The slice's values are the op's result.
        var expected = new double[n * m];
        Reference.MatMul<double>(D(UniformF(n * k, 1)), D(UniformF(m * k, 2)), expected, n, k, m, false);
        TestData.Close("y in a slice", expected, all.AsSpan(200, n * m), Tolerance);
        Assert.Equal(0f, all[330]);
        Assert.Equal(0f, all[334]);
        Assert.NotEqual(0f, all[335]);
        Assert.Throws<ArgumentOutOfRangeException>(() => arena.Slice(990, 20));
    }

    [Fact]
    public void ShapesAreCheckedAtTheBoundary()
    {
        var small = Backend.Allocate(10);
        var error = Assert.Throws<ArgumentException>(() => Backend.MatMul(small, small, small, 4, 3, 2, false));
        Assert.Contains("(N=4,K=3)", error.Message);
        Assert.Throws<ArgumentException>(() => Backend.AttentionForward(small, small, small, small, small, 1, 2, 3, 2, 4));
        Assert.Throws<ArgumentException>(() => Backend.RmsNormForward(small, small, small, small, 2, 8, 1e-5f));
        Assert.Throws<ArgumentOutOfRangeException>(() => Backend.CrossEntropy(small, small, [5], 1, 2, 5, 1f, null, null));
        Assert.Throws<ArgumentOutOfRangeException>(() => Backend.AdamW(small, small, small, small, 1, 0.9f, 0.99f, 1e-8f, 0, step: 0));
    }
}
