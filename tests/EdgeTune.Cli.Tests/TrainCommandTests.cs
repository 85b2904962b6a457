using System.Text.Json;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Testing;

namespace EdgeTune.Cli.Tests;

public class TrainCommandTests
{
    internal static string Project(TempDir dir, string extraTrain = "")
    {
        TinyLlama.WriteGguf(dir.File("base.gguf"), new TinyLlamaConfig { Embedding = 64, Layers = 1, Heads = 4, KvHeads = 2, FeedForward = 128, ChatMl = true, HeadScale = 20 });
        using (var w = new StreamWriter(dir.File("train.jsonl")))
            for (int i = 0; i < 24; i++) w.WriteLine(JsonSerializer.Serialize(new { prompt = $"say {(i % 2 == 0 ? "hello" : "world")} please", response = i % 2 == 0 ? "hello" : "world" }));
        File.WriteAllText(dir.File("recipe.toml"), $"""
            [model]
            base = "base.gguf"
            [data]
            train = "train.jsonl"
            [adapter]
            method = "lora"
            rank = 4
            [train]
            max_steps = 3
            batch_size = 4
            {extraTrain}
            [output]
            dir = "run"
            """);
        return dir.File("recipe.toml");
    }

    [Fact]
    public void Train_writes_an_adapter_llama_cpp_loads_and_reports_the_device()
    {
        using var dir = new TempDir();
        var r = CliRunner.Run("train", Project(dir), "--device", "cpu", "--threads", "2", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("device: cpu", r.Stderr, StringComparison.Ordinal);
        Assert.Contains("memory: frozen linear base", r.Stderr, StringComparison.Ordinal);
        using var doc = JsonDocument.Parse(r.Stdout);
        Assert.Equal(3, doc.RootElement.GetProperty("steps").GetInt32());
        string adapter = doc.RootElement.GetProperty("adapter_gguf").GetString()!;
        Assert.True(File.Exists(Path.Combine(dir.File("run"), "peft", "adapter_config.json")));
        Assert.Equal(3, File.ReadLines(dir.File("run/metrics.jsonl")).Count());
        // llama.cpp loads base + adapter (general.type = adapter, lora_a/lora_b shapes it checks).
        var logits = LlamaCpp.AllLogits(dir.File("base.gguf"), [1, 259, 262], adapter);
        Assert.All(logits, x => Assert.True(float.IsFinite(x)));

        // The generate command takes the adapter too.
        var g = CliRunner.Run("generate", "--model", dir.File("base.gguf"), "--adapter", adapter, "--prompt", "say hello", "--temperature", "0", "--max-tokens", "2", "--json");
        Assert.True(g.ExitCode == 0, g.Stderr);
    }

    [Fact]
    public void Resume_without_a_checkpoint_is_one_line_exit_1_and_the_metrics_survive()
    {
        using var dir = new TempDir();
        string recipe = Project(dir);
        Directory.CreateDirectory(dir.File("run"));
        File.WriteAllText(dir.File("run/metrics.jsonl"), "{\"step\": 1, \"loss\": 3.25}\n");
        var r = CliRunner.Run("train", recipe, "--resume", "--device", "cpu");
        Assert.Equal(1, r.ExitCode);
        Assert.Single(r.Stderr.Trim().Split('\n'));
        Assert.Contains("checkpoint: no checkpoint to resume from", r.Stderr, StringComparison.Ordinal);
        Assert.Equal("{\"step\": 1, \"loss\": 3.25}\n", File.ReadAllText(dir.File("run/metrics.jsonl")));
    }

    /// <summary>Losses per step in a run folder's metrics.jsonl.</summary>
    private static List<double> Losses(string runDir) =>
        File.ReadLines(Path.Combine(runDir, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement)
            .Where(e => e.TryGetProperty("loss", out _)).Select(e => e.GetProperty("loss").GetDouble()).ToList();

    [Theory]
    [InlineData("checkpoint.tensors-written", 2)]
    [InlineData("checkpoint.written", 2)]
    [InlineData("checkpoint.moved-aside", 4)] // its second pass is in the third save (the first has nothing to move aside)
    [InlineData("checkpoint.replaced", 4)]
    public void A_crash_while_replacing_the_checkpoint_leaves_one_that_resumes_exactly(string point, int expectedStep)
    {
        string[] train = ["--device", "cpu", "--threads", "2", "--max-steps", "6"];
        using var straightDir = new TempDir();
        var straight = CliRunner.Run(["train", Project(straightDir, "checkpoint_every = 2"), .. train]);
        Assert.True(straight.ExitCode == 0, straight.Stderr);

        // The child dies (SIGKILL of itself) at the second pass of the point: saves come at steps 2, 4 and 6 (the last).
        using var dir = new TempDir();
        string recipe = Project(dir, "checkpoint_every = 2");
        var crash = CliRunner.RunProcess(new Dictionary<string, string> { ["EDGETUNE_CRASH_AT"] = point + "#2" }, ["train", recipe, .. train]);
        Assert.True(crash.ExitCode == 137, $"exit {crash.ExitCode}: {crash.Stderr}");
        string run = dir.File("run");
        Assert.Equal(point == "checkpoint.moved-aside", !Directory.Exists(Path.Combine(run, "checkpoint")));
        string found = EdgeTune.Training.Checkpoints.TrainingCheckpoint.Locate(run)!;
        Assert.NotNull(found);

        var resumed = CliRunner.Run(["train", recipe, "--resume", .. train]);
        Assert.True(resumed.ExitCode == 0, resumed.Stderr);
        Assert.True(resumed.Stderr.Contains($"resumed from {found} at step {expectedStep}/6", StringComparison.Ordinal), resumed.Stderr);
        Assert.Equal(Losses(straightDir.File("run")), Losses(run));
        Assert.Equal(File.ReadAllBytes(straightDir.File("run/adapter.gguf")), File.ReadAllBytes(Path.Combine(run, "adapter.gguf")));
        Assert.Equal(["checkpoint"], Directory.GetDirectories(run, "checkpoint*").Select(Path.GetFileName));
    }

    [Fact]
    public void A_recipe_mistake_is_one_line_with_the_place_and_exit_1()
    {
        using var dir = new TempDir();
        var r = CliRunner.Run("train", Project(dir, "learning_rat = 1e-4"));
        Assert.Equal(1, r.ExitCode);
        Assert.Matches(@"recipe\.toml:11:1: train\.learning_rat: unknown key", r.Stderr);
        Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Help_describes_the_recipe_and_outputs()
    {
        var r = CliRunner.Run("train", "--help");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("adapter.gguf", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("--resume", r.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void Bench_train_prints_tokens_per_second_and_memory_for_each_method()
    {
        var r = CliRunner.Run("bench", "train", "--small", "--steps", "1", "--device", "cpu", "--method", "all");
        Assert.True(r.ExitCode == 0, r.Stderr);
        foreach (var method in new[] { "| lora |", "| qlora |", "| full |" }) Assert.Contains(method, r.Stdout, StringComparison.Ordinal);
        Assert.Contains("tokens/s", r.Stdout, StringComparison.Ordinal);
    }
}
