namespace EdgeTune.Kernels.Cpu;

// x: (B,T,heads,D) in place  invFreq: (D/2)   row (b,t) at position t; angles in float64, then float cos/sin shared
// by the row's heads; inverse rotates by −θ (the backward). Parallel over rows.
public sealed unsafe partial class CpuBackend
{
    public void Rope(DeviceBuffer x, DeviceBuffer invFreq, int batch, int seqLen, int heads, int headDim, RopeLayout layout, bool inverse,
        ReadOnlySpan<int> segmentStarts = default)
    {
        Reference.CheckRope(x.Length, invFreq.Length, batch, seqLen, heads, headDim);
        Reference.CheckSegmentStarts(segmentStarts, batch, seqLen);
        int[]? starts = segmentStarts.IsEmpty ? null : segmentStarts.ToArray();
        float* px = Of(x, nameof(x)).Pointer, pf = Of(invFreq, nameof(invFreq)).Pointer;
        int half = headDim / 2, width = heads * headDim;
        bool interleaved = layout == RopeLayout.Interleaved;
        ForChunks((long)batch * seqLen, 16, (start, count) =>
        {
            Span<float> cos = stackalloc float[half], sin = stackalloc float[half];
            for (long row = start; row < start + count; row++)
            {
                int t = (int)(row % seqLen);
                if (starts is not null) t -= starts[row]; // packed: the position within the row's example
                for (int j = 0; j < half; j++)
                {
                    double angle = (double)t * pf[j];
                    cos[j] = (float)Math.Cos(angle);
                    sin[j] = inverse ? -(float)Math.Sin(angle) : (float)Math.Sin(angle);
                }
                for (int h = 0; h < heads; h++)
                {
                    float* head = px + row * width + h * headDim;
                    for (int j = 0; j < half; j++)
                    {
                        int ia = interleaved ? 2 * j : j, ib = interleaved ? 2 * j + 1 : j + half;
                        float a = head[ia], b = head[ib];
                        head[ia] = a * cos[j] - b * sin[j];
                        head[ib] = a * sin[j] + b * cos[j];
                    }
                }
            }
        });
    }
}
