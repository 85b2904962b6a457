using System.Text.Json;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Testing;

namespace EdgeTune.Cli.Tests;

public class TrainCommandTests
{
    private static string Project(TempDir dir, string extraTrain = "")
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
