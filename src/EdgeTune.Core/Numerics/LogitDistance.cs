namespace EdgeTune.Core.Numerics;

/// <summary>
/// How far one model's logits are from another's, in double: the parity checks' relative L2 and the KL of the
/// softmaxes (the demo's ONNX check, the export and model parity tests).
/// </summary>
public static class LogitDistance
{
    /// <summary>‖a − b‖₂ / ‖b‖₂, computed in double.</summary>
    public static double RelativeL2(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length) throw new EdgeTuneException($"{a.Length} values against {b.Length}: nothing to compare");
        double diff = 0, norm = 0;
        for (int i = 0; i < a.Length; i++)
        {
            double d = (double)a[i] - b[i];
            diff += d * d;
            norm += (double)b[i] * b[i];
        }
        return Math.Sqrt(diff / norm);
    }

    /// <summary>Mean over positions of KL(p ‖ q) between the softmaxes of two (T, V) logit arrays.</summary>
    public static double MeanKl(float[] p, float[] q, int vocab)
    {
        double total = 0;
        int rows = p.Length / vocab;
        for (int t = 0; t < rows; t++)
        {
            var lp = LogSoftmax(p.AsSpan(t * vocab, vocab));
            var lq = LogSoftmax(q.AsSpan(t * vocab, vocab));
            for (int i = 0; i < vocab; i++) total += Math.Exp(lp[i]) * (lp[i] - lq[i]);
        }
        return total / rows;
    }

    private static double[] LogSoftmax(ReadOnlySpan<float> x)
    {
        double max = double.NegativeInfinity;
        foreach (float v in x) max = Math.Max(max, v);
        double sum = 0;
        foreach (float v in x) sum += Math.Exp(v - max);
        double log = max + Math.Log(sum);
        var result = new double[x.Length];
        for (int i = 0; i < x.Length; i++) result[i] = x[i] - log;
        return result;
    }
}
