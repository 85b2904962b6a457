using System.Numerics;

namespace EdgeTune.Kernels;

// One AdamW step (Loshchilov and Hutter; PyTorch's torch.optim.AdamW), step ≥ 1, over count parameters:
//   m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²
//   m̂ = m/(1−β1^step);   v̂ = v/(1−β2^step)
//   p −= lr·(m̂/(√v̂ + ε) + wd·p)       (decoupled decay on the pre-step p)
public static partial class Reference
{
    public static void AdamW<T>(Span<T> parameters, ReadOnlySpan<T> gradients, Span<T> m, Span<T> v,
        T learningRate, T beta1, T beta2, T epsilon, T weightDecay, int step) where T : IFloatingPointIeee754<T>
    {
        CheckAdamW(parameters.Length, gradients.Length, m.Length, v.Length, step);
        T correction1 = T.One - T.Pow(beta1, T.CreateChecked(step));
        T correction2 = T.One - T.Pow(beta2, T.CreateChecked(step));
        for (int i = 0; i < parameters.Length; i++)
        {
            T g = gradients[i];
            m[i] = beta1 * m[i] + (T.One - beta1) * g;
            v[i] = beta2 * v[i] + (T.One - beta2) * g * g;
            T mHat = m[i] / correction1, vHat = v[i] / correction2;
            parameters[i] -= learningRate * (mHat / (T.Sqrt(vHat) + epsilon) + weightDecay * parameters[i]);
        }
    }

    internal static void CheckAdamW(long parameters, long gradients, long m, long v, int step)
    {
        if (step < 1) throw new ArgumentOutOfRangeException(nameof(step), step, "AdamW steps count from 1");
        Shapes.Require(gradients, parameters, nameof(gradients), $"(count={parameters})");
        Shapes.Require(m, parameters, nameof(m), $"(count={parameters})");
        Shapes.Require(v, parameters, nameof(v), $"(count={parameters})");
    }
}
