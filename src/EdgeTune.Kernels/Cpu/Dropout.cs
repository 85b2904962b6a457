namespace EdgeTune.Kernels.Cpu;

// x, y: (count)   y[i] = DropoutMask.Keep(seed, i, p) ? x[i]/(1−p) : 0; the same call on dy is the backward.
public sealed unsafe partial class CpuBackend
{
    public void Dropout(DeviceBuffer x, DeviceBuffer y, long count, float probability, ulong seed)
    {
        Reference.CheckDropout(x.Length, y.Length, count, probability);
        float* px = Of(x, nameof(x)).Pointer, py = Of(y, nameof(y)).Pointer;
        float scale = DropoutMask.KeepScale(probability);
        ForChunks(count, ElementChunk, (start, length) =>
        {
            for (long i = start; i < start + length; i++)
                py[i] = DropoutMask.Keep(seed, i, probability) ? px[i] * scale : 0f;
        });
    }
}
