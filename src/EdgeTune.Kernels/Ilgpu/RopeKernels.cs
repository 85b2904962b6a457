using ILGPU;
using ILGPU.Runtime;

namespace EdgeTune.Kernels.Ilgpu;

// Rotary embedding, in place.  x: (B,T,heads,D)  invFreq: (D/2)
// One thread per (row, head, pair j): θ = t·invFreq[j]; (a, b) → (a·cos θ − b·sin θ, a·sin θ + b·cos θ);
// inverse (the backward) rotates by −θ. Pairs: Half (j, j + D/2), Interleaved (2j, 2j + 1).
// Packed (segmentStarts given): t is the position within the row's example, t − starts[b·T + t].
public sealed partial class IlgpuBackend
{
    private Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<int>, RopeShape>? _rope;

    public void Rope(DeviceBuffer x, DeviceBuffer invFreq, int batch, int seqLen, int heads, int headDim, RopeLayout layout, bool inverse,
        ReadOnlySpan<int> segmentStarts = default)
    {
        var xv = View(x, nameof(x));
        var fv = View(invFreq, nameof(invFreq));
        Reference.CheckRope(xv.Length, fv.Length, batch, seqLen, heads, headDim);
        Reference.CheckSegmentStarts(segmentStarts, batch, seqLen);
        long pairs = (long)batch * seqLen * heads * (headDim / 2);
        if (pairs == 0) return;
        if (pairs > int.MaxValue) throw new ArgumentException($"rope over {pairs} pairs exceeds one launch", nameof(x));
        _rope ??= _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<int>, RopeShape>(RopeKernel);
        var shape = new RopeShape
        {
            SeqLen = seqLen, Heads = heads, HeadDim = headDim,
            Interleaved = layout == RopeLayout.Interleaved ? 1 : 0, Inverse = inverse ? 1 : 0, Packed = segmentStarts.IsEmpty ? 0 : 1,
        };
        _rope((int)pairs, xv, fv, segmentStarts.IsEmpty ? default : UploadInts(segmentStarts), shape);
    }

    internal struct RopeShape
    {
        public int SeqLen, Heads, HeadDim, Interleaved, Inverse, Packed;
    }

    // index = ((b·T + t)·heads + h)·(D/2) + j
    private static void RopeKernel(Index1D index, ArrayView<float> x, ArrayView<float> invFreq, ArrayView<int> starts, RopeShape s)
    {
        int half = s.HeadDim / 2;
        int j = index % half;
        long rowHead = index / half;            // (b·T + t)·heads + h
        long row = rowHead / s.Heads;           // b·T + t
        int t = (int)(row % s.SeqLen);
        if (s.Packed != 0) t -= starts[row];
        long head = rowHead * s.HeadDim;
        float angle = t * invFreq[j];
        DeviceMath.SinCos(angle, out float sin, out float cos);
        if (s.Inverse != 0) sin = -sin;
        long ia = head + (s.Interleaved != 0 ? 2 * j : j);
        long ib = head + (s.Interleaved != 0 ? 2 * j + 1 : j + half);
        float va = x[ia], vb = x[ib];
        x[ia] = va * cos - vb * sin;
        x[ib] = va * sin + vb * cos;
    }
}
