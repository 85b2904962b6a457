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
    internal static string Setup(TempDir dir, int trainCount = 256)
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
        TrainingDetailTests.AssertSameAdapter(straight.AdapterGguf!, resumed.AdapterGguf!);
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

    internal sealed class SyncProgress(Action<TrainProgress> report) : IProgress<TrainProgress>
    {
        public void Report(TrainProgress value) => report(value);
    }
}

public class TrainingDetailTests
{
    [Fact]
    public void Activation_checkpointing_gives_the_same_gradients_with_less_memory()
    {
        using var dir = new TempDir();
        string path = TinyTask.WriteModel(dir.Path);
        using var w = EdgeTune.Training.Model.BaseWeights.Open(path);
        using var backend = new CpuBackend(2);
        var setup = new EdgeTune.Training.Model.TrainingSetup { Rank = 4, Alpha = 8, Dropout = 0.1 };
        using var plain = new EdgeTune.Training.Model.TrainableLlama(w, setup, backend);
        using var recompute = new EdgeTune.Training.Model.TrainableLlama(w, setup with { ActivationCheckpointing = true }, backend);
        var rng = new Random(2);
        var tokens = Enumerable.Range(0, 2 * 24).Select(_ => rng.Next(w.Config.VocabSize)).ToArray();
        var targets = tokens.Skip(1).Append(-1).ToArray();
        foreach (var m in new[] { plain, recompute })
        {
            foreach (var slot in m.Layout.Slots.Where(s => s.Name.EndsWith(".lora_b", StringComparison.Ordinal)))
                m.Write(slot.Name, Enumerable.Range(0, (int)slot.Length).Select(i => MathF.Cos(i) * 0.05f).ToArray());
            m.ZeroGradients();
            m.Step(tokens, targets, 2, 24, train: true, 1f / 46, 5);
        }
        foreach (var slot in plain.Layout.Slots) Assert.Equal(plain.ReadGradient(slot.Name), recompute.ReadGradient(slot.Name));
        Assert.True(recompute.ActivationBytes < plain.ActivationBytes, $"{recompute.ActivationBytes} vs {plain.ActivationBytes}");
    }

    [Fact]
    public void The_end_of_turn_token_stays_a_target_when_padding_uses_the_same_id()
    {
        // Targets follow the loss mask by position; padding is marked by position too, never by id.
        int eot = 7;
        var a = new EdgeTune.Training.Batching.TrainingExample("f", 1, [1, 5, 6, eot], [-1, 6, eot, -1]);
        var b = new EdgeTune.Training.Batching.TrainingExample("f", 2, [1, 5, 6, 8, 9, eot], [-1, -1, 8, 9, eot, -1]);
        var batch = EdgeTune.Training.Batching.TrainingExamples.Collate([a, b], padId: eot);
        Assert.Equal(6, batch.SeqLen);
        Assert.Equal([1, 5, 6, eot, eot, eot], batch.Tokens[..6]);
        Assert.Equal([-1, 6, eot, -1, -1, -1], batch.Targets[..6]);
        Assert.Equal(5, batch.TrainedTokens);
    }

    /// <summary>A run folder whose eval set the training data cannot help with (other labels): eval loss rises once the task is learnt.</summary>
    private static void EarlyStoppingTask(TempDir dir)
    {
        TinyTask.WriteModel(dir.Path);
        TinyTask.WriteData(dir.File("train.jsonl"), 64, seed: 1);
        using var w = new StreamWriter(dir.File("eval.jsonl"));
        for (int i = 0; i < 16; i++) w.WriteLine(JsonSerializer.Serialize(new { prompt = "hello the world", response = i % 2 == 0 ? "device" : "the" }));
    }

    internal static void AssertSameAdapter(string expected, string actual)
    {
        var a = LoraAdapter.Open(expected).Pairs;
        var b = LoraAdapter.Open(actual).Pairs;
        Assert.Equal(a.Select(p => p.Name), b.Select(p => p.Name));
        for (int i = 0; i < a.Count; i++)
        {
            Assert.Equal(a[i].A, b[i].A);
            Assert.Equal(a[i].B, b[i].B);
        }
    }

    [Fact]
    public void Early_stopping_ends_the_run_and_exports_the_best_step()
    {
        using var dir = new TempDir();
        EarlyStoppingTask(dir);
        var recipe = TinyTask.Recipe(dir.Path, extra: "eval_every = 5\nearly_stopping_patience = 2", steps: 200);
        using var backend = new CpuBackend(2);
        var result = new Trainer(recipe, backend).Run(resume: false);
        Assert.StartsWith("early stop at step", result.StopReason, StringComparison.Ordinal);
        Assert.True(result.Steps < 200);
        Assert.NotNull(result.BestStep);
        Assert.True(result.BestStep < result.Steps);
    }

    [Fact]
    public void A_run_interrupted_after_its_best_step_exports_that_step_when_resumed()
    {
        using var dir = new TempDir();
        EarlyStoppingTask(dir);
        const string extra = "eval_every = 5\ncheckpoint_every = 5\nearly_stopping_patience = 2";
        using var backend = new CpuBackend(2);
        var straight = new Trainer(TinyTask.Recipe(dir.Path, extra: extra, steps: 200, run: "straight"), backend).Run(resume: false);
        int best = straight.BestStep!.Value;

        // Interrupted one evaluation after the best (the checkpoint of that step is written, early stopping not yet due).
        var recipe = TinyTask.Recipe(dir.Path, extra: extra, steps: 200, run: "interrupted");
        using var cancel = new CancellationTokenSource();
        var stop = new TrainerTests.SyncProgress(p => { if (p.Step == best + 5) cancel.Cancel(); });
        Assert.Throws<OperationCanceledException>(() => new Trainer(recipe, backend, stop).Run(resume: false, cancel.Token));
        var resumed = new Trainer(recipe, backend).Run(resume: true);

        Assert.Equal((straight.Steps, best), (resumed.Steps, resumed.BestStep));
        AssertSameAdapter(straight.AdapterGguf!, resumed.AdapterGguf!); // the best step's parameters, not the last step's
    }

    [Fact]
    public void Resume_without_a_checkpoint_is_an_error_and_keeps_the_metrics()
    {
        using var dir = new TempDir();
        TrainerTests.Setup(dir, 16);
        var recipe = TinyTask.Recipe(dir.Path, steps: 2);
        Directory.CreateDirectory(recipe.Output.Dir);
        string metrics = Path.Combine(recipe.Output.Dir, "metrics.jsonl");
        File.WriteAllText(metrics, "{\"step\": 1, \"loss\": 2.5}\n");
        using var backend = new CpuBackend(2);
        var e = Assert.Throws<EdgeTune.Core.EdgeTuneException>(() => new Trainer(recipe, backend).Run(resume: true));
        Assert.Contains("no checkpoint to resume from", e.Message, StringComparison.Ordinal);
        Assert.Equal("{\"step\": 1, \"loss\": 2.5}\n", File.ReadAllText(metrics));
    }
}
