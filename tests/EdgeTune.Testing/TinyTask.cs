using System.Runtime.InteropServices;
using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Synthetic;

namespace EdgeTune.Testing;

/// <summary>
/// A synthetic evaluation task for a tiny llama GGUF (with a chatml template): every question's answer is
/// "hello". There is no training engine yet, so the "tuned" adapter is built by hand: a GGUF LoRA on the last
/// layer's feed-forward that adds Σ c_j²·t to the residual stream (c_j = a_j·x through eight +/− pairs of SwiGLU
/// units, so the sum is positive whatever the input), with t the output row of "▁hello": the model then says
/// "hello" after every prompt. A zero adapter (all LoRA weights 0) changes nothing.
/// </summary>
public static class TinyTask
{
    public const string ChatMl =
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}" +
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

    public static TinyLlamaConfig Config { get; } = new() { Embedding = 64, Layers = 2, Heads = 4, KvHeads = 2, FeedForward = 128, ContextLength = 512, Seed = 5 };

    public static int HelloId => 3 + 256 + TinyLlama.Pieces.ToList().IndexOf("▁hello");

    /// <summary>The tiny model with the chat template in its metadata (and <c>general.license</c> when <paramref name="licence"/> is given).</summary>
    public static void WriteModel(string path, string? licence = null, TinyLlamaConfig? config = null)
    {
        var vocabulary = TinyLlama.Metadata(config ?? Config).Where(kv => kv.Key.StartsWith("tokenizer.", StringComparison.Ordinal)).ToList();
        vocabulary.Add(new("tokenizer.chat_template", GgufValue.String(ChatMl)));
        if (licence is not null) vocabulary.Add(new("general.license", GgufValue.String(licence)));
        TinyLlama.WriteGguf(path, config ?? Config, GgmlType.F32, "tiny-task", vocabulary);
    }

    /// <summary>Chat JSONL lines: "question i" → "hello".</summary>
    public static void WriteData(string file, int from, int count, string answer = "hello") =>
        File.WriteAllLines(file, Enumerable.Range(from, count).Select(i =>
            $"{{\"messages\": [{{\"role\": \"user\", \"content\": \"q{i} say it\"}}, {{\"role\": \"assistant\", \"content\": \"{answer}\"}}]}}"));

    /// <summary>
    /// The hand-built "tuned" adapter (see the class summary), or with <paramref name="zero"/> the useless all-zero one;
    /// for another model shape (<paramref name="config"/>) and with the push towards "▁hello" scaled by <paramref name="strength"/>.
    /// </summary>
    public static void WriteAdapter(string path, bool zero, TinyLlamaConfig? config = null, double strength = 4)
    {
        var c = config ?? Config;
        const int rank = 8;
        int layer = c.Layers - 1;
        var writer = new GgufWriter();
        writer.Metadata.Set("general.architecture", GgufValue.String("llama"));
        writer.Metadata.Set("general.type", GgufValue.String("adapter"));
        writer.Metadata.Set("adapter.type", GgufValue.String("lora"));
        writer.Metadata.Set("adapter.lora.alpha", GgufValue.F32(rank)); // scale alpha/r = 1

        // A of gate and up: eight random directions of length 4 (c_j ~ N(0, 16) for a normalised input); B: +1/−1 pairs.
        var rng = SeededNormal.ForTensor(77, "directions");
        var a = new float[rank * c.Embedding];
        for (int j = 0; j < rank; j++)
        {
            var v = Enumerable.Range(0, c.Embedding).Select(_ => SeededNormal.Next(rng)).ToArray();
            double norm = Math.Sqrt(v.Sum(x => x * x));
            for (int e = 0; e < c.Embedding; e++) a[j * c.Embedding + e] = (float)(4 * v[e] / norm);
        }
        var b = new float[c.FeedForward * rank];
        for (int j = 0; j < rank; j++) { b[2 * j * rank + j] = 1; b[(2 * j + 1) * rank + j] = -1; }
        foreach (var name in new[] { "ffn_gate", "ffn_up" })
        {
            Add(writer, $"blk.{layer}.{name}.weight.lora_a", [c.Embedding, rank], zero ? new float[a.Length] : a);
            Add(writer, $"blk.{layer}.{name}.weight.lora_b", [rank, c.FeedForward], zero ? new float[b.Length] : b);
        }
        // Down: A sums the 16 paired units into rank 0; B writes that sum along t (the output row of ▁hello times the final norm).
        var downA = new float[rank * c.FeedForward];
        for (int u = 0; u < 2 * rank; u++) downA[u] = 1;
        var output = TinyLlama.Weights("output.weight", [c.Embedding, c.VocabSize], c.Seed);
        var norm2 = TinyLlama.Weights("output_norm.weight", [c.Embedding], c.Seed);
        var t = Enumerable.Range(0, c.Embedding).Select(e => (double)output[HelloId * c.Embedding + e] * norm2[e]).ToArray();
        double tn = Math.Sqrt(t.Sum(x => x * x));
        var downB = new float[c.Embedding * rank];
        for (int e = 0; e < c.Embedding; e++) downB[e * rank] = (float)(strength * t[e] / tn);
        Add(writer, $"blk.{layer}.ffn_down.weight.lora_a", [c.FeedForward, rank], zero ? new float[downA.Length] : downA);
        Add(writer, $"blk.{layer}.ffn_down.weight.lora_b", [rank, c.Embedding], zero ? new float[downB.Length] : downB);
        writer.Write(path);
    }

    private static void Add(GgufWriter writer, string name, long[] shape, float[] values) =>
        writer.AddTensor(name, GgmlType.F32, shape, MemoryMarshal.AsBytes(values.AsSpan()).ToArray());

    /// <summary>A recipe for the task in <paramref name="dir"/> (model.gguf, train.jsonl, test.jsonl written there).</summary>
    public static string WriteRecipe(string dir, int train = 30, int test = 14, string extraEval = "")
    {
        WriteModel(Path.Combine(dir, "model.gguf"));
        WriteData(Path.Combine(dir, "train.jsonl"), 0, train);
        WriteData(Path.Combine(dir, "test.jsonl"), 1000, test);
        string recipe = Path.Combine(dir, "recipe.toml");
        File.WriteAllText(recipe, $"""
            [model]
            base = "model.gguf"
            [data]
            train = "train.jsonl"
            test = "test.jsonl"
            [output]
            dir = "run"
            [eval]
            task = "exact"
            system_prompt = "Answer in one word."
            few_shot = 2
            max_new_tokens = 1
            bootstrap_resamples = 300
            {extraEval}
            """);
        return recipe;
    }
}
