using static EdgeTune.Kernels.Tests.TestData;

namespace EdgeTune.Kernels.Tests;

/// <summary>
/// Sequence packing in the scalar reference: attention and RoPE over a packed sequence equal the same ops run on
/// each example alone (its own sequence, positions from 0), for every output and gradient. This is what makes a
/// packed training step the unpacked one: no example sees another, and none sees where it was placed.
/// </summary>
public class PackedReferenceTests
{
    [Theory]
    [InlineData(1, 40, 4, 2, 8)]
    [InlineData(2, 150, 3, 1, 16)]
    [InlineData(1, 7, 2, 2, 4)]
    public void A_packed_sequence_is_its_examples_run_alone(int batch, int seqLen, int heads, int kvHeads, int headDim)
    {
        int[] starts = PackedStarts(batch, seqLen, seed: seqLen + batch);
        int qCount = batch * seqLen * heads * headDim, kvCount = batch * seqLen * kvHeads * headDim;
        double[] q = Uniform(qCount, 1, 2), k = Uniform(kvCount, 2, 2), v = Uniform(kvCount, 3), dOut = Uniform(qCount, 4);
        double[] invFreq = [.. Enumerable.Range(0, headDim / 2).Select(j => Math.Pow(10000, -2.0 * j / headDim))];

        // Packed: RoPE on q and k, attention forward and backward, the RoPE backward on dq and dk.
        double[] pq = (double[])q.Clone(), pk = (double[])k.Clone();
        Reference.Rope<double>(pq, invFreq, batch, seqLen, heads, headDim, RopeLayout.Half, false, starts);
        Reference.Rope<double>(pk, invFreq, batch, seqLen, kvHeads, headDim, RopeLayout.Half, false, starts);
        double[] o = new double[qCount], lse = new double[batch * heads * seqLen], dq = new double[qCount], dk = new double[kvCount], dv = new double[kvCount];
        Reference.AttentionForward<double>(pq, pk, v, o, lse, batch, seqLen, heads, kvHeads, headDim, starts);
        Reference.AttentionBackward<double>(dOut, pq, pk, v, o, lse, dq, dk, dv, batch, seqLen, heads, kvHeads, headDim, starts);
        Reference.Rope<double>(dq, invFreq, batch, seqLen, heads, headDim, RopeLayout.Half, true, starts);
        Reference.Rope<double>(dk, invFreq, batch, seqLen, kvHeads, headDim, RopeLayout.Half, true, starts);

        int examples = 0;
        for (int b = 0; b < batch; b++)
            for (int t0 = 0; t0 < seqLen;)
            {
                int length = 1;
                while (t0 + length < seqLen && starts[b * seqLen + t0 + length] == t0) length++;
                examples++;
                // The example alone: rows [t0, t0 + length) of sequence b as a batch of one.
                double[] Rows(double[] x, int width) => x.AsSpan((b * seqLen + t0) * width, length * width).ToArray();
                double[] aq = Rows(q, heads * headDim), ak = Rows(k, kvHeads * headDim), av = Rows(v, kvHeads * headDim), ad = Rows(dOut, heads * headDim);
                Reference.Rope<double>(aq, invFreq, 1, length, heads, headDim, RopeLayout.Half, false);
                Reference.Rope<double>(ak, invFreq, 1, length, kvHeads, headDim, RopeLayout.Half, false);
                double[] ao = new double[aq.Length], alse = new double[heads * length], adq = new double[aq.Length], adk = new double[ak.Length], adv = new double[ak.Length];
                Reference.AttentionForward<double>(aq, ak, av, ao, alse, 1, length, heads, kvHeads, headDim);
                Reference.AttentionBackward<double>(ad, aq, ak, av, ao, alse, adq, adk, adv, 1, length, heads, kvHeads, headDim);
                Reference.Rope<double>(adq, invFreq, 1, length, heads, headDim, RopeLayout.Half, true);
                Reference.Rope<double>(adk, invFreq, 1, length, kvHeads, headDim, RopeLayout.Half, true);
                string at = $"example at b={b}, t={t0}, {length} tokens";
                Near("output " + at, ao, Rows(o, heads * headDim), 1e-12);
                Near("dq " + at, adq, Rows(dq, heads * headDim), 1e-12);
                Near("dk " + at, adk, Rows(dk, kvHeads * headDim), 1e-12);
                Near("dv " + at, adv, Rows(dv, kvHeads * headDim), 1e-12);
                for (int h = 0; h < heads; h++)
                    Near("logSumExp " + at, alse.AsSpan(h * length, length).ToArray(), lse.AsSpan((b * heads + h) * seqLen + t0, length).ToArray(), 1e-12);
                t0 += length;
            }
        Assert.True(examples > batch, "the packed layout must hold several examples per sequence");
    }

    [Fact]
    public void Without_segment_starts_every_row_starts_at_zero()
    {
        // One example per sequence written as starts of 0 gives what no starts give.
        int batch = 2, seqLen = 9, heads = 2, kvHeads = 1, headDim = 4;
        double[] q = Uniform(batch * seqLen * heads * headDim, 1), k = Uniform(batch * seqLen * kvHeads * headDim, 2), v = Uniform(k.Length, 3);
        double[] a = new double[q.Length], b = new double[q.Length], la = new double[batch * heads * seqLen], lb = new double[la.Length];
        Reference.AttentionForward<double>(q, k, v, a, la, batch, seqLen, heads, kvHeads, headDim);
        Reference.AttentionForward<double>(q, k, v, b, lb, batch, seqLen, heads, kvHeads, headDim, new int[batch * seqLen]);
        Assert.Equal(a, b);
        Assert.Equal(la, lb);
    }

    private static void Near(string name, double[] expected, double[] actual, double tolerance)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            if (!(Math.Abs(actual[i] - expected[i]) <= tolerance * Math.Max(1, Math.Abs(expected[i]))))
                Assert.Fail($"{name}[{i}]: {actual[i]:R}, expected {expected[i]:R}");
    }
}
