using System.Text.Json;
using EdgeTune.Recipes;
using EdgeTune.Testing;
using EdgeTune.Training;

namespace EdgeTune.Cli.Tests;

public class PlanCommandTests
{
    [Fact]
    public void Plan_on_this_cpu_counts_every_part_and_the_schedule_the_trainer_runs()
    {
        using var dir = new TempDir();
        string recipe = TrainCommandTests.Project(dir);
        var r = CliRunner.Run("plan", recipe, "--device", "cpu", "--threads", "2", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("calibration: step", r.Stderr, StringComparison.Ordinal);
        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        Assert.Equal(3, root.GetProperty("steps").GetInt32());
        Assert.Equal(24, root.GetProperty("examples").GetInt32());
        Assert.True(root.GetProperty("fits").GetBoolean());
        long total = root.GetProperty("memory").EnumerateArray().Sum(p => p.GetProperty("bytes").GetInt64());
        Assert.Equal(total, root.GetProperty("memory_bytes").GetInt64());
        Assert.True(root.GetProperty("processed_tokens").GetInt64() > root.GetProperty("trained_tokens").GetInt64());
        Assert.True(root.GetProperty("seconds").GetDouble() > 0);

        // The same figures the trainer works with: its schedule, and the memory of the model it builds.
        var schedule = TrainingSchedule.For(Recipe.Load(recipe));
        Assert.Equal(3, schedule.MicroBatches.Count);
        Assert.Equal(schedule.ProcessedTokens, root.GetProperty("processed_tokens").GetInt64());
        var (batch, seq) = schedule.Largest;
        Assert.Equal(TrainingEstimate.Memory(schedule.Config, schedule.Setup, batch, seq).Total, total);
    }

    [Fact]
    public void Plan_counts_the_eval_passes_the_trainer_makes_and_sizes_memory_for_a_longer_eval_batch()
    {
        using var dir = new TempDir();
        string recipe = TrainCommandTests.Project(dir, "eval_every = 2");
        File.WriteAllText(recipe, File.ReadAllText(recipe).Replace("max_steps = 3", "max_steps = 5", StringComparison.Ordinal)
            .Replace("train = \"train.jsonl\"", "train = \"train.jsonl\"\neval = \"eval.jsonl\"", StringComparison.Ordinal));
        // Eval examples longer than any training example: their batch is the largest the model runs.
        using (var w = new StreamWriter(dir.File("eval.jsonl")))
            for (int i = 0; i < 6; i++) w.WriteLine(JsonSerializer.Serialize(new { prompt = string.Join(' ', Enumerable.Repeat("say hello please", 6)), response = "hello" }));

        var s = TrainingSchedule.For(Recipe.Load(recipe));
        Assert.Equal(5, s.Steps);
        Assert.Equal(2, s.EvalPasses); // after steps 2 and 4
        Assert.Equal([(4, s.EvalMicroBatches[0].SeqLen), (2, s.EvalMicroBatches[0].SeqLen)], s.EvalMicroBatches);
        Assert.True(s.EvalMicroBatches[0].SeqLen > s.MicroBatches.Max(m => m.SeqLen));
        Assert.Equal(s.EvalMicroBatches[0], s.Largest);

        var plan = CliRunner.Run("plan", recipe, "--device", "cpu", "--threads", "2", "--json");
        Assert.True(plan.ExitCode == 0, plan.Stderr);
        using var doc = JsonDocument.Parse(plan.Stdout);
        var root = doc.RootElement;
        Assert.Equal(2, root.GetProperty("eval_passes").GetInt32());
        Assert.Equal(6, root.GetProperty("eval_examples").GetInt32());
        double evalSeconds = root.GetProperty("eval_seconds").GetDouble();
        Assert.True(evalSeconds > 0 && evalSeconds < root.GetProperty("seconds").GetDouble());
        var (batch, seq) = s.Largest;
        Assert.Equal(TrainingEstimate.Memory(s.Config, s.Setup, batch, seq).Total, root.GetProperty("memory_bytes").GetInt64());

        // The trainer evaluates exactly as often as planned.
        var train = CliRunner.Run("train", recipe, "--device", "cpu", "--threads", "2");
        Assert.True(train.ExitCode == 0, train.Stderr);
        Assert.Equal(2, File.ReadLines(dir.File("run/metrics.jsonl")).Count(l => l.Contains("\"eval_loss\"", StringComparison.Ordinal)));
    }

    [Fact]
    public void Plan_on_a_gpu_profile_divides_the_steps_operations_by_its_throughput_and_prices_the_run()
    {
        using var dir = new TempDir();
        string recipe = TrainCommandTests.Project(dir);
        var r = CliRunner.Run("plan", recipe, "--device", "server-h100-sxm", "--price-per-hour", "2.5", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        var s = TrainingSchedule.For(Recipe.Load(recipe));
        double flops = s.MicroBatches.Sum(m => TrainingEstimate.StepFlops(s.Config, s.Setup, m.Batch, m.SeqLen));
        double expected = flops / (67e12 * Commands.PlanCommand.GpuFp32Efficiency);
        Assert.Equal(expected, root.GetProperty("seconds").GetDouble(), expected * 1e-9);
        Assert.Equal(0, root.GetProperty("eval_passes").GetInt32()); // no eval split
        Assert.Equal(2.5 * expected / 3600, root.GetProperty("cost").GetDouble(), 1e-12);
        Assert.Equal(80e9, root.GetProperty("available_bytes").GetInt64());
        Assert.Contains(root.GetProperty("memory").EnumerateArray(), p => p.GetProperty("basis").GetString()!.Contains("CUDA context", StringComparison.Ordinal));

        var text = CliRunner.Run("plan", recipe, "--device", "workstation-rtx-4090");
        Assert.True(text.ExitCode == 0, text.Stderr);
        Assert.Contains("fits in", text.Stdout, StringComparison.Ordinal);
        Assert.Contains("optimizer steps", text.Stdout, StringComparison.Ordinal);
        Assert.Contains("82.6 TFLOPS FP32", text.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void A_run_that_does_not_fit_exits_1_and_says_what_would_help()
    {
        using var dir = new TempDir();
        string recipe = TrainCommandTests.Project(dir);
        File.WriteAllText(dir.File("tiny-card.toml"), """
            schema = 1
            name = "tiny-card"
            display_name = "A card with 1 MB"
            extends = "workstation-rtx-4090"
            [gpu]
            model = "test"
            memory = { value = 1, unit = "MB", source = "estimate: a test" }
            """);
        var r = CliRunner.Run("plan", recipe, "--device", dir.File("tiny-card.toml"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("DOES NOT FIT", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("activation checkpointing", r.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void A_board_profile_without_training_figures_and_a_missing_recipe_are_one_line_errors()
    {
        using var dir = new TempDir();
        string recipe = TrainCommandTests.Project(dir);
        var board = CliRunner.Run("plan", recipe, "--device", "jetson-orin-nano-8gb");
        Assert.Equal(1, board.ExitCode);
        Assert.Contains("has no gpu.memory or compute.fp32_tflops", board.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", board.Stderr, StringComparison.Ordinal);
        var missing = CliRunner.Run("plan", dir.File("nope.toml"), "--device", "cpu");
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("nope.toml", missing.Stderr, StringComparison.Ordinal);
        Assert.Equal(0, CliRunner.Run("plan", "--help").ExitCode);
    }

    [Fact]
    public void Bench_train_with_a_config_json_shape_reports_planned_and_built_memory_part_by_part()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("config.json"), """
            { "model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,
              "intermediate_size": 128, "vocab_size": 600, "tie_word_embeddings": true }
            """);
        string[] args = ["bench", "train", "--shape", dir.File("config.json"), "--method", "qlora", "--seq", "16", "--batch", "2", "--device", "cpu", "--threads", "2", "--memory-only"];
        var r = CliRunner.Run(args);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("| part | planned MiB | built MiB | basis |", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("measured peak anonymous memory", r.Stdout, StringComparison.Ordinal);
        var j = CliRunner.Run([.. args, "--json"]);
        Assert.True(j.ExitCode == 0, j.Stderr);
        using var doc = JsonDocument.Parse(j.Stdout);
        var result = doc.RootElement[0];
        long Planned(string part) => result.GetProperty("plan").GetProperty("parts").EnumerateArray().Single(p => p.GetProperty("name").GetString() == part).GetProperty("bytes").GetInt64();
        Assert.Equal(result.GetProperty("frozen_linear_bytes").GetInt64(), Planned(TrainingEstimate.FrozenLinear));
        Assert.Equal(result.GetProperty("frozen_other_bytes").GetInt64(), Planned(TrainingEstimate.FrozenOther));
        Assert.Equal(result.GetProperty("activation_bytes").GetInt64(), Planned(TrainingEstimate.ActivationsPart));
        Assert.Equal(4 * result.GetProperty("trainable_parameters").GetInt64(), Planned(TrainingEstimate.TrainableParams));
        var bad = CliRunner.Run("bench", "train", "--shape", "qwen9-1t", "--memory-only");
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("qwen2.5-0.5b", bad.Stderr, StringComparison.Ordinal);
    }
}
