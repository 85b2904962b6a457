using ILGPU;
using ILGPU.Runtime;

namespace EdgeTune.Kernels.Ilgpu;

// Causal grouped-query attention without a T×T matrix (see Reference.AttentionForward/Backward).
//   q, output, dq: (B,T,H,D)  k, v, dk, dv: (B,T,KV,D)  logSumExp: (B,H,T)   head h reads kv head h / (H/KV)
// forward   one thread per query row (b, h, t): online softmax over keys s ≤ t (running max m and sum l, the
//           output row rescaled when m grows), then output /= l and lse = m + log l.
// backward  pass 1, one thread per query row: Δ = dO·O (kept in scratch), dq = scale·Σ_s P·(dP − Δ)·k[s] with
//           P recomputed from lse.  pass 2, one thread per (b, kv head, key s): dk, dv sum over the H/KV query
//           heads sharing the kv head and over queries t ≥ s, in a fixed order: deterministic, no atomics. With
//           H/KV > 1 pass 2 runs per query head into partials and a third pass sums each group in head order.
// packed    (segmentStarts given) query t reads keys [starts[b·T + t], t]; key s is read by the queries t ≥ s of
//           its own example, i.e. while starts[b·T + t] ≤ s (examples are contiguous, so the first t past it ends them).
public sealed partial class IlgpuBackend
{
    private Action<Index1D, AttentionViews, AttentionShape>? _attentionForward;
    private Action<Index1D, AttentionViews, AttentionShape>? _attentionBackwardQuery;
    private Action<Index1D, AttentionViews, AttentionShape>? _attentionBackwardKeyValue;
    private Action<Index1D, AttentionViews, AttentionShape>? _attentionBackwardKeyValuePerHead;
    private Action<Index1D, AttentionViews, AttentionShape>? _attentionSumHeadGroups;

    public void AttentionForward(DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, DeviceBuffer output, DeviceBuffer logSumExp,
        int batch, int seqLen, int heads, int kvHeads, int headDim, ReadOnlySpan<int> segmentStarts = default)
    {
        var views = new AttentionViews
        {
            Q = View(q, nameof(q)), K = View(k, nameof(k)), V = View(v, nameof(v)),
            Output = View(output, nameof(output)), LogSumExp = View(logSumExp, nameof(logSumExp)),
        };
        Reference.CheckAttention(views.Q.Length, views.K.Length, views.V.Length, views.Output.Length, views.LogSumExp.Length,
            batch, seqLen, heads, kvHeads, headDim);
        Reference.CheckSegmentStarts(segmentStarts, batch, seqLen);
        var shape = AttentionShape.Create(batch, seqLen, heads, kvHeads, headDim);
        if (shape.QueryRows == 0) return;
        if (!segmentStarts.IsEmpty)
        {
            views.SegmentStarts = UploadInts(segmentStarts);
            shape.Packed = 1;
        }
        _attentionForward ??= _accelerator.LoadAutoGroupedStreamKernel<Index1D, AttentionViews, AttentionShape>(AttentionForwardKernel);
        _attentionForward(shape.QueryRows, views, shape);
    }

    public void AttentionBackward(DeviceBuffer dOutput, DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, DeviceBuffer output, DeviceBuffer logSumExp,
        DeviceBuffer dq, DeviceBuffer dk, DeviceBuffer dv, int batch, int seqLen, int heads, int kvHeads, int headDim, ReadOnlySpan<int> segmentStarts = default)
    {
        var views = new AttentionViews
        {
            Q = View(q, nameof(q)), K = View(k, nameof(k)), V = View(v, nameof(v)),
            Output = View(output, nameof(output)), LogSumExp = View(logSumExp, nameof(logSumExp)),
            DOutput = View(dOutput, nameof(dOutput)), Dq = View(dq, nameof(dq)), Dk = View(dk, nameof(dk)), Dv = View(dv, nameof(dv)),
        };
        Reference.CheckAttention(views.Q.Length, views.K.Length, views.V.Length, views.Output.Length, views.LogSumExp.Length,
            batch, seqLen, heads, kvHeads, headDim);
        long qCount = (long)batch * seqLen * heads * headDim, kvCount = (long)batch * seqLen * kvHeads * headDim;
        Shapes.Require(views.DOutput.Length, qCount, nameof(dOutput), $"(B={batch},T={seqLen},H={heads},D={headDim})");
        Shapes.Require(views.Dq.Length, qCount, nameof(dq), $"(B={batch},T={seqLen},H={heads},D={headDim})");
        Shapes.Require(views.Dk.Length, kvCount, nameof(dk), $"(B={batch},T={seqLen},KV={kvHeads},D={headDim})");
        Shapes.Require(views.Dv.Length, kvCount, nameof(dv), $"(B={batch},T={seqLen},KV={kvHeads},D={headDim})");
        Reference.CheckSegmentStarts(segmentStarts, batch, seqLen);
        var shape = AttentionShape.Create(batch, seqLen, heads, kvHeads, headDim);
        if (shape.QueryRows == 0) return;
        if (!segmentStarts.IsEmpty)
        {
            views.SegmentStarts = UploadInts(segmentStarts); // one upload read by all the passes below
            shape.Packed = 1;
        }
        views.Delta = Scratch("attention.delta", shape.QueryRows);
        _attentionBackwardQuery ??= _accelerator.LoadAutoGroupedStreamKernel<Index1D, AttentionViews, AttentionShape>(AttentionBackwardQueryKernel);
        _attentionBackwardKeyValue ??= _accelerator.LoadAutoGroupedStreamKernel<Index1D, AttentionViews, AttentionShape>(AttentionBackwardKeyValueKernel);
        _attentionBackwardQuery(shape.QueryRows, views, shape);
        if (shape.Group == 1)
        {
            _attentionBackwardKeyValue(batch * kvHeads * seqLen, views, shape);
            return;
        }
        // Grouped-query: one thread per (b, query head, key) into per-head partials (H/KV times the threads of a
        // thread per kv head), then each kv head sums its group's partials in head order.
        views.DkPartial = Scratch("attention.dk", qCount);
        views.DvPartial = Scratch("attention.dv", qCount);
        _attentionBackwardKeyValuePerHead ??= _accelerator.LoadAutoGroupedStreamKernel<Index1D, AttentionViews, AttentionShape>(AttentionBackwardKeyValuePerHeadKernel);
        _attentionSumHeadGroups ??= _accelerator.LoadAutoGroupedStreamKernel<Index1D, AttentionViews, AttentionShape>(AttentionSumHeadGroupsKernel);
        _attentionBackwardKeyValuePerHead(shape.QueryRows, views, shape);
        _attentionSumHeadGroups((int)kvCount, views, shape);
    }

    internal struct AttentionViews
    {
        public ArrayView<float> Q, K, V, Output, LogSumExp, DOutput, Dq, Dk, Dv, Delta;
        /// <summary>Grouped-query backward only: dk, dv per query head, (B,T,H,D), before the group sum.</summary>
        public ArrayView<float> DkPartial, DvPartial;
        /// <summary>Packed only: (B,T) start of each row's example.</summary>
        public ArrayView<int> SegmentStarts;
    }

    internal struct AttentionShape
    {
        public int Batch, SeqLen, Heads, KvHeads, HeadDim, Group, QueryRows, Packed;
        public float Scale;

        public static AttentionShape Create(int batch, int seqLen, int heads, int kvHeads, int headDim)
        {
            long rows = (long)batch * heads * seqLen;
            if ((long)batch * seqLen * heads * headDim > int.MaxValue)
                throw new ArgumentException($"attention over B={batch}, T={seqLen}, H={heads}, D={headDim} exceeds one launch");
            return new AttentionShape
            {
                Batch = batch, SeqLen = seqLen, Heads = heads, KvHeads = kvHeads, HeadDim = headDim,
                Group = heads / kvHeads, QueryRows = (int)rows, Scale = 1f / MathF.Sqrt(headDim),
            };
        }

        /// <summary>Offset of head <paramref name="h"/> at row (b, t) of a (B,T,heads,D) tensor.</summary>
        public readonly long Row(int b, int t, int h, int headCount) => (((long)b * SeqLen + t) * headCount + h) * HeadDim;

        /// <summary>The first key query row (b, t) reads: the start of its example (0 unpacked).</summary>
        public readonly int FirstKey(ArrayView<int> starts, int b, int t) => Packed != 0 ? starts[b * SeqLen + t] : 0;
    }

    // index = (b·H + h)·T + t  (the logSumExp layout)
    private static void AttentionForwardKernel(Index1D index, AttentionViews a, AttentionShape s)
    {
        int t = index % s.SeqLen, bh = index / s.SeqLen, h = bh % s.Heads, b = bh / s.Heads;
        int kv = h / s.Group;
        long qi = s.Row(b, t, h, s.Heads);
        for (int d = 0; d < s.HeadDim; d++) a.Output[qi + d] = 0f;
        float max = float.NegativeInfinity, sum = 0f;
        for (int key = s.FirstKey(a.SegmentStarts, b, t); key <= t; key++)
        {
            long ki = s.Row(b, key, kv, s.KvHeads);
            float dot = 0f;
            for (int d = 0; d < s.HeadDim; d++) dot += a.Q[qi + d] * a.K[ki + d];
            float score = dot * s.Scale;
            if (score > max)
            {
                float correction = DeviceMath.Exp(max - score); // 0 on the first key (max = −∞)
                sum *= correction;
                for (int d = 0; d < s.HeadDim; d++) a.Output[qi + d] *= correction;
                max = score;
            }
            float p = DeviceMath.Exp(score - max);
            sum += p;
            for (int d = 0; d < s.HeadDim; d++) a.Output[qi + d] += p * a.V[ki + d];
        }
        float inverse = 1f / sum;
        for (int d = 0; d < s.HeadDim; d++) a.Output[qi + d] *= inverse;
        a.LogSumExp[index] = max + DeviceMath.Log(sum);
    }

    // index = (b·H + h)·T + t.   Δ[index] = dO·O;  dq[t] = scale·Σ_{s ≤ t} P·(dO·v[s] − Δ)·k[s]  (overwritten)
    private static void AttentionBackwardQueryKernel(Index1D index, AttentionViews a, AttentionShape s)
    {
        int t = index % s.SeqLen, bh = index / s.SeqLen, h = bh % s.Heads, b = bh / s.Heads;
        int kv = h / s.Group;
        long qi = s.Row(b, t, h, s.Heads);
        float lse = a.LogSumExp[index];
        float delta = 0f;
        for (int d = 0; d < s.HeadDim; d++)
        {
            delta += a.DOutput[qi + d] * a.Output[qi + d];
            a.Dq[qi + d] = 0f;
        }
        a.Delta[index] = delta;
        for (int key = s.FirstKey(a.SegmentStarts, b, t); key <= t; key++)
        {
            long ki = s.Row(b, key, kv, s.KvHeads);
            float dot = 0f, dp = 0f;
            for (int d = 0; d < s.HeadDim; d++)
            {
                dot += a.Q[qi + d] * a.K[ki + d];
                dp += a.DOutput[qi + d] * a.V[ki + d];
            }
            float p = DeviceMath.Exp(dot * s.Scale - lse);
            float ds = p * (dp - delta);
            for (int d = 0; d < s.HeadDim; d++) a.Dq[qi + d] += s.Scale * ds * a.K[ki + d];
        }
    }

    // index = (b·KV + kv)·T + key.   dv[key] = Σ_h Σ_{t ≥ key} P·dO[t];  dk[key] = scale·Σ_h Σ_{t ≥ key} P·(dP − Δ)·q[t]
    private static void AttentionBackwardKeyValueKernel(Index1D index, AttentionViews a, AttentionShape s)
    {
        int key = index % s.SeqLen, bkv = index / s.SeqLen, kv = bkv % s.KvHeads, b = bkv / s.KvHeads;
        long ki = s.Row(b, key, kv, s.KvHeads);
        for (int d = 0; d < s.HeadDim; d++)
        {
            a.Dk[ki + d] = 0f;
            a.Dv[ki + d] = 0f;
        }
        for (int h = kv * s.Group; h < (kv + 1) * s.Group; h++)
            for (int t = key; t < s.SeqLen && s.FirstKey(a.SegmentStarts, b, t) <= key; t++)
            {
                long qi = s.Row(b, t, h, s.Heads);
                int row = (b * s.Heads + h) * s.SeqLen + t;
                float dot = 0f, dp = 0f;
                for (int d = 0; d < s.HeadDim; d++)
                {
                    dot += a.Q[qi + d] * a.K[ki + d];
                    dp += a.DOutput[qi + d] * a.V[ki + d];
                }
                float p = DeviceMath.Exp(dot * s.Scale - a.LogSumExp[row]);
                float ds = p * (dp - a.Delta[row]);
                for (int d = 0; d < s.HeadDim; d++)
                {
                    a.Dv[ki + d] += p * a.DOutput[qi + d];
                    a.Dk[ki + d] += s.Scale * ds * a.Q[qi + d];
                }
            }
    }

    // index = (b·H + h)·T + key.   the kv-head kernel's sums for one query head h:
    //   dvPartial[b,key,h] = Σ_{t ≥ key} P·dO[t];  dkPartial[b,key,h] = scale·Σ_{t ≥ key} P·(dP − Δ)·q[t]
    private static void AttentionBackwardKeyValuePerHeadKernel(Index1D index, AttentionViews a, AttentionShape s)
    {
        int key = index % s.SeqLen, bh = index / s.SeqLen, h = bh % s.Heads, b = bh / s.Heads;
        long ki = s.Row(b, key, h / s.Group, s.KvHeads);
        long pi = s.Row(b, key, h, s.Heads);
        for (int d = 0; d < s.HeadDim; d++)
        {
            a.DkPartial[pi + d] = 0f;
            a.DvPartial[pi + d] = 0f;
        }
        for (int t = key; t < s.SeqLen && s.FirstKey(a.SegmentStarts, b, t) <= key; t++)
        {
            long qi = s.Row(b, t, h, s.Heads);
            int row = bh * s.SeqLen + t;
            float dot = 0f, dp = 0f;
            for (int d = 0; d < s.HeadDim; d++)
            {
                dot += a.Q[qi + d] * a.K[ki + d];
                dp += a.DOutput[qi + d] * a.V[ki + d];
            }
            float p = DeviceMath.Exp(dot * s.Scale - a.LogSumExp[row]);
            float ds = p * (dp - a.Delta[row]);
            for (int d = 0; d < s.HeadDim; d++)
            {
                a.DvPartial[pi + d] += p * a.DOutput[qi + d];
                a.DkPartial[pi + d] += s.Scale * ds * a.Q[qi + d];
            }
        }
    }

    // index = ((b·T + key)·KV + kv)·D + d.   dk, dv = Σ over the group's query heads of the partials, in head order
    private static void AttentionSumHeadGroupsKernel(Index1D index, AttentionViews a, AttentionShape s)
    {
        int d = index % s.HeadDim, rest = index / s.HeadDim, kv = rest % s.KvHeads, bt = rest / s.KvHeads;
        long first = ((long)bt * s.Heads + kv * s.Group) * s.HeadDim + d;
        float dk = 0f, dv = 0f;
        for (int g = 0; g < s.Group; g++)
        {
            dk += a.DkPartial[first + (long)g * s.HeadDim];
            dv += a.DvPartial[first + (long)g * s.HeadDim];
        }
        a.Dk[index] = dk;
        a.Dv[index] = dv;
    }
}
