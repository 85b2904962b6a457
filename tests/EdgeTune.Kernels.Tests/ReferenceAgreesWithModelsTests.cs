using EdgeTune.Models.Reference;
using static EdgeTune.Kernels.Tests.TestData;

namespace EdgeTune.Kernels.Tests;

/// <summary>The kernels' references compute what EdgeTune.Models' reference forward computes (float64, one sequence).</summary>
public class ReferenceAgreesWithModelsTests
{
    [Fact]
    public void LinearNormGluEmbedding()
    {
        int t = 5, c = 17, f = 9, vocab = 7;
        double[] x = Uniform(t * c, 1), w = Uniform(f * c, 2), norm = Uniform(c, 3), table = Uniform(vocab * c, 4);

        var expected = new double[t * f];
        Ops.MatMul(x, w, null, c, expected);
        var actual = new double[t * f];
        Reference.MatMul<double>(x, w, actual, t, c, f, accumulate: false);
        Assert.Equal(expected, actual, (a, b) => Math.Abs(a - b) < 1e-12);

        var normed = new double[t * c];
        Ops.RmsNorm<double>(x, norm, 1e-6, normed);
        var ours = new double[t * c];
        Reference.RmsNormForward<double>(x, norm, ours, new double[t], t, c, 1e-6);
        Assert.Equal(normed, ours, (a, b) => Math.Abs(a - b) < 1e-12);

        double[] gate = Uniform(t * f, 5, 3), up = Uniform(t * f, 6);
        var glu = new double[t * f];
        Ops.SwiGlu<double>(gate, up, glu);
        var ourGlu = new double[t * f];
        Reference.SwiGluForward<double>(gate, up, ourGlu, t * f);
        Assert.Equal(glu, ourGlu, (a, b) => Math.Abs(a - b) < 1e-12);

        int[] tokens = [3, 0, 6, 3];
        var embedded = new double[tokens.Length * c];
        Ops.Embedding(table, tokens, c, embedded);
        var ourEmbedded = new double[tokens.Length * c];
        Reference.EmbeddingForward<double>(tokens, table, ourEmbedded, c);
        Assert.Equal(embedded, ourEmbedded);
    }

    [Theory]
    [InlineData(RopeStyle.Half, RopeLayout.Half)]
    [InlineData(RopeStyle.Interleaved, RopeLayout.Interleaved)]
    public void Rope(RopeStyle style, RopeLayout layout)
    {
        int t = 6, heads = 3, headDim = 8;
        double[] x = Uniform(t * heads * headDim, 1);
        double[] invFreq = Ops.RopeInverseFrequencies(10000, headDim, null);
        var expected = (double[])x.Clone();
        Ops.Rope<double>(expected, heads, headDim, invFreq, style);
        var actual = (double[])x.Clone();
        Reference.Rope<double>(actual, invFreq, 1, t, heads, headDim, layout, inverse: false);
        Assert.Equal(expected, actual, (a, b) => Math.Abs(a - b) < 1e-12);
    }

    [Theory]
    [InlineData(4, 4)]
    [InlineData(4, 2)]
    [InlineData(6, 1)]
    public void CausalAttention(int heads, int kvHeads)
    {
        int t = 7, headDim = 5;
        double[] q = Uniform(t * heads * headDim, 1, 2), k = Uniform(t * kvHeads * headDim, 2, 2), v = Uniform(t * kvHeads * headDim, 3);
        var expected = new double[q.Length];
        Ops.CausalAttention(q, k, v, heads, kvHeads, headDim, expected);
        var actual = new double[q.Length];
        Reference.AttentionForward<double>(q, k, v, actual, new double[heads * t], 1, t, heads, kvHeads, headDim);
        Assert.Equal(expected, actual, (a, b) => Math.Abs(a - b) < 1e-12);
    }
}
