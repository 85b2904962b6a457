using System.Text.Json;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Testing;

namespace EdgeTune.Cli.Tests;

/// <summary>A base without tokenizer.chat_template (a pretrained base, a benchmark's synthetic model) trains with the recipe's [model] chat_template.</summary>
public class TrainRecipeTemplateTests
{
    [Fact]
    public void A_recipe_chat_template_trains_a_base_that_has_none_and_without_it_the_missing_key_is_one_line()
    {
        using var dir = new TempDir();
        TinyLlama.WriteGguf(dir.File("base.gguf"), new TinyLlamaConfig { Embedding = 64, Layers = 1, Heads = 4, KvHeads = 2, FeedForward = 128 });
        using (var w = new StreamWriter(dir.File("train.jsonl")))
            for (int i = 0; i < 8; i++) w.WriteLine(JsonSerializer.Serialize(new { prompt = $"say {(i % 2 == 0 ? "hello" : "world")}", response = i % 2 == 0 ? "hello" : "world" }));
        string Recipe(string template) => $"""
            [model]
            base = "base.gguf"
            {template}
            [data]
            train = "train.jsonl"
            [adapter]
            method = "lora"
            rank = 4
            [train]
            max_steps = 2
            batch_size = 2
            [output]
            dir = "run"
            """;

        File.WriteAllText(dir.File("none.toml"), Recipe(""));
        var refused = CliRunner.Run("train", dir.File("none.toml"), "--device", "cpu", "--threads", "2", "--registry", dir.File("runs"));
        Assert.Equal(1, refused.ExitCode);
        Assert.Equal($"edgetune: {dir.File("base.gguf")}: key 'tokenizer.chat_template': is missing", refused.Stderr.Trim().Split('\n')[^1]);

        File.WriteAllText(dir.File("recipe.toml"), Recipe("chat_template = \"{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + '</s>' }}{% endif %}{% endfor %}\""));
        var trained = CliRunner.Run("train", dir.File("recipe.toml"), "--device", "cpu", "--threads", "2", "--registry", dir.File("runs"), "--json");
        Assert.True(trained.ExitCode == 0, trained.Stderr);
        Assert.Equal(2, JsonDocument.Parse(trained.Stdout).RootElement.GetProperty("steps").GetInt32());
    }
}
