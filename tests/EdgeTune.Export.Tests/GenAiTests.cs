using EdgeTune.Core;
using EdgeTune.Export.Onnx;
using EdgeTune.Models.Adapters;
using EdgeTune.Models.Architectures;
using EdgeTune.Testing;
using Microsoft.ML.OnnxRuntimeGenAI;
using Xunit.Abstractions;

namespace EdgeTune.Export.Tests;

/// <summary>ONNX Runtime GenAI loads the exported folder; its greedy search must pick llama.cpp's tokens on the same weights.</summary>
public sealed class GenAiTests(ExportModels models, ITestOutputHelper output) : IClassFixture<ExportModels>
{
    private const int Steps = 32;

    [Theory]
    [MemberData(nameof(ExportModels.Names), MemberType = typeof(ExportModels))]
    public void GenAi_greedy_equals_llama_cpp_greedy_on_the_f32_gguf(string name)
    {
        var (_, gguf) = models.Get(name);
        var prompt = TinyHfCheckpoint.Prompt(64, ExportModels.Cases[name].Vocab, seed: 31);
        var expected = UntilEos(LlamaCpp.Greedy(gguf, prompt, Steps), eos: 2);
        var actual = GenAiGreedy(models.Export(name, OnnxPrecision.Fp32), prompt, Steps);
        output.WriteLine($"{name}: GenAI greedy [{string.Join(' ', actual)}]");
        Assert.True(expected.Length >= 8, "the prompt should not end in EOS at once");
        // A tied random model tends to repeat its last token (its logit is h·E[t]); the others must vary, so the check means something.
        if (!ExportModels.Cases[name].Tied) Assert.True(expected.Distinct().Count() >= 8, $"llama.cpp's greedy is too repetitive to check: {string.Join(' ', expected)}");
        // GenAI stops at EOS without always returning it; the tokens up to it must agree.
        Assert.Equal(WithoutEos(expected), WithoutEos(actual));
    }

    private static int[] WithoutEos(int[] tokens) => tokens.Length > 0 && tokens[^1] == 2 ? tokens[..^1] : tokens;

    [Fact]
    public void GenAi_greedy_with_a_merged_adapter_equals_llama_cpp_with_the_adapter_attached()
    {
        const string name = "qwen2-gqa-bias";
        var (hf, gguf) = models.Get(name);
        var config = ModelConfig.FromHuggingFace(hf);
        var pairs = RandomLora(config, rank: 4);
        string peft = Path.Combine(models.Dir, "adapter-peft");
        string ggufAdapter = Path.Combine(models.Dir, "adapter.gguf");
        LoraAdapterWriter.WritePeft(peft, config, pairs, alpha: 8, rsLora: false, dropout: 0, AdapterLayout.HuggingFace, "tiny");
        LoraAdapterWriter.WriteGguf(ggufAdapter, config, pairs, alpha: 8, rsLora: false, AdapterLayout.HuggingFace);
        string onnx = Path.Combine(models.Dir, "onnx-adapter");
        OnnxExporter.Export(hf, onnx, new OnnxExportOptions { Adapter = peft });

        var prompt = TinyHfCheckpoint.Prompt(64, config.VocabSize, seed: 32);
        var withAdapter = UntilEos(LlamaCppGreedyWithAdapter(gguf, ggufAdapter, prompt), eos: 2);
        var withoutAdapter = UntilEos(LlamaCpp.Greedy(gguf, prompt, Steps), eos: 2);
        var actual = GenAiGreedy(onnx, prompt, Steps);
        output.WriteLine($"adapter merged: GenAI [{string.Join(' ', actual)}]; llama.cpp without the adapter [{string.Join(' ', withoutAdapter)}]");
        Assert.NotEqual(withoutAdapter, withAdapter); // the adapter matters, so the check below can fail
        Assert.Equal(withAdapter, actual);
    }

    internal static int[] GenAiGreedy(string folder, int[] prompt, int steps)
    {
        using var model = new Model(folder);
        using var parameters = new GeneratorParams(model);
        parameters.SetSearchOption("max_length", prompt.Length + steps);
        parameters.SetSearchOption("do_sample", false);
        using var generator = new Generator(model, parameters);
        generator.AppendTokens(prompt);
        while (!generator.IsDone()) generator.GenerateNextToken();
        return generator.GetSequence(0).ToArray()[prompt.Length..];
    }

    /// <summary>GenAI stops after an EOS token (and includes it); llama.cpp's helper runs on, so cut its tokens there.</summary>
    private static int[] UntilEos(int[] tokens, int eos)
    {
        int at = Array.IndexOf(tokens, eos);
        return at < 0 ? tokens : tokens[..(at + 1)];
    }

    private static int[] LlamaCppGreedyWithAdapter(string gguf, string adapter, int[] prompt)
    {
        // Greedy by repeated full forwards with the adapter attached: slow but plain, and the model is tiny.
        var sequence = prompt.ToList();
        var generated = new int[Steps];
        int vocab = ExportModels.Cases["qwen2-gqa-bias"].Vocab;
        for (int n = 0; n < Steps; n++)
        {
            var logits = LlamaCpp.AllLogits(gguf, sequence.ToArray(), adapter);
            var last = logits.AsSpan(logits.Length - vocab);
            int best = 0;
            for (int i = 1; i < vocab; i++) if (last[i] > last[best]) best = i;
            generated[n] = best;
            sequence.Add(best);
        }
        return generated;
    }

    /// <summary>A: [r, in] ~ N(0, 1/in); B: [out, r] ~ N(0, 0.1²), for every linear layer.</summary>
    private static List<LoraPair> RandomLora(ModelConfig c, int rank)
    {
        var pairs = new List<LoraPair>();
        int seed = 500;
        foreach (var spec in TensorMap.Tensors(c).Where(s => s.Shape.Length == 2 && s.GgufName.StartsWith("blk.", StringComparison.Ordinal)))
        {
            long outDim = spec.Shape[0], inDim = spec.Shape[1];
            pairs.Add(new LoraPair(spec.GgufName, rank, inDim, outDim, Gaussian(rank * inDim, seed++, 1 / Math.Sqrt(inDim)), Gaussian(outDim * rank, seed++, 0.1)));
        }
        return pairs;
    }

    private static float[] Gaussian(long n, int seed, double scale)
    {
        var rng = new Random(seed);
        var v = new float[n];
        for (long i = 0; i < n; i++)
            v[i] = (float)(scale * Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));
        return v;
    }
}
