using EdgeTune.Core;
using EdgeTune.Data;
using EdgeTune.Data.Templating;

namespace EdgeTune.Training.Batching;

/// <summary>One templated example as the model trains on it: ids, and the target of every position (−1: no loss).</summary>
public sealed record TrainingExample(string File, long Line, int[] Ids, int[] Targets)
{
    public int TrainedTokens => Targets.Count(t => t >= 0);
}

/// <summary>A batch: B sequences right-padded to T; padding rows have target −1.</summary>
public sealed record Batch(int Size, int SeqLen, int[] Tokens, int[] Targets)
{
    public int TrainedTokens => Targets.Count(t => t >= 0);
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

    public static Batch Collate(IReadOnlyList<TrainingExample> items, int padId)
    {
        int seqLen = items.Max(e => e.Ids.Length);
        var tokens = new int[items.Count * seqLen];
        var targets = new int[items.Count * seqLen];
        Array.Fill(tokens, padId);
        Array.Fill(targets, -1);
        for (int b = 0; b < items.Count; b++)
        {
            items[b].Ids.CopyTo(tokens, b * seqLen);
            items[b].Targets.CopyTo(targets, b * seqLen);
        }
        return new Batch(items.Count, seqLen, tokens, targets);
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
