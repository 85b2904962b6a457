using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;

namespace EdgeTune.Kernels.Ilgpu;

// The output head fused with cross-entropy, in chunks of R rows (R·V ≤ CrossEntropyChunkElements):
//   hidden: (N,C)  head: (V,C)  targets: (N)   per chunk: logits (R,V) = hidden[chunk]·headᵀ  (scratch)
//   row kernel (one group per row): lse = max + log Σ e^(l − max);  loss[r] = lse − l[target]
//             and, for the backward, logits ← gradScale·(softmax − onehot) in place (0 where target = −1)
//   dHidden[chunk] = dlogits·head (overwritten);  dHead += dlogitsᵀ·hidden[chunk]
// Row losses come back as floats and are summed in double on the host, in row order.
public sealed unsafe partial class IlgpuBackend
{
    private Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<float>, CrossEntropyShape>? _crossEntropyRows;

    public double CrossEntropy(DeviceBuffer hidden, DeviceBuffer head, ReadOnlySpan<int> targets, int n, int c, int vocab,
        float gradScale, DeviceBuffer? dHidden, DeviceBuffer? dHead)
    {
        var hv = View(hidden, nameof(hidden));
        var headView = View(head, nameof(head));
        Reference.CheckCrossEntropy(hv.Length, headView.Length, targets, n, c, vocab);
        ArrayView<float> dhv = default, dHeadView = default;
        if (dHidden is not null)
        {
            dhv = View(dHidden, nameof(dHidden));
            Shapes.Require(dhv.Length, (long)n * c, nameof(dHidden), $"(N={n},C={c})");
        }
        if (dHead is not null)
        {
            dHeadView = View(dHead, nameof(dHead));
            Shapes.Require(dHeadView.Length, (long)vocab * c, nameof(dHead), $"(V={vocab},C={c})");
        }
        if (n == 0) return 0;

        bool backward = dHidden is not null || dHead is not null;
        int chunk = (int)Math.Clamp(CrossEntropyChunkElements / vocab, 1, n);
        var logits = Scratch("crossentropy.logits", (long)chunk * vocab);
        var losses = Scratch("crossentropy.losses", chunk);
        var ids = UploadInts(targets[..n]);
        _crossEntropyRows ??= _accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, CrossEntropyShape>(CrossEntropyRowsKernel);

        var hostLosses = new float[chunk];
        double total = 0;
        for (int r0 = 0; r0 < n; r0 += chunk)
        {
            int rows = Math.Min(chunk, n - r0);
            var hiddenChunk = hv.SubView((long)r0 * c, (long)rows * c);
            var logitsChunk = logits.SubView(0, (long)rows * vocab);
            Gemm(DenseGemm, new DenseSource(hiddenChunk, c, 1), new DenseSource(headView, 1, c), logitsChunk, rows, vocab, c, accumulate: false);
            var shape = new CrossEntropyShape { Vocab = vocab, GradScale = gradScale, Backward = backward ? 1 : 0 };
            _crossEntropyRows(new KernelConfig(rows, _rowGroup), logitsChunk, ids.SubView(r0, rows), losses, shape);
            if (dHidden is not null)
                Gemm(DenseGemm, new DenseSource(logitsChunk, vocab, 1), new DenseSource(headView, c, 1), dhv.SubView((long)r0 * c, (long)rows * c),
                    rows, c, vocab, accumulate: false);
            if (dHead is not null)
                Gemm(DenseGemm, new DenseSource(logitsChunk, 1, vocab), new DenseSource(hiddenChunk, c, 1), dHeadView, vocab, c, rows, accumulate: true);
            fixed (float* pinned = hostLosses) losses.SubView(0, rows).CopyToCPU(ref *pinned, rows);
            for (int r = 0; r < rows; r++) total += hostLosses[r];
        }
        return total;
    }

    internal struct CrossEntropyShape
    {
        public int Vocab, Backward;
        public float GradScale;
    }

    // grid: one group per row of the chunk.   logits: (R,V)  targets: (R)  losses: (R)
    private static void CrossEntropyRowsKernel(ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> losses, CrossEntropyShape s)
    {
        var shared = SharedMemory.Allocate<float>(RowGroupMax);
        int lane = Group.IdxX, stride = Group.DimX, row = Grid.IdxX;
        long start = (long)row * s.Vocab;
        int target = targets[row];
        if (target < 0)
        {
            // No loss here: the row is uniform over the group, so skipping the reductions (and their barriers) is safe.
            if (lane == 0) losses[row] = 0f;
            if (s.Backward != 0)
                for (int o = lane; o < s.Vocab; o += stride) logits[start + o] = 0f;
            return;
        }
        float max = float.NegativeInfinity;
        for (int o = lane; o < s.Vocab; o += stride) max = MathF.Max(max, logits[start + o]);
        max = RowReduce.Max(shared, max);
        float sum = 0f;
        for (int o = lane; o < s.Vocab; o += stride) sum += DeviceMath.Exp(logits[start + o] - max);
        sum = RowReduce.Sum(shared, sum);
        float lse = max + DeviceMath.Log(sum);
        if (lane == 0) losses[row] = lse - logits[start + target];
        Group.Barrier(); // everyone has read logits[target] before it is overwritten below
        if (s.Backward == 0) return;
        for (int o = lane; o < s.Vocab; o += stride)
        {
            float p = DeviceMath.Exp(logits[start + o] - lse);
            logits[start + o] = s.GradScale * (p - (o == target ? 1f : 0f));
        }
    }
}
