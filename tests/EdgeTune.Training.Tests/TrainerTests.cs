using System.Text.Json;
using EdgeTune.Data.Templating;
using EdgeTune.Kernels;
using EdgeTune.Kernels.Cpu;
using EdgeTune.Models.Adapters;
using EdgeTune.Models.Chat;
using EdgeTune.Models.Reference;
using EdgeTune.Testing;

namespace EdgeTune.Training.Tests;

public class TrainerTests
{
    private static string Setup(TempDir dir, int trainCount = 256)
    {
        TinyTask.WriteModel(dir.Path);
        TinyTask.WriteData(dir.File("train.jsonl"), trainCount, seed: 1);
        TinyTask.WriteData(dir.File("eval.jsonl"), 32, seed: 2);
        return dir.Path;
    }

    /// <summary>Greedy answers of base (+ adapter) on held-out prompts, compared exactly with the labels.</summary>
    private static double ExactMatch(string basePath, string? adapter, int count, int seed)
    {
        var (template, tokenizer, _) = Templater.LoadModel(basePath);
        var model = ReferenceModel.FromGguf(basePath, ReferencePrecision.Float32, adapter is null ? null : LoraAdapter.Open(adapter));
        var rng = new Random(seed);
        int hits = 0;
        for (int i = 0; i < count; i++)
        {
            var (prompt, answer) = TinyTask.Example(rng);
            var ids = tokenizer.Encode(template.Apply([new ChatMessage("user", prompt)], true), addSpecialTokens: true, parseSpecial: true).ToArray();
            // The answer's tokens as they follow the prompt in the whole conversation, through the end-of-turn token.
            var full = tokenizer.Encode(template.Apply([new ChatMessage("user", prompt), new ChatMessage("assistant", answer)], false), addSpecialTokens: true, parseSpecial: true).ToArray();
            Assert.Equal(ids, full[..ids.Length]);
            int end = Array.FindIndex(full, ids.Length, t => tokenizer.IsSpecial(t));
            var expected = full[ids.Length..(end + 1)];
            var got = model.Greedy(ids, expected.Length);
            if (got.SequenceEqual(expected)) hits++;
        }
        return (double)hits / count;
    }

    private static List<double> Losses(string metrics) =>
        File.ReadLines(metrics).Select(l => JsonDocument.Parse(l).RootElement)
            .Where(e => e.TryGetProperty("loss", out _)).Select(e => e.GetProperty("loss").GetDouble()).ToList();

    [Theory]
    [InlineData("lora")]
    [InlineData("qlora")]
    public void Training_teaches_the_task_held_out_exact_match_rises(string method)
    {
        using var dir = new TempDir();
        Setup(dir);
        var recipe = TinyTask.Recipe(dir.Path, method, steps: 80);
        using var backend = new CpuBackend(2);
        var result = new Trainer(recipe, backend).Run(resume: false);

        double before = ExactMatch(recipe.Model.Base, null, 40, seed: 99);
        double after = ExactMatch(recipe.Model.Base, result.AdapterPeft, 40, seed: 99);
        var losses = Losses(result.MetricsPath);
        Assert.True(after >= 0.8 && after > before + 0.5, $"exact match {before:P0} before, {after:P0} after ({method}); losses {string.Join(" ", losses.Select(l => l.ToString("F2")))}");
        Assert.True(losses[^1] < losses[0] / 3, $"loss {losses[0]:F3} → {losses[^1]:F3}");
        Assert.True(File.Exists(result.LossCurve));
        Assert.NotNull(result.FinalEvalLoss);
        // The same adapter through llama.cpp's GGUF path answers like the PEFT copy.
        Assert.True(ExactMatch(recipe.Model.Base, result.AdapterGguf, 40, seed: 99) == after);
    }

    [Fact]
    public void A_resumed_run_continues_with_the_losses_of_an_uninterrupted_one()
    {
        using var dir = new TempDir();
        Setup(dir, 64);
        using var backend = new CpuBackend(2);
        const string every3 = "checkpoint_every = 3\ngradient_accumulation = 2";
        var straight = new Trainer(TinyTask.Recipe(dir.Path, extra: every3, steps: 8, dropout: 0.1, run: "straight"), backend).Run(resume: false);

        var recipe = TinyTask.Recipe(dir.Path, extra: every3, steps: 8, dropout: 0.1, run: "interrupted");
        using var cancel = new CancellationTokenSource();
        var stopAfter5 = new SyncProgress(p => { if (p.Step == 5) cancel.Cancel(); });
        Assert.Throws<OperationCanceledException>(() => new Trainer(recipe, backend, stopAfter5).Run(resume: false, cancel.Token));
        Assert.Equal(5, Losses(Path.Combine(recipe.Output.Dir, "metrics.jsonl")).Count);
        var resumed = new Trainer(recipe, backend).Run(resume: true);

        Assert.Equal(Losses(straight.MetricsPath), Losses(resumed.MetricsPath)); // bit for bit: steps 4 and 5 are redone identically
        var a = LoraAdapter.Open(straight.AdapterGguf!).Pairs;
        var b = LoraAdapter.Open(resumed.AdapterGguf!).Pairs;
        Assert.Equal(a.Select(p => p.Name), b.Select(p => p.Name));
        for (int i = 0; i < a.Count; i++)
        {
            Assert.Equal(a[i].A, b[i].A);
            Assert.Equal(a[i].B, b[i].B);
        }
    }

    [Fact]
    public void A_diverging_run_stops_with_the_step_and_what_to_change()
    {
        using var dir = new TempDir();
        Setup(dir, 64);
        using var backend = new CpuBackend(2);
        var recipe = TinyTask.Recipe(dir.Path, "full", extra: "max_grad_norm = 0.0", steps: 40);
        recipe = recipe with { Train = recipe.Train with { LearningRate = 1e8 } };
        var e = Assert.Throws<TrainingDivergedException>(() => new Trainer(recipe, backend).Run(resume: false));
        Assert.Matches("(became NaN|became infinite|exploded) at step [0-9]+", e.Message);
        Assert.All(File.ReadLines(Path.Combine(recipe.Output.Dir, "metrics.jsonl")), line => JsonDocument.Parse(line).Dispose());
        Assert.Contains("learning_rate", e.Message, StringComparison.Ordinal);
    }

    private sealed class SyncProgress(Action<TrainProgress> report) : IProgress<TrainProgress>
    {
        public void Report(TrainProgress value) => report(value);
    }
}
