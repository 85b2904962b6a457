using System.Runtime.InteropServices;
using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Testing;

namespace EdgeTune.Cli.Tests;

/// <summary>`generate --adapter` as a user runs it, against llama.cpp with the same GGUF LoRA adapter attached.</summary>
public class GenerateAdapterCommandTests
{
    [Fact]
    public void Greedy_tokens_with_a_gguf_adapter_equal_llama_cpp_with_the_adapter_attached()
    {
        using var dir = new TempDir();
        var config = new TinyLlamaConfig { Embedding = 64, Layers = 2, Heads = 4, KvHeads = 2, FeedForward = 128, Seed = 21 };
        string model = dir.File("base.gguf"), adapter = dir.File("lora.gguf");
        TinyLlama.WriteGguf(model, config);
        WriteAdapter(adapter, config, rank: 4, alpha: 8);

        var plain = Generate(model, null);
        var tuned = Generate(model, adapter);
        Assert.Equal(plain.Prompt, tuned.Prompt);

        // llama.cpp's greedy continuation with the adapter attached, one full evaluation per step.
        var sequence = tuned.Prompt.ToList();
        var expected = new List<int>();
        for (int step = 0; step < tuned.Generated.Length; step++)
        {
            var logits = LlamaCpp.AllLogits(model, sequence.ToArray(), adapter);
            var last = logits.AsSpan(logits.Length - config.VocabSize);
            int best = 0;
            for (int i = 1; i < last.Length; i++) if (last[i] > last[best]) best = i;
            expected.Add(best);
            sequence.Add(best);
        }
        Assert.Equal(expected, tuned.Generated);
        Assert.NotEqual(plain.Generated, tuned.Generated); // the adapter must change what the model says
    }

    private static (int[] Prompt, int[] Generated) Generate(string model, string? adapter)
    {
        var args = new List<string> { "generate", "--model", model, "--prompt", "hello world the model", "--temperature", "0", "--max-tokens", "6", "--json" };
        if (adapter is not null) args.AddRange(["--adapter", adapter]);
        var r = CliRunner.RunProcess([.. args]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        int[] Ids(string key) => doc.RootElement.GetProperty(key).EnumerateArray().Select(e => e.GetInt32()).ToArray();
        return (Ids("prompt_ids"), Ids("generated_ids"));
    }

    /// <summary>A GGUF LoRA adapter as convert_lora_to_gguf.py writes it: lora_a ne=[in, r], lora_b ne=[r, out], F32.</summary>
    private static void WriteAdapter(string path, TinyLlamaConfig c, int rank, float alpha)
    {
        var writer = new GgufWriter();
        writer.Metadata.Set("general.architecture", GgufValue.String("llama"));
        writer.Metadata.Set("general.type", GgufValue.String("adapter"));
        writer.Metadata.Set("adapter.type", GgufValue.String("lora"));
        writer.Metadata.Set("adapter.lora.alpha", GgufValue.F32(alpha));
        int kvDim = c.Embedding / c.Heads * c.KvHeads;
        for (int layer = 0; layer < c.Layers; layer++)
        {
            foreach (var (name, inDim, outDim) in new[] { ("attn_q", c.Embedding, c.Embedding), ("attn_v", c.Embedding, kvDim), ("ffn_down", c.FeedForward, c.Embedding) })
            {
                string weight = $"blk.{layer}.{name}.weight";
                Add(writer, weight + ".lora_a", [inDim, rank], 0.5f);
                Add(writer, weight + ".lora_b", [rank, outDim], 0.5f);
            }
        }
        writer.Write(path);
    }

    private static void Add(GgufWriter writer, string name, long[] shape, float scale)
    {
        var rng = SeededNormal.ForTensor(99, name);
        var values = new float[shape[0] * shape[1]];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(scale * SeededNormal.Next(rng));
        writer.AddTensor(name, GgmlType.F32, shape, MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
    }
}
