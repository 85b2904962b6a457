using EdgeTune.Kernels;

namespace EdgeTune.Training.Tests;

/// <summary>Plain loops over float arrays in double accumulators: a second, independent backend for the graph tests.</summary>
internal sealed class NaiveBackend : IComputeBackend
{
    private sealed class Buf(float[] data, long offset, long length) : DeviceBuffer(length)
    {
        public readonly float[] Data = data;
        public readonly long Offset = offset;
        public Span<float> Span => Data.AsSpan((int)Offset, (int)Length);
        public override DeviceBuffer Slice(long offset, long length) => new Buf(Data, Offset + offset, length);
    }

    private sealed class Frozen(FrozenFormat f, int rows, int cols, float[] w, long bytes) : FrozenMatrix(f, rows, cols, bytes)
    {
        public readonly float[] W = w;
    }

    private static Span<float> S(DeviceBuffer b) => ((Buf)b).Span;

    public string Name => "naive";
    public DeviceBuffer Allocate(long length) => new Buf(new float[length], 0, length);
    public void Upload(ReadOnlySpan<float> source, DeviceBuffer target) => source.CopyTo(S(target));
    public void Download(DeviceBuffer source, Span<float> target) => S(source).CopyTo(target);
    public void Zero(DeviceBuffer buffer) => S(buffer).Clear();
    public void Copy(DeviceBuffer source, DeviceBuffer target) => S(source).CopyTo(S(target));
    public void AddScaled(DeviceBuffer acc, DeviceBuffer x, float scale) { var a = S(acc); var b = S(x); for (int i = 0; i < a.Length; i++) a[i] += scale * b[i]; }
    public void Scale(DeviceBuffer buffer, float scale) { var a = S(buffer); for (int i = 0; i < a.Length; i++) a[i] *= scale; }
    public double SumOfSquares(DeviceBuffer buffer) { double s = 0; foreach (var x in S(buffer)) s += (double)x * x; return s; }

    public FrozenMatrix UploadFrozen(FrozenFormat format, ReadOnlySpan<byte> data, int rows, int cols)
    {
        var w = new float[(long)rows * cols];
        for (int r = 0; r < rows; r++) FrozenRows.DequantizeRow(format, data, rows, r, cols, w.AsSpan(r * cols, cols));
        return new Frozen(format, rows, cols, w, data.Length);
    }

    public void MatMul(DeviceBuffer x, DeviceBuffer w, DeviceBuffer y, int n, int k, int m, bool accumulate)
    {
        var X = S(x); var W = S(w); var Y = S(y);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < m; j++)
            {
                double s = 0;
                for (int t = 0; t < k; t++) s += (double)X[i * k + t] * W[j * k + t];
                Y[i * m + j] = (float)((accumulate ? Y[i * m + j] : 0) + s);
            }
    }

    public void MatMulBackwardInput(DeviceBuffer dy, DeviceBuffer w, DeviceBuffer dx, int n, int k, int m, bool accumulate)
    {
        var D = S(dy); var W = S(w); var X = S(dx);
        for (int i = 0; i < n; i++)
            for (int t = 0; t < k; t++)
            {
                double s = 0;
                for (int j = 0; j < m; j++) s += (double)D[i * m + j] * W[j * k + t];
                X[i * k + t] = (float)((accumulate ? X[i * k + t] : 0) + s);
            }
    }

    public void MatMulBackwardWeight(DeviceBuffer dy, DeviceBuffer x, DeviceBuffer dw, int n, int k, int m, bool accumulate)
    {
        var D = S(dy); var X = S(x); var G = S(dw);
        for (int j = 0; j < m; j++)
            for (int t = 0; t < k; t++)
            {
                double s = 0;
                for (int i = 0; i < n; i++) s += (double)D[i * m + j] * X[i * k + t];
                G[j * k + t] = (float)((accumulate ? G[j * k + t] : 0) + s);
            }
    }

    private DeviceBuffer Wrap(Frozen f) => new Buf(f.W, 0, f.W.Length);
    public void FrozenMatMul(DeviceBuffer x, FrozenMatrix w, DeviceBuffer y, int n, bool accumulate) => MatMul(x, Wrap((Frozen)w), y, n, w.Cols, w.Rows, accumulate);
    public void FrozenMatMulBackwardInput(DeviceBuffer dy, FrozenMatrix w, DeviceBuffer dx, int n, bool accumulate) => MatMulBackwardInput(dy, Wrap((Frozen)w), dx, n, w.Cols, w.Rows, accumulate);

    public void EmbeddingForward(ReadOnlySpan<int> tokens, DeviceBuffer table, DeviceBuffer output, int c)
    {
        var T = S(table); var O = S(output);
        for (int i = 0; i < tokens.Length; i++) T.Slice(tokens[i] * c, c).CopyTo(O.Slice(i * c, c));
    }

    public void EmbeddingBackward(ReadOnlySpan<int> tokens, DeviceBuffer dOutput, DeviceBuffer dTable, int c)
    {
        var D = S(dOutput); var T = S(dTable);
        for (int i = 0; i < tokens.Length; i++) for (int j = 0; j < c; j++) T[tokens[i] * c + j] += D[i * c + j];
    }

    public void RmsNormForward(DeviceBuffer x, DeviceBuffer weight, DeviceBuffer y, DeviceBuffer rstd, int n, int c, float eps)
    {
        var X = S(x); var W = S(weight); var Y = S(y); var R = S(rstd);
        for (int i = 0; i < n; i++)
        {
            double ss = 0;
            for (int j = 0; j < c; j++) ss += (double)X[i * c + j] * X[i * c + j];
            float r = (float)(1 / Math.Sqrt(ss / c + eps));
            R[i] = r;
            for (int j = 0; j < c; j++) Y[i * c + j] = X[i * c + j] * r * W[j];
        }
    }

    public void RmsNormBackward(DeviceBuffer dy, DeviceBuffer x, DeviceBuffer weight, DeviceBuffer rstd, DeviceBuffer dx, DeviceBuffer? dWeight, int n, int c)
    {
        var D = S(dy); var X = S(x); var W = S(weight); var R = S(rstd); var DX = S(dx);
        for (int i = 0; i < n; i++)
        {
            double dot = 0;
            for (int j = 0; j < c; j++) dot += (double)D[i * c + j] * W[j] * X[i * c + j];
            double r = R[i];
            for (int j = 0; j < c; j++)
                DX[i * c + j] += (float)(r * D[i * c + j] * W[j] - r * r * r * X[i * c + j] * dot / c);
            if (dWeight is not null)
            {
                var DW = S(dWeight);
                for (int j = 0; j < c; j++) DW[j] += (float)(D[i * c + j] * X[i * c + j] * r);
            }
        }
    }

    /// <summary>The first key of row (b, t): the start of its packed example, or 0.</summary>
    private static int First(int[]? starts, int b, int seqLen, int t) => starts is null ? 0 : starts[b * seqLen + t];

    public void Rope(DeviceBuffer x, DeviceBuffer invFreq, int batch, int seqLen, int heads, int headDim, RopeLayout layout, bool inverse, ReadOnlySpan<int> segmentStarts = default)
    {
        var X = S(x); var F = S(invFreq);
        var st = segmentStarts.IsEmpty ? null : segmentStarts.ToArray();
        int half = headDim / 2;
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < seqLen; t++)
                for (int h = 0; h < heads; h++)
                    for (int j = 0; j < half; j++)
                    {
                        double angle = (t - First(st, b, seqLen, t)) * (double)F[j] * (inverse ? -1 : 1);
                        double cos = Math.Cos(angle), sin = Math.Sin(angle);
                        int baseIndex = ((b * seqLen + t) * heads + h) * headDim;
                        int ia = baseIndex + (layout == RopeLayout.Half ? j : 2 * j), ib = baseIndex + (layout == RopeLayout.Half ? j + half : 2 * j + 1);
                        double a = X[ia], c = X[ib];
                        X[ia] = (float)(a * cos - c * sin);
                        X[ib] = (float)(a * sin + c * cos);
                    }
    }

    public void AttentionForward(DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, DeviceBuffer output, DeviceBuffer logSumExp, int batch, int seqLen, int heads, int kvHeads, int headDim, ReadOnlySpan<int> segmentStarts = default)
    {
        var Q = S(q); var K = S(k); var V = S(v); var O = S(output); var L = S(logSumExp);
        var st = segmentStarts.IsEmpty ? null : segmentStarts.ToArray();
        int group = heads / kvHeads; double scale = 1 / Math.Sqrt(headDim);
        var p = new double[seqLen];
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
                for (int t = 0; t < seqLen; t++)
                {
                    int qi = ((b * seqLen + t) * heads + h) * headDim, g = h / group;
                    double max = double.NegativeInfinity;
                    for (int s = First(st, b, seqLen, t); s <= t; s++)
                    {
                        int ki = ((b * seqLen + s) * kvHeads + g) * headDim;
                        double dot = 0;
                        for (int d = 0; d < headDim; d++) dot += (double)Q[qi + d] * K[ki + d];
                        p[s] = dot * scale;
                        max = Math.Max(max, p[s]);
                    }
                    double z = 0;
                    for (int s = First(st, b, seqLen, t); s <= t; s++) z += Math.Exp(p[s] - max);
                    L[(b * heads + h) * seqLen + t] = (float)(max + Math.Log(z));
                    for (int d = 0; d < headDim; d++)
                    {
                        double acc = 0;
                        for (int s = First(st, b, seqLen, t); s <= t; s++) acc += Math.Exp(p[s] - max) / z * V[((b * seqLen + s) * kvHeads + g) * headDim + d];
                        O[qi + d] = (float)acc;
                    }
                }
    }

    public void AttentionBackward(DeviceBuffer dOutput, DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, DeviceBuffer output, DeviceBuffer logSumExp, DeviceBuffer dq, DeviceBuffer dk, DeviceBuffer dv, int batch, int seqLen, int heads, int kvHeads, int headDim, ReadOnlySpan<int> segmentStarts = default)
    {
        var st = segmentStarts.IsEmpty ? null : segmentStarts.ToArray();
        var DO = S(dOutput); var Q = S(q); var K = S(k); var V = S(v); var O = S(output); var L = S(logSumExp);
        var DQ = S(dq); var DK = S(dk); var DV = S(dv);
        DQ.Clear(); DK.Clear(); DV.Clear();
        int group = heads / kvHeads; double scale = 1 / Math.Sqrt(headDim);
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
                for (int t = 0; t < seqLen; t++)
                {
                    int qi = ((b * seqLen + t) * heads + h) * headDim, g = h / group;
                    double lse = L[(b * heads + h) * seqLen + t];
                    double delta = 0;
                    for (int d = 0; d < headDim; d++) delta += (double)DO[qi + d] * O[qi + d];
                    for (int s = First(st, b, seqLen, t); s <= t; s++)
                    {
                        int ki = ((b * seqLen + s) * kvHeads + g) * headDim;
                        double dot = 0, dp = 0;
                        for (int d = 0; d < headDim; d++) { dot += (double)Q[qi + d] * K[ki + d]; dp += (double)DO[qi + d] * V[ki + d]; }
                        double prob = Math.Exp(dot * scale - lse);
                        double ds = prob * (dp - delta) * scale;
                        for (int d = 0; d < headDim; d++)
                        {
                            DV[ki + d] += (float)(prob * DO[qi + d]);
                            DQ[qi + d] += (float)(ds * K[ki + d]);
                            DK[ki + d] += (float)(ds * Q[qi + d]);
                        }
                    }
                }
    }

    public void SwiGluForward(DeviceBuffer gate, DeviceBuffer up, DeviceBuffer output, long count)
    {
        var G = S(gate); var U = S(up); var O = S(output);
        for (int i = 0; i < count; i++) { double g = G[i]; O[i] = (float)(g / (1 + Math.Exp(-g)) * U[i]); }
    }

    public void SwiGluBackward(DeviceBuffer dOutput, DeviceBuffer gate, DeviceBuffer up, DeviceBuffer dGate, DeviceBuffer dUp, long count)
    {
        var D = S(dOutput); var G = S(gate); var U = S(up); var DG = S(dGate); var DU = S(dUp);
        for (int i = 0; i < count; i++)
        {
            double g = G[i], u = U[i], sig = 1 / (1 + Math.Exp(-g)), d = D[i];
            DG[i] = (float)(d * u * sig * (1 + g * (1 - sig)));
            DU[i] = (float)(d * g * sig);
        }
    }

    public double CrossEntropy(DeviceBuffer hidden, DeviceBuffer head, ReadOnlySpan<int> targets, int n, int c, int vocab, float gradScale, DeviceBuffer? dHidden, DeviceBuffer? dHead)
    {
        var H = S(hidden); var W = S(head);
        double total = 0;
        var logits = new double[vocab];
        if (dHidden is not null) S(dHidden).Clear();
        for (int i = 0; i < n; i++)
        {
            if (targets[i] < 0) continue;
            double max = double.NegativeInfinity;
            for (int v = 0; v < vocab; v++)
            {
                double s = 0;
                for (int j = 0; j < c; j++) s += (double)H[i * c + j] * W[v * c + j];
                logits[v] = s; max = Math.Max(max, s);
            }
            double z = 0;
            for (int v = 0; v < vocab; v++) z += Math.Exp(logits[v] - max);
            total += max + Math.Log(z) - logits[targets[i]];
            if (dHidden is null) continue;
            var DH = S(dHidden);
            for (int v = 0; v < vocab; v++)
            {
                double g = (Math.Exp(logits[v] - max) / z - (v == targets[i] ? 1 : 0)) * gradScale;
                for (int j = 0; j < c; j++) DH[i * c + j] += (float)(g * W[v * c + j]);
                if (dHead is not null) { var DW = S(dHead); for (int j = 0; j < c; j++) DW[v * c + j] += (float)(g * H[i * c + j]); }
            }
        }
        return total;
    }

    public DistillLossSums Distill(DeviceBuffer hidden, DeviceBuffer head, ReadOnlySpan<int> targets, ReadOnlySpan<int> teacherIds, ReadOnlySpan<float> teacherLogProbs,
        DistillSettings settings, int n, int c, int vocab, float gradScale, DeviceBuffer? dHidden, DeviceBuffer? dHead)
    {
        var dh = dHidden is null ? [] : new double[(long)n * c];
        var dw = dHead is null ? [] : Array.ConvertAll(S(dHead).ToArray(), x => (double)x);
        var sums = Reference.Distill<double>(Array.ConvertAll(S(hidden).ToArray(), x => (double)x), Array.ConvertAll(S(head).ToArray(), x => (double)x),
            targets, teacherIds, Array.ConvertAll(teacherLogProbs.ToArray(), x => (double)x), settings, n, c, vocab, gradScale, dh, dw);
        if (dHidden is not null) for (int i = 0; i < dh.Length; i++) S(dHidden)[i] = (float)dh[i];
        if (dHead is not null) for (int i = 0; i < dw.Length; i++) S(dHead)[i] = (float)dw[i];
        return sums;
    }

    public void AdamW(DeviceBuffer parameters, DeviceBuffer gradients, DeviceBuffer m, DeviceBuffer v, float learningRate, float beta1, float beta2, float epsilon, float weightDecay, int step)
    {
        var P = S(parameters); var G = S(gradients); var M = S(m); var V = S(v);
        double c1 = 1 - Math.Pow(beta1, step), c2 = 1 - Math.Pow(beta2, step);
        for (int i = 0; i < P.Length; i++)
        {
            M[i] = beta1 * M[i] + (1 - beta1) * G[i];
            V[i] = beta2 * V[i] + (1 - beta2) * G[i] * G[i];
            P[i] -= (float)(learningRate * (M[i] / c1 / (Math.Sqrt(V[i] / c2) + epsilon) + weightDecay * P[i]));
        }
    }

    public void Dropout(DeviceBuffer x, DeviceBuffer y, long count, float probability, ulong seed)
    {
        var X = S(x); var Y = S(y);
        for (int i = 0; i < count; i++) Y[i] = DropoutMask.Keep(seed, i, probability) ? X[i] / (1 - probability) : 0;
    }

    public void Dispose() { }
}
