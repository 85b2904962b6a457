using EdgeTune.Kernels.Ilgpu;

namespace EdgeTune.Kernels.Tests.Ilgpu;

/// <summary>The kernels' exp, log, sin, cos against float64 Math on the same float inputs.</summary>
public sealed class DeviceMathTests
{
    private static IEnumerable<float> Range(float from, float to, int count, int seed)
    {
        var random = new Random(seed);
        for (int i = 0; i < count; i++) yield return (float)(from + (to - from) * random.NextDouble());
    }

    [Fact]
    public void ExpIsWithinAFewUlp()
    {
        foreach (float x in Range(-87f, 88.7f, 200_000, 1).Concat([0f, -0f, 1f, -1f, 1e-30f, 88.72f, -87.33f]))
        {
            double expected = Math.Exp(x);
            Assert.True(Math.Abs(DeviceMath.Exp(x) - expected) <= 3e-7 * expected, $"exp({x:R}) = {DeviceMath.Exp(x):R}, expected {expected:R}");
        }
        Assert.Equal(0f, DeviceMath.Exp(float.NegativeInfinity));
        Assert.Equal(0f, DeviceMath.Exp(-1000f));
        Assert.Equal(float.PositiveInfinity, DeviceMath.Exp(89f));
        Assert.True(float.IsNaN(DeviceMath.Exp(float.NaN)));
    }

    [Fact]
    public void LogIsWithinAFewUlp()
    {
        var inputs = Range(-87f, 88f, 200_000, 2).Select(e => MathF.Exp(e))
            .Concat(Range(0.5f, 2f, 100_000, 3)).Concat([1f, 2f, float.Epsilon, 1e-40f, float.MaxValue, 1.4142135f, 1.4142137f]);
        foreach (float x in inputs)
        {
            double expected = Math.Log(x);
            Assert.True(Math.Abs(DeviceMath.Log(x) - expected) <= 2e-7 * Math.Max(1, Math.Abs(expected)), $"log({x:R}) = {DeviceMath.Log(x):R}, expected {expected:R}");
        }
        Assert.Equal(float.NegativeInfinity, DeviceMath.Log(0f));
        Assert.True(float.IsNaN(DeviceMath.Log(-1f)));
        Assert.Equal(float.PositiveInfinity, DeviceMath.Log(float.PositiveInfinity));
    }

    [Fact]
    public void SinCosAreAccurateOverRopeAngles()
    {
        // t·invFreq for t up to 8k positions and invFreq ≤ 1: a few ulp. Up to 32k the reduction's second product
        // rounds and the error grows to 1e-6, far below the rounding of the float angle itself there (ulp(32768) = 0.004).
        foreach (float x in Range(-7f, 7f, 100_000, 4).Concat(Range(-8192f, 8192f, 200_000, 5)).Concat(Range(-32768f, 32768f, 100_000, 6))
                     .Concat([0f, MathF.PI, MathF.PI / 2, 1e-20f]))
        {
            DeviceMath.SinCos(x, out float sin, out float cos);
            double s = Math.Sin(x), c = Math.Cos(x), bound = Math.Abs(x) <= 8192 ? 3e-7 : 1e-6;
            Assert.True(Math.Abs(sin - s) <= bound && Math.Abs(cos - c) <= bound, $"sincos({x:R}) = ({sin:R}, {cos:R}), expected ({s:R}, {c:R})");
        }
    }
}
