using ILGPU;

namespace EdgeTune.Kernels.Ilgpu;

/// <summary>
/// Deterministic reductions across one group (a power-of-two number of threads, at most
/// <see cref="IlgpuBackend.RowGroupMax"/>): a fixed tree in shared memory, so the result does not depend on scheduling.
/// Every thread of the group must call them (they contain barriers); every thread gets the result.
/// </summary>
internal static class RowReduce
{
    public static float Sum(ArrayView<float> shared, float value)
    {
        int lane = Group.IdxX;
        shared[lane] = value;
        Group.Barrier();
        for (int stride = Group.DimX / 2; stride > 0; stride >>= 1)
        {
            if (lane < stride) shared[lane] += shared[lane + stride];
            Group.Barrier();
        }
        float result = shared[0];
        Group.Barrier();
        return result;
    }

    public static float Max(ArrayView<float> shared, float value)
    {
        int lane = Group.IdxX;
        shared[lane] = value;
        Group.Barrier();
        for (int stride = Group.DimX / 2; stride > 0; stride >>= 1)
        {
            if (lane < stride) shared[lane] = MathF.Max(shared[lane], shared[lane + stride]);
            Group.Barrier();
        }
        float result = shared[0];
        Group.Barrier();
        return result;
    }
}
