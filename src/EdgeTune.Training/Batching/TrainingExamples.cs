using EdgeTune.Core;
using EdgeTune.Data;
using EdgeTune.Data.Templating;

namespace EdgeTune.Training.Batching;

/// <summary>One templated example as the model trains on it: ids, and the target of every position (−1: no loss).</summary>
public sealed record TrainingExample(string File, long Line, int[] Ids, int[] Targets)
{
    public int TrainedTokens => Targets.Count(t => t >= 0);
}

/// <summary>
/// A batch: B sequences right-padded to T; padding rows have target −1. <see cref="Offsets"/>: where each example's
/// first token sits in the flattened (B·T) layout. <see cref="SegmentStarts"/>: null with one example per sequence;
/// packed, the (B,T) start of each row's example within its sequence (the attention and RoPE kernels take it).
/// </summary>
public sealed record Batch(int Size, int SeqLen, int[] Tokens, int[] Targets, int[] Offsets, int[]? SegmentStarts = null)
{
    public int TrainedTokens => Targets.Count(t => t >= 0);

    /// <summary>Tokens that are not padding.</summary>
    public int UsefulTokens { get; init; }
}

public static class TrainingExamples
{
    /// <summary>
    /// Reads a dataset file, renders every example with the model's chat template and builds its targets: position t
    /// predicts token t + 1 where the loss mask trains it. The end-of-turn token of each answer is a target by its
    /// position, so a padding id equal to it cannot hide it. Examples over <paramref name="maxSeqLen"/> are left out
    /// (never cut inside the answer) and counted in the returned findings, as are malformed lines.
    /// </summary>
    public static (List<TrainingExample> Examples, List<DataFinding> Findings) Load(string path, Templater templater, ReadOptions? read = null)
    {
        var examples = new List<TrainingExample>();
        var findings = new List<DataFinding>();
        foreach (var item in DatasetReader.Read(path, read))
        {
            if (item.Finding is { } f) findings.Add(f);
            if (item.Example is not { } example) continue;
            var (rendered, finding) = templater.Render(example);
            if (finding is not null) findings.Add(finding);
            if (rendered is null) continue;
            var targets = new int[rendered.Ids.Length];
            for (int t = 0; t < targets.Length; t++)
                targets[t] = t + 1 < rendered.Ids.Length && rendered.Trained[t + 1] ? rendered.Ids[t + 1] : -1;
            if (targets.All(t => t < 0))
            {
                findings.Add(new DataFinding("no-target", Severity.Warning, example.File, example.Line, "no trained token after templating (an empty answer?); left out"));
                continue;
            }
            examples.Add(new TrainingExample(example.File, example.Line, rendered.Ids, targets));
        }
        return (examples, findings);
    }

    /// <summary>One example per sequence, right-padded to the longest.</summary>
    public static Batch Collate(IReadOnlyList<TrainingExample> items, int padId)
    {
        int seqLen = items.Max(e => e.Ids.Length);
        var tokens = new int[items.Count * seqLen];
        var targets = new int[items.Count * seqLen];
        Array.Fill(tokens, padId);
        Array.Fill(targets, -1);
        var offsets = new int[items.Count];
        for (int b = 0; b < items.Count; b++)
        {
            offsets[b] = b * seqLen;
            items[b].Ids.CopyTo(tokens, b * seqLen);
            items[b].Targets.CopyTo(targets, b * seqLen);
        }
        return new Batch(items.Count, seqLen, tokens, targets, offsets) { UsefulTokens = items.Sum(e => e.Ids.Length) };
    }

    /// <summary>
    /// Sequence packing: the same examples, several to a sequence of at most <paramref name="maxSeqLen"/> tokens
    /// (first-fit, longest first: few sequences, little padding), right-padded to the fullest. With room for all of
    /// them, one sequence of the examples back to back: no padding at all. Each example keeps its
    /// own targets (the loss mask) and gets a segment: attention stays inside it and RoPE positions restart at its
    /// first token, so each example's loss and gradients are those of <see cref="Collate"/> up to float rounding.
    /// Padding rows form one segment of their own at the end of a sequence, with target −1.
    /// </summary>
    public static Batch Pack(IReadOnlyList<TrainingExample> items, int padId, int maxSeqLen)
    {
        var rows = new List<List<int>>();
        var fill = new List<int>();
        foreach (int i in Enumerable.Range(0, items.Count).OrderByDescending(i => items[i].Ids.Length).ThenBy(i => i))
        {
            int length = items[i].Ids.Length;
            if (length > maxSeqLen) throw new ArgumentException($"example {items[i].File}:{items[i].Line} has {length} tokens, over the {maxSeqLen} a packed sequence holds");
            int row = fill.FindIndex(f => f + length <= maxSeqLen);
            if (row < 0) { rows.Add([]); fill.Add(0); row = rows.Count - 1; }
            rows[row].Add(i);
            fill[row] += length;
        }
        int seqLen = fill.Max();
        var tokens = new int[rows.Count * seqLen];
        var targets = new int[rows.Count * seqLen];
        var starts = new int[rows.Count * seqLen];
        var offsets = new int[items.Count];
        Array.Fill(tokens, padId);
        Array.Fill(targets, -1);
        for (int b = 0; b < rows.Count; b++)
        {
            int t = 0;
            foreach (int i in rows[b])
            {
                offsets[i] = b * seqLen + t;
                items[i].Ids.CopyTo(tokens, offsets[i]);
                items[i].Targets.CopyTo(targets, offsets[i]);
                starts.AsSpan(offsets[i], items[i].Ids.Length).Fill(t);
                t += items[i].Ids.Length;
            }
            starts.AsSpan(b * seqLen + t, seqLen - t).Fill(t);
        }
        return new Batch(rows.Count, seqLen, tokens, targets, offsets, starts) { UsefulTokens = items.Sum(e => e.Ids.Length) };
    }

    /// <summary>The seeded order of an epoch (Fisher–Yates over SplitMix64), derived from the seed and epoch alone so a resume reproduces it.</summary>
    public static int[] EpochOrder(int count, ulong seed, int epoch)
    {
        var order = Enumerable.Range(0, count).ToArray();
        ulong state = Model.TrainableLlama.Mix(seed ^ (0x45504F43UL + (ulong)epoch * 0x9E3779B97F4A7C15UL));
        for (int i = count - 1; i > 0; i--)
        {
            int j = (int)(Core.Numerics.SplitMix64.Next(ref state) % (ulong)(i + 1));
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }
}
