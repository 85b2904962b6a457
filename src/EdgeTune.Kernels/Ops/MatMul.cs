using System.Numerics;

namespace EdgeTune.Kernels;

// The linear layer without bias, PyTorch's layout: w is (out features, in features).
//   forward          x: (N,K)  w: (M,K)  y: (N,M)     y[n,m]  (+)= Σ_k x[n,k]·w[m,k]
//   backward input   dy: (N,M) w: (M,K)  dx: (N,K)    dx[n,k] (+)= Σ_m dy[n,m]·w[m,k]
//   backward weight  dy: (N,M) x: (N,K)  dw: (M,K)    dw[m,k] (+)= Σ_n dy[n,m]·x[n,k]
public static partial class Reference
{
    public static void MatMul<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> w, Span<T> y, int n, int k, int m, bool accumulate)
        where T : IFloatingPointIeee754<T>
    {
        CheckMatMul(x.Length, w.Length, y.Length, n, k, m, "x", "w", "y");
        for (int row = 0; row < n; row++)
            for (int o = 0; o < m; o++)
            {
                T sum = T.Zero;
                for (int i = 0; i < k; i++) sum += x[row * k + i] * w[o * k + i];
                y[row * m + o] = accumulate ? y[row * m + o] + sum : sum;
            }
    }

    public static void MatMulBackwardInput<T>(ReadOnlySpan<T> dy, ReadOnlySpan<T> w, Span<T> dx, int n, int k, int m, bool accumulate)
        where T : IFloatingPointIeee754<T>
    {
        Shapes.Require(dy.Length, (long)n * m, nameof(dy), $"(N={n},M={m})");
        Shapes.Require(w.Length, (long)m * k, nameof(w), $"(M={m},K={k})");
        Shapes.Require(dx.Length, (long)n * k, nameof(dx), $"(N={n},K={k})");
        for (int row = 0; row < n; row++)
            for (int i = 0; i < k; i++)
            {
                T sum = T.Zero;
                for (int o = 0; o < m; o++) sum += dy[row * m + o] * w[o * k + i];
                dx[row * k + i] = accumulate ? dx[row * k + i] + sum : sum;
            }
    }

    public static void MatMulBackwardWeight<T>(ReadOnlySpan<T> dy, ReadOnlySpan<T> x, Span<T> dw, int n, int k, int m, bool accumulate)
        where T : IFloatingPointIeee754<T>
    {
        Shapes.Require(dy.Length, (long)n * m, nameof(dy), $"(N={n},M={m})");
        Shapes.Require(x.Length, (long)n * k, nameof(x), $"(N={n},K={k})");
        Shapes.Require(dw.Length, (long)m * k, nameof(dw), $"(M={m},K={k})");
        for (int o = 0; o < m; o++)
            for (int i = 0; i < k; i++)
            {
                T sum = T.Zero;
                for (int row = 0; row < n; row++) sum += dy[row * m + o] * x[row * k + i];
                dw[o * k + i] = accumulate ? dw[o * k + i] + sum : sum;
            }
    }

    internal static void CheckMatMul(long x, long w, long y, int n, int k, int m, string xName, string wName, string yName)
    {
        Shapes.NonNegative(n, nameof(n));
        Shapes.Positive(k, nameof(k));
        Shapes.Positive(m, nameof(m));
        Shapes.Require(x, (long)n * k, xName, $"(N={n},K={k})");
        Shapes.Require(w, (long)m * k, wName, $"(M={m},K={k})");
        Shapes.Require(y, (long)n * m, yName, $"(N={n},M={m})");
    }
}
