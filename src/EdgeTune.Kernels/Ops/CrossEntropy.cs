using System.Numerics;

namespace EdgeTune.Kernels;

// The output head fused with softmax cross-entropy.
//   hidden: (N,C)  head: (V,C)  targets: (N), −1 = no loss at that row
//   forward   logits[n] = head·hidden[n];  loss = Σ_{n: target ≥ 0} −log softmax(logits[n])[target[n]]
//   backward  dlogits[n] = gradScale·(softmax(logits[n]) − onehot(target[n]))  (zero where target = −1)
//             dHidden[n] = dlogits[n]·head (overwritten);  dHead += dlogitsᵀ·hidden (accumulated)
//   Empty dHidden / dHead spans mean the gradient is not wanted.
public static partial class Reference
{
    public static T CrossEntropy<T>(ReadOnlySpan<T> hidden, ReadOnlySpan<T> head, ReadOnlySpan<int> targets, int n, int c, int vocab,
        T gradScale, Span<T> dHidden, Span<T> dHead) where T : IFloatingPointIeee754<T>
    {
        CheckCrossEntropy(hidden.Length, head.Length, targets, n, c, vocab);
        if (!dHidden.IsEmpty) Shapes.Require(dHidden.Length, (long)n * c, nameof(dHidden), $"(N={n},C={c})");
        if (!dHead.IsEmpty) Shapes.Require(dHead.Length, (long)vocab * c, nameof(dHead), $"(V={vocab},C={c})");
        var logits = new T[vocab];
        T loss = T.Zero;
        for (int row = 0; row < n; row++)
        {
            var h = hidden.Slice(row * c, c);
            if (!dHidden.IsEmpty) dHidden.Slice(row * c, c).Clear();
            int target = targets[row];
            if (target < 0) continue;
            T max = T.NegativeInfinity;
            for (int o = 0; o < vocab; o++)
            {
                T dot = T.Zero;
                for (int i = 0; i < c; i++) dot += h[i] * head[o * c + i];
                logits[o] = dot;
                max = T.Max(max, dot);
            }
            T sum = T.Zero;
            for (int o = 0; o < vocab; o++) sum += T.Exp(logits[o] - max);
            T lse = max + T.Log(sum);
            loss += lse - logits[target];
            for (int o = 0; o < vocab; o++)
            {
                T dlogit = gradScale * (T.Exp(logits[o] - lse) - (o == target ? T.One : T.Zero));
                for (int i = 0; i < c; i++)
                {
                    if (!dHidden.IsEmpty) dHidden[row * c + i] += dlogit * head[o * c + i];
                    if (!dHead.IsEmpty) dHead[o * c + i] += dlogit * h[i];
                }
            }
        }
        return loss;
    }

    internal static void CheckCrossEntropy(long hidden, long head, ReadOnlySpan<int> targets, int n, int c, int vocab)
    {
        Shapes.NonNegative(n, nameof(n));
        Shapes.Positive(c, nameof(c));
        Shapes.Positive(vocab, nameof(vocab));
        Shapes.Require(hidden, (long)n * c, nameof(hidden), $"(N={n},C={c})");
        Shapes.Require(head, (long)vocab * c, nameof(head), $"(V={vocab},C={c})");
        Shapes.Require(targets.Length, n, nameof(targets), $"(N={n})");
        for (int i = 0; i < n; i++)
            if (targets[i] < -1 || targets[i] >= vocab)
                throw new ArgumentOutOfRangeException(nameof(targets), $"target {targets[i]} at row {i} is neither −1 nor inside the vocabulary of {vocab}");
    }
}
