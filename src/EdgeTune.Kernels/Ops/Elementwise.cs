using System.Numerics;

namespace EdgeTune.Kernels;

// The small vector ops of the training loop (residual adds, gradient scaling and norms), all over (count).
//   AddScaled     accumulator += scale·x
//   Scale         buffer ← scale·buffer
//   SumOfSquares  Σ x², accumulated in double
public static partial class Reference
{
    public static void AddScaled<T>(Span<T> accumulator, ReadOnlySpan<T> x, T scale) where T : IFloatingPointIeee754<T>
    {
        Shapes.Require(x.Length, accumulator.Length, nameof(x), $"(count={accumulator.Length})");
        for (int i = 0; i < accumulator.Length; i++) accumulator[i] += scale * x[i];
    }

    public static void Scale<T>(Span<T> buffer, T scale) where T : IFloatingPointIeee754<T>
    {
        for (int i = 0; i < buffer.Length; i++) buffer[i] *= scale;
    }

    public static double SumOfSquares<T>(ReadOnlySpan<T> buffer) where T : IFloatingPointIeee754<T>
    {
        double sum = 0;
        for (int i = 0; i < buffer.Length; i++)
        {
            double value = double.CreateChecked(buffer[i]);
            sum += value * value;
        }
        return sum;
    }
}
