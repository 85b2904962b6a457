using System.Text.Json;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Recipes;

namespace EdgeTune.Training.Tests;

/// <summary>
/// A small world to train in: a tiny ChatML llama (random weights) and a keyword task: a prompt of filler words
/// with one keyword; the answer is the keyword's label word. Held-out prompts are new filler combinations, so
/// exact match on them needs the rule, not memory.
/// </summary>
internal static class TinyTask
{
    private static readonly string[] Filler = ["the", "a", "to", "and", "of", "is", "in", "it", "you", "that", "for"];
    public static readonly Dictionary<string, string> Labels = new() { ["hello"] = "world", ["world"] = "model", ["device"] = "hello", ["model"] = "device" };

    public static TinyLlamaConfig Model => new() { Embedding = 64, Layers = 2, Heads = 4, KvHeads = 2, FeedForward = 128, ContextLength = 256, ChatMl = true, Seed = 11, HeadScale = 20 };

    public static string WriteModel(string dir, TinyLlamaConfig? config = null)
    {
        string path = Path.Combine(dir, "base.gguf");
        TinyLlama.WriteGguf(path, config ?? Model);
        return path;
    }

    public static (string Prompt, string Answer) Example(Random rng)
    {
        var words = Enumerable.Range(0, rng.Next(3, 7)).Select(_ => Filler[rng.Next(Filler.Length)]).ToList();
        string keyword = Labels.Keys.ElementAt(rng.Next(Labels.Count));
        words.Insert(rng.Next(words.Count + 1), keyword);
        return (string.Join(' ', words), Labels[keyword]);
    }

    public static string WriteData(string path, int count, int seed)
    {
        var rng = new Random(seed);
        using var w = new StreamWriter(path);
        for (int i = 0; i < count; i++)
        {
            var (p, a) = Example(rng);
            w.WriteLine(JsonSerializer.Serialize(new { prompt = p, response = a }));
        }
        return path;
    }

    public static Recipe Recipe(string dir, string method = "lora", string extra = "", int steps = 60, double dropout = 0.0, string run = "run")
    {
        string text = $"""
            [model]
            base = "base.gguf"
            [data]
            train = "train.jsonl"
            eval = "eval.jsonl"
            [adapter]
            method = "{method}"
            rank = 8
            alpha = 16
            dropout = {dropout.ToString(System.Globalization.CultureInfo.InvariantCulture)}
            [train]
            learning_rate = 3e-3
            max_steps = {steps}
            batch_size = 8
            max_seq_len = 96
            warmup_steps = 5
            device = "cpu"
            {extra}
            [output]
            dir = "{run}"
            """;
        string file = Path.Combine(dir, "recipe.toml");
        File.WriteAllText(file, text);
        return EdgeTune.Recipes.Recipe.Load(file);
    }
}
