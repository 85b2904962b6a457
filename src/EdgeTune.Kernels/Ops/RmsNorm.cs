using System.Numerics;

namespace EdgeTune.Kernels;

// RMSNorm (transformers' LlamaRMSNorm), row by row.
//   forward   x, y: (N,C)  weight: (C)  rstd: (N)
//             rstd[n] = 1/√(mean_c x[n,c]² + eps);  y[n,c] = x[n,c]·rstd[n]·weight[c]
//   backward  dy, x, dx: (N,C)  dWeight: (C) (empty = not wanted); both accumulate
//             dWeight[c] += dy[n,c]·x[n,c]·rstd[n]
//             dx[n,c]    += rstd·weight[c]·dy[n,c] − rstd³/C · x[n,c] · Σ_j dy[n,j]·weight[j]·x[n,j]
public static partial class Reference
{
    public static void RmsNormForward<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> weight, Span<T> y, Span<T> rstd, int n, int c, T eps)
        where T : IFloatingPointIeee754<T>
    {
        CheckRmsNorm(x.Length, weight.Length, y.Length, rstd.Length, n, c);
        for (int row = 0; row < n; row++)
        {
            var xr = x.Slice(row * c, c);
            T sumSq = T.Zero;
            for (int i = 0; i < c; i++) sumSq += xr[i] * xr[i];
            T r = T.One / T.Sqrt(sumSq / T.CreateChecked(c) + eps);
            rstd[row] = r;
            for (int i = 0; i < c; i++) y[row * c + i] = xr[i] * r * weight[i];
        }
    }

    public static void RmsNormBackward<T>(ReadOnlySpan<T> dy, ReadOnlySpan<T> x, ReadOnlySpan<T> weight, ReadOnlySpan<T> rstd,
        Span<T> dx, Span<T> dWeight, int n, int c) where T : IFloatingPointIeee754<T>
    {
        CheckRmsNorm(x.Length, weight.Length, dy.Length, rstd.Length, n, c);
        Shapes.Require(dx.Length, (long)n * c, nameof(dx), $"(N={n},C={c})");
        if (!dWeight.IsEmpty) Shapes.Require(dWeight.Length, c, nameof(dWeight), $"(C={c})");
        for (int row = 0; row < n; row++)
        {
            T r = rstd[row];
            T dot = T.Zero;
            for (int i = 0; i < c; i++) dot += dy[row * c + i] * weight[i] * x[row * c + i];
            T coefficient = r * r * r * dot / T.CreateChecked(c);
            for (int i = 0; i < c; i++)
            {
                int at = row * c + i;
                dx[at] += r * weight[i] * dy[at] - coefficient * x[at];
                if (!dWeight.IsEmpty) dWeight[i] += dy[at] * x[at] * r;
            }
        }
    }

    internal static void CheckRmsNorm(long x, long weight, long y, long rstd, int n, int c)
    {
        Shapes.NonNegative(n, nameof(n));
        Shapes.Positive(c, nameof(c));
        Shapes.Require(x, (long)n * c, nameof(x), $"(N={n},C={c})");
        Shapes.Require(weight, c, nameof(weight), $"(C={c})");
        Shapes.Require(y, (long)n * c, "y", $"(N={n},C={c})");
        Shapes.Require(rstd, n, nameof(rstd), $"(N={n})");
    }
}
