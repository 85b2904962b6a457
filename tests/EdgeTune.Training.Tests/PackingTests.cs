using System.Globalization;
using System.Text.Json;
using EdgeTune.Data.Templating;
using EdgeTune.Kernels.Cpu;
using EdgeTune.Testing;
using EdgeTune.Training.Batching;
using EdgeTune.Training.Model;
using Xunit.Abstractions;

namespace EdgeTune.Training.Tests;

/// <summary>
/// Sequence packing ([train] packing = true): the same examples, several to a sequence, must train exactly as they do
/// one to a sequence: each example's loss and the step's gradients agree, and so do two runs of the same recipe.
/// </summary>
public class PackingTests(ITestOutputHelper output)
{
    private static List<TrainingExample> Examples(string dir, int count)
    {
        TinyTask.WriteData(Path.Combine(dir, "train.jsonl"), count, seed: 3);
        var (template, tokenizer, _) = Templater.LoadModel(Path.Combine(dir, "base.gguf"));
        return TrainingExamples.Load(Path.Combine(dir, "train.jsonl"), new Templater(template, tokenizer, new TemplateOptions { MaxTokens = 96 })).Examples;
    }

    [Fact]
    public void Packing_puts_several_examples_in_a_sequence_and_keeps_each_ones_targets()
    {
        using var dir = new TempDir();
        TinyTask.WriteModel(dir.Path);
        var examples = Examples(dir.Path, 8);
        var packed = TrainingExamples.Pack(examples, padId: 0, maxSeqLen: 96);
        Assert.True(packed.Size < examples.Count, $"{examples.Count} examples in {packed.Size} sequences");
        Assert.Equal(examples.Sum(e => e.TrainedTokens), packed.TrainedTokens);
        Assert.Equal(examples.Sum(e => e.Ids.Length), packed.UsefulTokens);
        for (int i = 0; i < examples.Count; i++)
        {
            int at = packed.Offsets[i], t0 = at % packed.SeqLen;
            Assert.Equal(examples[i].Ids, packed.Tokens[at..(at + examples[i].Ids.Length)]);
            Assert.Equal(examples[i].Targets, packed.Targets[at..(at + examples[i].Ids.Length)]);
            Assert.All(packed.SegmentStarts![at..(at + examples[i].Ids.Length)], s => Assert.Equal(t0, s));
        }
        EdgeTune.Kernels.Reference.CheckSegmentStarts(packed.SegmentStarts, packed.Size, packed.SeqLen);
    }

    [Fact]
    public void Each_examples_loss_and_the_gradients_are_the_same_packed_and_unpacked()
    {
        using var dir = new TempDir();
        TinyTask.WriteModel(dir.Path);
        var examples = Examples(dir.Path, 8);
        using var w = BaseWeights.Open(dir.File("base.gguf"));
        using var backend = new CpuBackend(2);
        using var model = new TrainableLlama(w, new TrainingSetup { Rank = 4, Alpha = 8 }, backend);
        // Non-zero LoRA B, so the adapter is in the forward and its gradients are not trivially zero.
        foreach (var slot in model.Layout.Slots.Where(s => s.Name.EndsWith(".lora_b", StringComparison.Ordinal)))
            model.Write(slot.Name, Enumerable.Range(0, (int)slot.Length).Select(i => MathF.Cos(i) * 0.05f).ToArray());
        var plain = TrainingExamples.Collate(examples, padId: 0);
        var packed = TrainingExamples.Pack(examples, padId: 0, maxSeqLen: 96);

        double worst = 0;
        for (int i = 0; i < examples.Count; i++)
        {
            double a = model.Step(plain.Tokens, Only(plain, i, examples[i]), plain.Size, plain.SeqLen, train: false, 0, 0, null);
            double b = model.Step(packed.Tokens, Only(packed, i, examples[i]), packed.Size, packed.SeqLen, train: false, 0, 0, null, packed.SegmentStarts);
            worst = Math.Max(worst, Math.Abs(a - b) / examples[i].TrainedTokens);
        }
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{examples.Count} examples in {packed.Size}×{packed.SeqLen} packed vs {plain.Size}×{plain.SeqLen}; worst per-example loss difference (per token) {worst:E2}"));
        Assert.True(worst <= 1e-5, $"per-example loss differs by {worst:E2}");

        model.ZeroGradients();
        model.Step(plain.Tokens, plain.Targets, plain.Size, plain.SeqLen, train: true, 1f / plain.TrainedTokens, 0, null);
        var expected = model.Layout.Slots.ToDictionary(s => s.Name, s => model.ReadGradient(s.Name));
        model.ZeroGradients();
        model.Step(packed.Tokens, packed.Targets, packed.Size, packed.SeqLen, train: true, 1f / packed.TrainedTokens, 0, null, packed.SegmentStarts);
        foreach (var slot in model.Layout.Slots)
        {
            var g = model.ReadGradient(slot.Name);
            double scale = Math.Max(1e-6, expected[slot.Name].Max(x => Math.Abs(x)));
            for (int j = 0; j < g.Length; j++)
                Assert.True(Math.Abs(g[j] - expected[slot.Name][j]) <= 1e-4 * scale, $"{slot.Name}[{j}]: packed {g[j]}, unpacked {expected[slot.Name][j]}");
        }
    }

    [Fact]
    public void A_packed_run_has_the_losses_of_the_unpacked_run()
    {
        using var dir = new TempDir();
        TinyTask.WriteModel(dir.Path);
        TinyTask.WriteData(dir.File("train.jsonl"), 48, seed: 1);
        TinyTask.WriteData(dir.File("eval.jsonl"), 8, seed: 2);
        using var backend = new CpuBackend(2);
        var plain = new Trainer(TinyTask.Recipe(dir.Path, steps: 8, run: "plain"), backend).Run(resume: false);
        var packed = new Trainer(TinyTask.Recipe(dir.Path, steps: 8, run: "packed", extra: "packing = true"), backend).Run(resume: false);
        var a = Losses(plain.MetricsPath);
        var b = Losses(packed.MetricsPath);
        Assert.Equal(8, a.Count);
        Assert.Equal(a.Count, b.Count);
        for (int i = 0; i < a.Count; i++)
            Assert.True(Math.Abs(a[i] - b[i]) <= 1e-5, string.Create(CultureInfo.InvariantCulture, $"step {i + 1}: unpacked loss {a[i]:R}, packed {b[i]:R}"));
    }

    [Fact]
    public void The_teachers_rows_follow_the_packed_layout()
    {
        using var dir = new TempDir();
        TinyTask.WriteModel(dir.Path);
        var examples = Examples(dir.Path, 6);
        const int k = 2;
        // Entry of trained position r of example i: ids (i, r), log-probs −(i + 1).
        var logits = new Distillation.TeacherLogits
        {
            Key = new Distillation.TeacherLogitsKey("", "", null, "", k, 1000), Teacher = "t", TopK = k,
            Examples = [.. examples.Select((e, i) => (
                Enumerable.Range(0, e.TrainedTokens).SelectMany(r => new[] { i, r }).ToArray(),
                Enumerable.Repeat(-(i + 1f), e.TrainedTokens * k).ToArray()))],
        };
        var packed = TrainingExamples.Pack(examples, padId: 0, maxSeqLen: 96);
        var (ids, lp) = logits.Collate([.. Enumerable.Range(0, examples.Count)], examples, packed);
        Assert.Equal(packed.Tokens.Length * k, ids.Length);
        for (int i = 0; i < examples.Count; i++)
        {
            int r = 0;
            for (int t = 0; t < examples[i].Targets.Length; t++)
            {
                if (examples[i].Targets[t] < 0) continue;
                int row = packed.Offsets[i] + t;
                Assert.Equal([i, r], ids[(row * k)..(row * k + k)]);
                Assert.Equal(-(i + 1f), lp[row * k]);
                r++;
            }
        }
        // Rows without a target (prompts, padding) carry nothing.
        for (int row = 0; row < packed.Targets.Length; row++)
            if (packed.Targets[row] < 0) Assert.Equal(0f, lp[row * k]);
    }

    /// <summary>The batch's targets with only example <paramref name="i"/>'s kept: the summed loss is that example's.</summary>
    private static int[] Only(Batch batch, int i, TrainingExample e)
    {
        var targets = Enumerable.Repeat(-1, batch.Targets.Length).ToArray();
        e.Targets.CopyTo(targets, batch.Offsets[i]);
        return targets;
    }

    private static List<double> Losses(string metrics) =>
        File.ReadLines(metrics).Select(l => JsonDocument.Parse(l).RootElement)
            .Where(e => e.TryGetProperty("loss", out _)).Select(e => e.GetProperty("loss").GetDouble()).ToList();
}
