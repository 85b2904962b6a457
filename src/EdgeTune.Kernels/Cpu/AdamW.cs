using System.Numerics;

namespace EdgeTune.Kernels.Cpu;

// p, g, m, v: (count)   m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²;  p −= lr·(m̂/(√v̂ + ε) + wd·p)
// Vector<float> over chunks in parallel; the bias corrections 1 − β^step are computed once in float64.
public sealed unsafe partial class CpuBackend
{
    public void AdamW(DeviceBuffer parameters, DeviceBuffer gradients, DeviceBuffer m, DeviceBuffer v,
        float learningRate, float beta1, float beta2, float epsilon, float weightDecay, int step)
    {
        Reference.CheckAdamW(parameters.Length, gradients.Length, m.Length, v.Length, step);
        float* pp = Of(parameters, nameof(parameters)).Pointer, pg = Of(gradients, nameof(gradients)).Pointer;
        float* pm = Of(m, nameof(m)).Pointer, pv = Of(v, nameof(v)).Pointer;
        float inverse1 = (float)(1 / (1 - Math.Pow(beta1, step))), inverse2 = (float)(1 / (1 - Math.Pow(beta2, step)));
        float a1 = 1f - beta1, a2 = 1f - beta2;
        ForChunks(parameters.Length, ElementChunk, (start, length) =>
        {
            float* p = pp + start, g = pg + start, mm = pm + start, vv = pv + start;
            int i = 0;
            if (Vector.IsHardwareAccelerated)
                for (; i + Vector<float>.Count <= length; i += Vector<float>.Count)
                {
                    var gi = Vector.Load(g + i);
                    var mi = beta1 * Vector.Load(mm + i) + a1 * gi;
                    var vi = beta2 * Vector.Load(vv + i) + a2 * gi * gi;
                    mi.Store(mm + i);
                    vi.Store(vv + i);
                    var pi = Vector.Load(p + i);
                    var update = mi * inverse1 / (Vector.SquareRoot(vi * inverse2) + new Vector<float>(epsilon)) + weightDecay * pi;
                    (pi - learningRate * update).Store(p + i);
                }
            for (; i < length; i++)
            {
                float gi = g[i];
                float mi = mm[i] = beta1 * mm[i] + a1 * gi;
                float vi = vv[i] = beta2 * vv[i] + a2 * gi * gi;
                p[i] -= learningRate * (mi * inverse1 / (MathF.Sqrt(vi * inverse2) + epsilon) + weightDecay * p[i]);
            }
        });
    }
}
