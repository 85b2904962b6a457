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
        Reference.CheckCrossEntropy(View(hidden, nameof(hidden)).Length, View(head, nameof(head)).Length, targets, n, c, vocab);
        return HeadLoss(hidden, head, targets, [], [], default, n, c, vocab, gradScale, dHidden, dHead).CrossEntropy;
    }

    // The distillation term on the same logits chunk, per chunk: DistillRowsKernel reads the K student logits at the
    // teacher's ids (before the cross-entropy kernel overwrites the row) and writes τ²·D and its dlogits (R,K) to
    // scratch; the cross-entropy kernel runs with gradScale·(1 − α); DistillScatterKernel adds the K dlogits in.
    public DistillLossSums Distill(DeviceBuffer hidden, DeviceBuffer head, ReadOnlySpan<int> targets, ReadOnlySpan<int> teacherIds,
        ReadOnlySpan<float> teacherLogProbs, DistillSettings settings, int n, int c, int vocab, float gradScale, DeviceBuffer? dHidden, DeviceBuffer? dHead)
    {
        Reference.CheckDistill(View(hidden, nameof(hidden)).Length, View(head, nameof(head)).Length, targets, teacherIds, teacherLogProbs.Length, settings, n, c, vocab);
        int k = settings.TopK;
        return HeadLoss(hidden, head, targets, teacherIds[..(n * k)], teacherLogProbs[..(n * k)], settings, n, c, vocab, gradScale, dHidden, dHead);
    }

    private DistillLossSums HeadLoss(DeviceBuffer hidden, DeviceBuffer head, ReadOnlySpan<int> targets, ReadOnlySpan<int> teacherIds,
        ReadOnlySpan<float> teacherLogProbs, DistillSettings settings, int n, int c, int vocab, float gradScale, DeviceBuffer? dHidden, DeviceBuffer? dHead)
    {
        var hv = View(hidden, nameof(hidden));
        var headView = View(head, nameof(head));
        bool distill = !teacherIds.IsEmpty;
        int k = distill ? settings.TopK : 0;
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
        if (n == 0) return default;

        bool backward = dHidden is not null || dHead is not null;
        int chunk = (int)Math.Clamp(CrossEntropyChunkElements / vocab, 1, n);
        var logits = Scratch("crossentropy.logits", (long)chunk * vocab);
        var losses = Scratch("crossentropy.losses", chunk);
        // One int upload (UploadInts reuses one scratch): the targets, then the teacher's ids.
        var ints = new int[n + teacherIds.Length];
        targets[..n].CopyTo(ints);
        teacherIds.CopyTo(ints.AsSpan(n));
        var uploaded = UploadInts(ints);
        var ids = uploaded.SubView(0, n);
        _crossEntropyRows ??= _accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, CrossEntropyShape>(CrossEntropyRowsKernel);
        ArrayView<float> teacher = default, kdGrads = default, kdLosses = default;
        float alpha = distill ? (float)settings.Alpha : 0f;
        if (distill)
        {
            teacher = Scratch("distill.teacher", (long)n * k);
            fixed (float* pinned = teacherLogProbs) teacher.SubView(0, (long)n * k).CopyFromCPU(ref *pinned, (long)n * k);
            kdGrads = Scratch("distill.dlogits", (long)chunk * k);
            kdLosses = Scratch("distill.losses", chunk);
            _distillRows ??= _accelerator.LoadAutoGroupedStreamKernel<Index1D, DistillViews, DistillShape>(DistillRowsKernel);
            _distillScatter ??= _accelerator.LoadAutoGroupedStreamKernel<Index1D, DistillViews, DistillShape>(DistillScatterKernel);
        }
        var effective = settings.Effective;
        var distillShape = new DistillShape
        {
            Vocab = vocab, K = k, Divergence = (int)effective,
            Beta = (float)settings.Beta, Temperature = (float)settings.Temperature, Scale = gradScale * alpha,
        };

        var hostLosses = new float[chunk];
        var hostDivergences = new float[chunk];
        double total = 0, divergence = 0;
        for (int r0 = 0; r0 < n; r0 += chunk)
        {
            int rows = Math.Min(chunk, n - r0);
            var hiddenChunk = hv.SubView((long)r0 * c, (long)rows * c);
            var logitsChunk = logits.SubView(0, (long)rows * vocab);
            Gemm(DenseGemm, new DenseSource(hiddenChunk, c, 1), new DenseSource(headView, 1, c), logitsChunk, rows, vocab, c, accumulate: false);
            var views = distill
                ? new DistillViews
                {
                    Logits = logitsChunk, Targets = ids.SubView(r0, rows), Ids = uploaded.SubView(n + (long)r0 * k, (long)rows * k),
                    Teacher = teacher.SubView((long)r0 * k, (long)rows * k), Gradients = kdGrads, Losses = kdLosses,
                }
                : default;
            if (distill) _distillRows!(rows, views, distillShape);
            var shape = new CrossEntropyShape { Vocab = vocab, GradScale = gradScale * (1 - alpha), Backward = backward ? 1 : 0 };
            _crossEntropyRows(new KernelConfig(rows, _rowGroup), logitsChunk, ids.SubView(r0, rows), losses, shape);
            if (distill && backward) _distillScatter!(rows, views, distillShape);
            if (dHidden is not null)
                Gemm(DenseGemm, new DenseSource(logitsChunk, vocab, 1), new DenseSource(headView, c, 1), dhv.SubView((long)r0 * c, (long)rows * c),
                    rows, c, vocab, accumulate: false);
            if (dHead is not null)
                Gemm(DenseGemm, new DenseSource(logitsChunk, 1, vocab), new DenseSource(hiddenChunk, c, 1), dHeadView, vocab, c, rows, accumulate: true);
            fixed (float* pinned = hostLosses) losses.SubView(0, rows).CopyToCPU(ref *pinned, rows);
            for (int r = 0; r < rows; r++) total += hostLosses[r];
            if (!distill) continue;
            fixed (float* pinned = hostDivergences) kdLosses.SubView(0, rows).CopyToCPU(ref *pinned, rows);
            for (int r = 0; r < rows; r++) divergence += hostDivergences[r];
        }
        return new DistillLossSums(total, divergence);
    }

    private Action<Index1D, DistillViews, DistillShape>? _distillRows, _distillScatter;

    internal struct DistillViews
    {
        public ArrayView<float> Logits, Teacher, Gradients, Losses;
        public ArrayView<int> Targets, Ids;
    }

    internal struct DistillShape
    {
        public int Vocab, K, Divergence;
        public float Beta, Temperature, Scale;
    }

    // grid: one thread per row of the chunk (K is small).  logits: (R,V)  ids, teacher, gradients: (R,K)  losses: (R)
    // Reference.DistillRow in float with DeviceMath; gradients ← Scale·∂(τ²·D)/∂z, losses ← τ²·D (0 without a target).
    private static void DistillRowsKernel(Index1D index, DistillViews v, DistillShape s)
    {
        int row = index;
        int k = s.K;
        long at = (long)row * k;
        if (v.Targets[row] < 0)
        {
            v.Losses[row] = 0f;
            for (int i = 0; i < k; i++) v.Gradients[at + i] = 0f;
            return;
        }
        long start = (long)row * s.Vocab;
        float tau = s.Temperature, zMax = float.NegativeInfinity, tMax = float.NegativeInfinity;
        for (int i = 0; i < k; i++)
        {
            zMax = MathF.Max(zMax, v.Logits[start + v.Ids[at + i]] / tau);
            tMax = MathF.Max(tMax, v.Teacher[at + i] / tau);
        }
        float zSum = 0f, tSum = 0f;
        for (int i = 0; i < k; i++)
        {
            zSum += DeviceMath.Exp(v.Logits[start + v.Ids[at + i]] / tau - zMax);
            tSum += DeviceMath.Exp(v.Teacher[at + i] / tau - tMax);
        }
        float zLse = zMax + DeviceMath.Log(zSum), tLse = tMax + DeviceMath.Log(tSum);
        float beta = s.Beta, d = 0f, qg = 0f;
        float logOneMinusBeta = s.Divergence == (int)DistillDivergence.Jsd ? DeviceMath.Log(1f - beta) : 0f;
        float logBeta = s.Divergence == (int)DistillDivergence.Jsd ? DeviceMath.Log(beta) : 0f;
        for (int i = 0; i < k; i++)
        {
            float logQ = v.Logits[start + v.Ids[at + i]] / tau - zLse, logP = v.Teacher[at + i] / tau - tLse;
            float q = DeviceMath.Exp(logQ), p = DeviceMath.Exp(logP), g;
            if (s.Divergence == (int)DistillDivergence.ForwardKl)
            {
                if (p > 0f) d += p * (logP - logQ);
                g = q - p;
            }
            else if (s.Divergence == (int)DistillDivergence.ReverseKl)
            {
                if (q > 0f) d += q * (logQ - logP);
                g = logQ - logP;
            }
            else
            {
                float a = logQ + logOneMinusBeta, b = logP + logBeta, max = MathF.Max(a, b);
                float logM = max + DeviceMath.Log(DeviceMath.Exp(a - max) + DeviceMath.Exp(b - max));
                if (p > 0f) d += beta * p * (logP - logM);
                if (q > 0f) d += (1f - beta) * q * (logQ - logM);
                g = (1f - beta) * (logQ - logM);
            }
            v.Gradients[at + i] = g;
            qg += q * g;
        }
        float outer = s.Scale * tau;
        for (int i = 0; i < k; i++)
        {
            float q = DeviceMath.Exp(v.Logits[start + v.Ids[at + i]] / tau - zLse);
            float g = v.Gradients[at + i];
            v.Gradients[at + i] = s.Divergence == (int)DistillDivergence.ForwardKl ? outer * g : outer * q * (g - qg);
        }
        v.Losses[row] = tau * tau * d;
    }

    // grid: one thread per row, so repeated ids within a row add up without atomics.  logits ← logits + dlogits at the ids.
    private static void DistillScatterKernel(Index1D index, DistillViews v, DistillShape s)
    {
        int row = index;
        if (v.Targets[row] < 0) return;
        long start = (long)row * s.Vocab, at = (long)row * s.K;
        for (int i = 0; i < s.K; i++) v.Logits[start + v.Ids[at + i]] += v.Gradients[at + i];
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
