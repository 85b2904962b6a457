using System.Numerics;

namespace EdgeTune.Models.Reference;

/// <summary>How rotary pairs are formed inside one head of D values.</summary>
public enum RopeStyle
{
    /// <summary>Hugging Face rotate_half (and llama.cpp's NeoX rope): pair (j, j + D/2).</summary>
    Half,
    /// <summary>llama.cpp's "normal" rope on permuted Q/K rows: pair (2j, 2j + 1).</summary>
    Interleaved,
}

/// <summary>
/// The ops of the llama-family forward, each a small scalar reference over row-major buffers. These are the
/// specification later kernels are tested against; only the matmul is parallel (over rows), for test speed.
/// </summary>
public static class Ops
{
    // table: (V,C)  tokens: (T)  out: (T,C)
    public static void Embedding<T>(T[] table, ReadOnlySpan<int> tokens, int c, Span<T> output)
    {
        int vocab = table.Length / c;
        for (int t = 0; t < tokens.Length; t++)
        {
            int id = tokens[t];
            if ((uint)id >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {id} at position {t} is outside the vocabulary of {vocab}");
            table.AsSpan(id * c, c).CopyTo(output.Slice(t * c, c));
        }
    }

    // x: (T,C)  w: (C)  out: (T,C);  out = x / sqrt(mean(x²) + eps) · w   (transformers' LlamaRMSNorm)
    public static void RmsNorm<T>(ReadOnlySpan<T> x, T[] w, T eps, Span<T> output) where T : IFloatingPointIeee754<T>
    {
        int c = w.Length;
        for (int t = 0; t < x.Length / c; t++)
        {
            var row = x.Slice(t * c, c);
            T sumSq = T.Zero;
            for (int i = 0; i < c; i++) sumSq += row[i] * row[i];
            T scale = T.One / T.Sqrt(sumSq / T.CreateChecked(c) + eps);
            for (int i = 0; i < c; i++) output[t * c + i] = row[i] * scale * w[i];
        }
    }

    // x: (T,C)  w: (OC,C) as PyTorch stores nn.Linear  b: (OC) or null  out: (T,OC);  out = x·wᵀ + b
    public static void MatMul<T>(T[] x, T[] w, T[]? b, int c, T[] output) where T : IFloatingPointIeee754<T>
    {
        int oc = w.Length / c, rows = x.Length / c;
        ForRows(rows, (long)oc * c, t =>
        {
            var xt = x.AsSpan(t * c, c);
            for (int o = 0; o < oc; o++)
            {
                T sum = Dot<T>(xt, w.AsSpan(o * c, c));
                output[t * oc + o] = b is null ? sum : sum + b[o];
            }
        });
    }

    // x: (T, H·D), in place;  invFreq: (D/2);  position of row t is t.
    // Each pair (a, b) rotates by angle t·invFreq[j]: (a, b) → (a·cos − b·sin, a·sin + b·cos).
    public static void Rope<T>(Span<T> x, int heads, int headDim, double[] invFreq, RopeStyle style) where T : IFloatingPointIeee754<T>
    {
        int half = headDim / 2, width = heads * headDim;
        for (int t = 0; t < x.Length / width; t++)
            for (int j = 0; j < half; j++)
            {
                double angle = t * invFreq[j];
                T cos = T.CreateChecked(Math.Cos(angle)), sin = T.CreateChecked(Math.Sin(angle));
                for (int h = 0; h < heads; h++)
                {
                    int baseIndex = t * width + h * headDim;
                    int ia = baseIndex + (style == RopeStyle.Half ? j : 2 * j);
                    int ib = baseIndex + (style == RopeStyle.Half ? j + half : 2 * j + 1);
                    T a = x[ia], b = x[ib];
                    x[ia] = a * cos - b * sin;
                    x[ib] = a * sin + b * cos;
                }
            }
    }

    // Rotary inverse frequencies: invFreq[j] = theta^(−2j/D) / factor[j] (factor: llama-3 rope_freqs, else 1).
    public static double[] RopeInverseFrequencies(double theta, int headDim, float[]? factors)
    {
        var inv = new double[headDim / 2];
        for (int j = 0; j < inv.Length; j++) inv[j] = Math.Pow(theta, -2.0 * j / headDim) / (factors?[j] ?? 1f);
        return inv;
    }

    // q: (T, H·D)  k, v: (T, KV·D)  out: (T, H·D). Causal; query head h reads key/value head h / (H/KV) (GQA).
    // out[t,h] = Σ_{s≤t} softmax_s(q[t,h]·k[s,g] / √D) · v[s,g]
    public static void CausalAttention<T>(T[] q, T[] k, T[] v, int heads, int kvHeads, int headDim, T[] output) where T : IFloatingPointIeee754<T>
    {
        int qw = heads * headDim, kw = kvHeads * headDim, steps = q.Length / qw, group = heads / kvHeads;
        T scale = T.One / T.Sqrt(T.CreateChecked(headDim));
        ForRows(steps * heads, (long)steps * headDim, th =>
        {
            int t = th / heads, h = th % heads, g = h / group;
            var qi = q.AsSpan(t * qw + h * headDim, headDim);
            var scores = new T[t + 1];
            T max = T.NegativeInfinity;
            for (int s = 0; s <= t; s++)
            {
                var ks = k.AsSpan(s * kw + g * headDim, headDim);
                T dot = T.Zero;
                for (int d = 0; d < headDim; d++) dot += qi[d] * ks[d];
                scores[s] = dot * scale;
                max = T.Max(max, scores[s]);
            }
            T sum = T.Zero;
            for (int s = 0; s <= t; s++) { scores[s] = T.Exp(scores[s] - max); sum += scores[s]; }
            var o = output.AsSpan(t * qw + h * headDim, headDim);
            o.Clear();
            for (int s = 0; s <= t; s++)
            {
                T p = scores[s] / sum;
                var vs = v.AsSpan(s * kw + g * headDim, headDim);
                for (int d = 0; d < headDim; d++) o[d] += p * vs[d];
            }
        });
    }

    // gate, up: (T,F)  out: (T,F);  out = silu(gate) · up,  silu(x) = x / (1 + e^−x)
    public static void SwiGlu<T>(ReadOnlySpan<T> gate, ReadOnlySpan<T> up, Span<T> output) where T : IFloatingPointIeee754<T>
    {
        for (int i = 0; i < gate.Length; i++) output[i] = gate[i] / (T.One + T.Exp(-gate[i])) * up[i];
    }

    /// <summary>Runs body over rows, in parallel only when there is enough work to pay for the threads.</summary>
    private static void ForRows(int rows, long workPerRow, Action<int> body)
    {
        if (rows * workPerRow < 1 << 18)
            for (int i = 0; i < rows; i++) body(i);
        else
            Parallel.For(0, rows, body);
    }

    // a, b: (N);  Σ a[i]·b[i]. The scalar reference is DotScalar; this one sums Vector<T>-wide lanes first
    // (a different rounding order, well inside the tests' tolerances), which keeps the test suite quick.
    public static T Dot<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b) where T : IFloatingPointIeee754<T>
    {
        if (!Vector<T>.IsSupported || a.Length < Vector<T>.Count) return DotScalar(a, b);
        var lanes = Vector<T>.Zero;
        int i = 0;
        for (; i <= a.Length - Vector<T>.Count; i += Vector<T>.Count)
            lanes += new Vector<T>(a[i..]) * new Vector<T>(b[i..]);
        T sum = Vector.Sum(lanes);
        for (; i < a.Length; i++) sum += a[i] * b[i];
        return sum;
    }

    public static T DotScalar<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b) where T : IFloatingPointIeee754<T>
    {
        T sum = T.Zero;
        for (int i = 0; i < a.Length; i++) sum += a[i] * b[i];
        return sum;
    }

    // x += y, elementwise (the residual connections)
    public static void AddInPlace<T>(Span<T> x, ReadOnlySpan<T> y) where T : IFloatingPointIeee754<T>
    {
        for (int i = 0; i < x.Length; i++) x[i] += y[i];
    }
}
