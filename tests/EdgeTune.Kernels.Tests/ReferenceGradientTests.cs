using static EdgeTune.Kernels.Tests.TestData;

namespace EdgeTune.Kernels.Tests;

/// <summary>
/// Every reference backward against central differences of its forward, in float64. The loss is
/// L = Σ G·forward(inputs) for a random G, so the backward is called with dOutput = G.
/// Tolerance: |analytic − numeric| ≤ 1e-6·(|analytic| + |numeric|) + 1e-9, step h = 1e-5.
/// </summary>
public class ReferenceGradientTests
{
    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(3, 5, 4)]
    [InlineData(2, 17, 3)]
    public void MatMulBackward(int n, int k, int m)
    {
        double[] x = Uniform(n * k, 1), w = Uniform(m * k, 2), g = Uniform(n * m, 3);
        var y = new double[n * m];
        double Loss()
        {
            Reference.MatMul<double>(x, w, y, n, k, m, accumulate: false);
            return Dot(y, g);
        }
        var dx = new double[n * k];
        var dw = new double[m * k];
        Reference.MatMulBackwardInput<double>(g, w, dx, n, k, m, accumulate: false);
        Reference.MatMulBackwardWeight<double>(g, x, dw, n, k, m, accumulate: false);
        CheckGradient("x", x, dx, Loss);
        CheckGradient("w", w, dw, Loss);
    }

    [Fact]
    public void MatMulAccumulateAddsToThePriorContents()
    {
        double[] x = Uniform(6, 1), w = Uniform(6, 2), prior = Uniform(4, 3);
        var overwritten = new double[4];
        var accumulated = (double[])prior.Clone();
        Reference.MatMul<double>(x, w, overwritten, 2, 3, 2, accumulate: false);
        Reference.MatMul<double>(x, w, accumulated, 2, 3, 2, accumulate: true);
        for (int i = 0; i < 4; i++) Assert.Equal(prior[i] + overwritten[i], accumulated[i], 12);
    }

    [Fact]
    public void EmbeddingBackwardAddsRepeatedTokens()
    {
        int vocab = 5, c = 3;
        int[] tokens = [2, 0, 2, 4, 2];
        double[] table = Uniform(vocab * c, 1), g = Uniform(tokens.Length * c, 2);
        var output = new double[tokens.Length * c];
        double Loss()
        {
            Reference.EmbeddingForward<double>(tokens, table, output, c);
            return Dot(output, g);
        }
        var dTable = new double[vocab * c];
        Reference.EmbeddingBackward<double>(tokens, g, dTable, c);
        CheckGradient("table", table, dTable, Loss);
        Assert.Equal(g[0 * c] + g[2 * c] + g[4 * c], dTable[2 * c], 12);
        Assert.Equal(0, dTable[1 * c]);
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 17)]
    public void RmsNormBackward(int n, int c)
    {
        double[] x = Uniform(n * c, 1), weight = Uniform(c, 2), g = Uniform(n * c, 3);
        var y = new double[n * c];
        var rstd = new double[n];
        double Loss()
        {
            Reference.RmsNormForward<double>(x, weight, y, rstd, n, c, 1e-5);
            return Dot(y, g);
        }
        Loss();
        var dx = new double[n * c];
        var dWeight = new double[c];
        Reference.RmsNormBackward<double>(g, x, weight, rstd, dx, dWeight, n, c);
        CheckGradient("x", x, dx, Loss);
        CheckGradient("weight", weight, dWeight, Loss);
    }

    [Theory]
    [InlineData(RopeLayout.Half)]
    [InlineData(RopeLayout.Interleaved)]
    public void RopeInverseIsTheBackward(RopeLayout layout)
    {
        int batch = 2, seqLen = 5, heads = 3, headDim = 8;
        int count = batch * seqLen * heads * headDim;
        double[] x = Uniform(count, 1), g = Uniform(count, 2);
        double[] invFreq = [.. Enumerable.Range(0, headDim / 2).Select(j => Math.Pow(10000, -2.0 * j / headDim))];
        double Loss()
        {
            var rotated = (double[])x.Clone();
            Reference.Rope<double>(rotated, invFreq, batch, seqLen, heads, headDim, layout, inverse: false);
            return Dot(rotated, g);
        }
        var dx = (double[])g.Clone();
        Reference.Rope<double>(dx, invFreq, batch, seqLen, heads, headDim, layout, inverse: true);
        CheckGradient("x", x, dx, Loss);

        var roundTrip = (double[])x.Clone();
        Reference.Rope<double>(roundTrip, invFreq, batch, seqLen, heads, headDim, layout, inverse: false);
        Reference.Rope<double>(roundTrip, invFreq, batch, seqLen, heads, headDim, layout, inverse: true);
        for (int i = 0; i < count; i++) Assert.Equal(x[i], roundTrip[i], 12);
        // Position 0 of every sequence is not rotated.
        var once = (double[])x.Clone();
        Reference.Rope<double>(once, invFreq, batch, seqLen, heads, headDim, layout, inverse: false);
        for (int i = 0; i < heads * headDim; i++) Assert.Equal(x[seqLen * heads * headDim + i], once[seqLen * heads * headDim + i]);
    }

    [Theory]
    [InlineData(1, 1, 1, 1, 1)]
    [InlineData(2, 5, 4, 2, 4)]
    [InlineData(1, 7, 3, 1, 3)]
    [InlineData(1, 4, 2, 2, 5)]
    public void AttentionBackward(int batch, int seqLen, int heads, int kvHeads, int headDim)
    {
        int qCount = batch * seqLen * heads * headDim, kvCount = batch * seqLen * kvHeads * headDim;
        double[] q = Uniform(qCount, 1, 2), k = Uniform(kvCount, 2, 2), v = Uniform(kvCount, 3), g = Uniform(qCount, 4);
        var output = new double[qCount];
        var lse = new double[batch * heads * seqLen];
        double Loss()
        {
            Reference.AttentionForward<double>(q, k, v, output, lse, batch, seqLen, heads, kvHeads, headDim);
            return Dot(output, g);
        }
        Loss();
        double[] dq = Uniform(qCount, 9), dk = Uniform(kvCount, 9), dv = Uniform(kvCount, 9); // overwritten
        Reference.AttentionBackward<double>(g, q, k, v, output, lse, dq, dk, dv, batch, seqLen, heads, kvHeads, headDim);
        CheckGradient("q", q, dq, Loss);
        CheckGradient("k", k, dk, Loss);
        CheckGradient("v", v, dv, Loss);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(17)]
    [InlineData(1025)]
    public void SwiGluBackward(int count)
    {
        double[] gate = Uniform(count, 1, 4), up = Uniform(count, 2), g = Uniform(count, 3);
        var output = new double[count];
        double Loss()
        {
            Reference.SwiGluForward<double>(gate, up, output, count);
            return Dot(output, g);
        }
        var dGate = new double[count];
        var dUp = new double[count];
        Reference.SwiGluBackward<double>(g, gate, up, dGate, dUp, count);
        CheckGradient("gate", gate, dGate, Loss);
        CheckGradient("up", up, dUp, Loss);
    }

    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(5, 4, 7)]
    [InlineData(3, 17, 33)]
    public void CrossEntropyBackward(int n, int c, int vocab)
    {
        double[] hidden = Uniform(n * c, 1, 2), head = Uniform(vocab * c, 2, 2);
        int[] targets = Tokens(n, vocab, 3);
        if (n > 1) targets[1] = -1;
        const double gradScale = 0.7;
        double Loss() => gradScale * Reference.CrossEntropy<double>(hidden, head, targets, n, c, vocab, 1, [], []);
        var dHidden = Uniform(n * c, 9); // overwritten
        var dHead = new double[vocab * c];
        Reference.CrossEntropy<double>(hidden, head, targets, n, c, vocab, gradScale, dHidden, dHead);
        CheckGradient("hidden", hidden, dHidden, Loss);
        CheckGradient("head", head, dHead, Loss);
        if (n > 1)
            for (int i = 0; i < c; i++) Assert.Equal(0, dHidden[c + i]);
    }

    [Fact]
    public void CrossEntropyOfUniformLogitsIsLogV()
    {
        int n = 3, c = 4, vocab = 11;
        var hidden = new double[n * c];
        double loss = Reference.CrossEntropy<double>(hidden, Uniform(vocab * c, 1), [0, -1, 10], n, c, vocab, 1, [], []);
        Assert.Equal(2 * Math.Log(vocab), loss, 12);
    }

    [Theory]
    [InlineData(17, 0.0f)]
    [InlineData(1025, 0.3f)]
    public void DropoutIsLinearAndItsOwnBackward(int count, float p)
    {
        double[] x = Uniform(count, 1), g = Uniform(count, 2);
        var y = new double[count];
        double Loss()
        {
            Reference.Dropout<double>(x, y, count, p, seed: 42);
            return Dot(y, g);
        }
        var dx = new double[count];
        Reference.Dropout<double>(g, dx, count, p, seed: 42);
        CheckGradient("x", x, dx, Loss);
    }

    [Fact]
    public void DropoutMaskKeepsAboutOneMinusP()
    {
        const int count = 100_000;
        const float p = 0.1f;
        int kept = 0;
        for (long i = 0; i < count; i++) kept += DropoutMask.Keep(7, i, p) ? 1 : 0;
        Assert.InRange(kept / (double)count, 0.895, 0.905);
        Assert.NotEqual(DropoutMask.Hash(7, 0), DropoutMask.Hash(8, 0));
        Assert.All(Enumerable.Range(0, 1000), i => Assert.InRange(DropoutMask.Uniform(3, i), 0f, 0.99999995f));
        Assert.True(DropoutMask.Keep(1, 5, 0f));
        Assert.False(DropoutMask.Keep(1, 5, 1f));
        // SplitMix64 with seed 0: its first output is 0xE220A8397B1DCDAF (Vigna's splitmix64.c).
        Assert.Equal(0xE220A8397B1DCDAFUL, DropoutMask.Hash(0, 0));
    }

    [Fact]
    public void AdamWFirstStepMovesByLearningRateTimesSign()
    {
        // Step 1: m̂ = g, v̂ = g², so the update is lr·(g/(|g| + ε) + wd·p).
        double[] p = [1.0, -2.0, 0.5], g = [0.3, -0.01, 0.0];
        var m = new double[3];
        var v = new double[3];
        Reference.AdamW<double>(p, g, m, v, 0.1, 0.9, 0.999, 1e-8, 0.01, step: 1);
        Assert.Equal(1.0 - 0.1 * (0.3 / (0.3 + 1e-8) + 0.01 * 1.0), p[0], 12);
        Assert.Equal(-2.0 - 0.1 * (-0.01 / (0.01 + 1e-8) + 0.01 * -2.0), p[1], 12);
        Assert.Equal(0.5 - 0.1 * 0.01 * 0.5, p[2], 12);
        Assert.Equal(0.03, m[0], 12);
        Assert.Equal(0.001 * 0.09, v[0], 12);
    }
}
