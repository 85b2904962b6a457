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
            T lse = RowLogits(h, head, c, logits);
            loss += lse - logits[target];
            for (int o = 0; o < vocab; o++) logits[o] = gradScale * (T.Exp(logits[o] - lse) - (o == target ? T.One : T.Zero));
            HeadBackward(row, h, head, c, logits, dHidden, dHead);
        }
        return loss;
    }

    /// <summary>Fills <paramref name="logits"/> with head·h for one row and returns their log-sum-exp.</summary>
    private static T RowLogits<T>(ReadOnlySpan<T> h, ReadOnlySpan<T> head, int c, Span<T> logits) where T : IFloatingPointIeee754<T>
    {
        T max = T.NegativeInfinity;
        for (int o = 0; o < logits.Length; o++)
        {
            T dot = T.Zero;
            for (int i = 0; i < c; i++) dot += h[i] * head[o * c + i];
            logits[o] = dot;
            max = T.Max(max, dot);
        }
        T sum = T.Zero;
        for (int o = 0; o < logits.Length; o++) sum += T.Exp(logits[o] - max);
        return max + T.Log(sum);
    }

    /// <summary>Adds one row's logit gradients <paramref name="dLogits"/> into dHidden (that row) and dHead, each when given.</summary>
    private static void HeadBackward<T>(int row, ReadOnlySpan<T> h, ReadOnlySpan<T> head, int c, ReadOnlySpan<T> dLogits, Span<T> dHidden, Span<T> dHead)
        where T : IFloatingPointIeee754<T>
    {
        for (int o = 0; o < dLogits.Length; o++)
        {
            T dlogit = dLogits[o];
            for (int i = 0; i < c; i++)
            {
                if (!dHidden.IsEmpty) dHidden[row * c + i] += dlogit * head[o * c + i];
                if (!dHead.IsEmpty) dHead[o * c + i] += dlogit * h[i];
            }
        }
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
