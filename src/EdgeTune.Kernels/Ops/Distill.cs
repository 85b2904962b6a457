using System.Numerics;

namespace EdgeTune.Kernels;

/// <summary>Which divergence the distillation term is (TRL's generalised JSD family).</summary>
public enum DistillDivergence
{
    /// <summary>KL(teacher ‖ student): mass-covering; what Axolotl's top-k KD and torchtune use.</summary>
    ForwardKl,
    /// <summary>KL(student ‖ teacher): mode-seeking (MiniLLM, TRL's DistillationTrainer default).</summary>
    ReverseKl,
    /// <summary>Generalised JSD with β; β = 0 is forward KL and β = 1 reverse KL, as TRL's generalized_jsd_loss defines the endpoints.</summary>
    Jsd,
}

/// <summary>
/// The distillation term's settings. <see cref="Alpha"/> weighs it: loss = (1 − α)·CE(labels) + α·T²·D(teacher, student),
/// T² keeping the gradient's size independent of the temperature (Hinton et al.; Axolotl's kd_alpha·T²·KL).
/// </summary>
public readonly record struct DistillSettings(DistillDivergence Divergence, double Beta, double Temperature, double Alpha, int TopK)
{
    /// <summary>Throws on settings no formula is defined for.</summary>
    public void Check()
    {
        if (!(Temperature > 0) || !double.IsFinite(Temperature)) throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "the temperature must be positive");
        if (!(Alpha >= 0 && Alpha <= 1)) throw new ArgumentOutOfRangeException(nameof(Alpha), Alpha, "alpha must be in [0, 1]");
        if (!(Beta >= 0 && Beta <= 1)) throw new ArgumentOutOfRangeException(nameof(Beta), Beta, "beta must be in [0, 1]");
        Shapes.Positive(TopK, nameof(TopK));
    }

    /// <summary>The divergence with the JSD endpoints resolved to the KL variants.</summary>
    public DistillDivergence Effective => Divergence != DistillDivergence.Jsd ? Divergence
        : Beta == 0 ? DistillDivergence.ForwardKl : Beta == 1 ? DistillDivergence.ReverseKl : DistillDivergence.Jsd;
}

/// <summary>
/// The two sums a fused distillation head returns, over the rows with a target: Σ −log p(label) and Σ T²·D.
/// The loss the gradients are of is <see cref="Total"/>.
/// </summary>
public readonly record struct DistillLossSums(double CrossEntropy, double Distill)
{
    public double Total(double alpha) => (1 - alpha) * CrossEntropy + alpha * Distill;
}

// The output head fused with cross-entropy and a distillation term over the teacher's top-k entries.
//   hidden: (N,C)  head: (V,C)  targets: (N), −1 = no loss at that row
//   teacherIds: (N,K) token ids, teacherLogProbs: (N,K) the teacher's log-probabilities at T = 1 renormalised over its top k
//   per row with a target, over the K teacher ids (z = student logits there, τ = temperature):
//     student   log q = log_softmax(z/τ)        teacher   log p = log_softmax(teacherLogProbs/τ)   (p ∝ p₁^(1/τ))
//     forward   D = Σ p (log p − log q)                       ∂D/∂z = (q − p)/τ
//     reverse   D = Σ q (log q − log p)                       ∂D/∂z = q·(g − Σ q g)/τ, g = log q − log p
//     jsd(β)    m = (1−β)·q + β·p,  D = β·KL(p‖m) + (1−β)·KL(q‖m)   g = (1−β)·(log q − log m)
//   loss = (1 − α)·CE + α·τ²·D; dlogits = gradScale·((1 − α)·(softmax − onehot) + α·τ²·∂D/∂z at the K ids)
//   Both distributions live on the teacher's top-k support, so D = 0 (and its gradient) when the student's logits
//   equal the teacher's, whatever K; with K = V it is TRL's full-vocabulary generalised JSD.
public static partial class Reference
{
    public static DistillLossSums Distill<T>(ReadOnlySpan<T> hidden, ReadOnlySpan<T> head, ReadOnlySpan<int> targets,
        ReadOnlySpan<int> teacherIds, ReadOnlySpan<T> teacherLogProbs, DistillSettings settings, int n, int c, int vocab,
        T gradScale, Span<T> dHidden, Span<T> dHead) where T : IFloatingPointIeee754<T>
    {
        CheckDistill(hidden.Length, head.Length, targets, teacherIds, teacherLogProbs.Length, settings, n, c, vocab);
        if (!dHidden.IsEmpty) Shapes.Require(dHidden.Length, (long)n * c, nameof(dHidden), $"(N={n},C={c})");
        if (!dHead.IsEmpty) Shapes.Require(dHead.Length, (long)vocab * c, nameof(dHead), $"(V={vocab},C={c})");
        int k = settings.TopK;
        T alpha = T.CreateChecked(settings.Alpha);
        var logits = new T[vocab];
        var z = new T[k];
        var dz = new T[k];
        T ce = T.Zero, kd = T.Zero;
        for (int row = 0; row < n; row++)
        {
            var h = hidden.Slice(row * c, c);
            if (!dHidden.IsEmpty) dHidden.Slice(row * c, c).Clear();
            int target = targets[row];
            if (target < 0) continue;
            T lse = RowLogits(h, head, c, logits);
            ce += lse - logits[target];
            var ids = teacherIds.Slice(row * k, k);
            for (int i = 0; i < k; i++) z[i] = logits[ids[i]];
            kd += DistillRow(z, teacherLogProbs.Slice(row * k, k), settings, gradScale * alpha, dz);
            for (int o = 0; o < vocab; o++) logits[o] = gradScale * (T.One - alpha) * (T.Exp(logits[o] - lse) - (o == target ? T.One : T.Zero));
            for (int i = 0; i < k; i++) logits[ids[i]] += dz[i];
            HeadBackward(row, h, head, c, logits, dHidden, dHead);
        }
        return new DistillLossSums(double.CreateChecked(ce), double.CreateChecked(kd));
    }

    /// <summary>
    /// One row's τ²·D over the K teacher entries, from the student's logits <paramref name="z"/> at the teacher's ids;
    /// <paramref name="dz"/> is overwritten with scale·∂(τ²·D)/∂z. The CPU backend runs this (K is small next to V).
    /// </summary>
    public static T DistillRow<T>(ReadOnlySpan<T> z, ReadOnlySpan<T> teacherLogProbs, DistillSettings settings, T scale, Span<T> dz)
        where T : IFloatingPointIeee754<T>
    {
        int k = z.Length;
        T tau = T.CreateChecked(settings.Temperature), beta = T.CreateChecked(settings.Beta);
        T zMax = T.NegativeInfinity, tMax = T.NegativeInfinity;
        for (int i = 0; i < k; i++)
        {
            zMax = T.Max(zMax, z[i] / tau);
            tMax = T.Max(tMax, teacherLogProbs[i] / tau);
        }
        T zSum = T.Zero, tSum = T.Zero;
        for (int i = 0; i < k; i++)
        {
            zSum += T.Exp(z[i] / tau - zMax);
            tSum += T.Exp(teacherLogProbs[i] / tau - tMax);
        }
        T zLse = zMax + T.Log(zSum), tLse = tMax + T.Log(tSum);
        var divergence = settings.Effective;
        T d = T.Zero, qg = T.Zero;
        // First pass: D, and g (kept in dz) with Σ q·g for the softmax's Jacobian.
        for (int i = 0; i < k; i++)
        {
            T logQ = z[i] / tau - zLse, logP = teacherLogProbs[i] / tau - tLse;
            T q = T.Exp(logQ), p = T.Exp(logP), g;
            switch (divergence)
            {
                case DistillDivergence.ForwardKl:
                    if (p > T.Zero) d += p * (logP - logQ);
                    g = q - p; // already q·(g − Σ q g) for g = −p/q
                    break;
                case DistillDivergence.ReverseKl:
                    if (q > T.Zero) d += q * (logQ - logP);
                    g = logQ - logP;
                    break;
                default:
                    T logM = LogAddExp(logQ + T.Log(T.One - beta), logP + T.Log(beta));
                    if (p > T.Zero) d += beta * p * (logP - logM);
                    if (q > T.Zero) d += (T.One - beta) * q * (logQ - logM);
                    g = (T.One - beta) * (logQ - logM);
                    break;
            }
            dz[i] = g;
            qg += q * g;
        }
        // τ²·∂D/∂z = τ·(…): the 1/τ of z/τ against the τ² of the scaling.
        T outer = scale * tau;
        for (int i = 0; i < k; i++)
        {
            T q = T.Exp(z[i] / tau - zLse);
            dz[i] = divergence == DistillDivergence.ForwardKl ? outer * dz[i] : outer * q * (dz[i] - qg);
        }
        return tau * tau * d;
    }

    private static T LogAddExp<T>(T a, T b) where T : IFloatingPointIeee754<T>
    {
        T max = T.Max(a, b);
        return T.IsNegativeInfinity(max) ? max : max + T.Log(T.Exp(a - max) + T.Exp(b - max));
    }

    internal static void CheckDistill(long hidden, long head, ReadOnlySpan<int> targets, ReadOnlySpan<int> teacherIds, long teacherLogProbs,
        DistillSettings settings, int n, int c, int vocab)
    {
        CheckCrossEntropy(hidden, head, targets, n, c, vocab);
        settings.Check();
        int k = settings.TopK;
        if (k > vocab) throw new ArgumentOutOfRangeException(nameof(settings), k, $"top_k {k} is larger than the vocabulary of {vocab}");
        Shapes.Require(teacherIds.Length, (long)n * k, nameof(teacherIds), $"(N={n},K={k})");
        Shapes.Require(teacherLogProbs, (long)n * k, nameof(teacherLogProbs), $"(N={n},K={k})");
        for (int row = 0; row < n; row++)
        {
            if (targets[row] < 0) continue;
            for (int i = 0; i < k; i++)
                if ((uint)teacherIds[row * k + i] >= (uint)vocab)
                    throw new ArgumentOutOfRangeException(nameof(teacherIds), $"teacher id {teacherIds[row * k + i]} at row {row} is outside the vocabulary of {vocab}");
        }
    }
}
