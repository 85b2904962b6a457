using EdgeTune.Core;
using EdgeTune.Inference;
using EdgeTune.Inference.LlamaCpp;
using EdgeTune.Inference.Onnx;
using EdgeTune.Inference.Reference;

namespace EdgeTune.Evaluation.Runners;

/// <summary>
/// The models evaluation runs, through EdgeTune.Inference. Answers are greedy (argmax, ties to the lowest id), so a
/// rerun gives the same answers; every runtime stops at end-of-generation tokens and at the template's end-of-turn text.
/// </summary>
public static class Engines
{
    /// <summary>
    /// A GGUF (and optionally a GGUF LoRA adapter at scale 1) in llama.cpp on the CPU with the exact settings (F32 KV
    /// cache, no flash attention): the artifact as the device runs it.
    /// </summary>
    public static IInferenceModel LlamaCpp(string gguf, string? adapter = null, int threads = 0, int maxContext = 4096)
    {
        if (!File.Exists(gguf)) throw new EdgeTuneException($"{gguf}: no such file");
        if (adapter is not null && !File.Exists(adapter)) throw new EdgeTuneException($"{adapter}: no such file (llama.cpp takes GGUF adapters)");
        return LlamaCppRuntime.Default.Open(new ModelOptions
        {
            Path = gguf,
            Adapters = adapter is null ? [] : [adapter],
            MaxContext = maxContext,
            Threads = threads > 0 ? threads : Math.Max(1, Environment.ProcessorCount),
            Exact = true,
        });
    }

    /// <summary>A folder written by `edgetune export onnx` in ONNX Runtime GenAI on the CPU (the adapter was merged at export).</summary>
    public static IInferenceModel Onnx(string folder, int threads = 0, int maxContext = 4096) =>
        OnnxGenAiRuntime.Default.Open(new ModelOptions
        {
            Path = folder,
            MaxContext = maxContext,
            Threads = threads > 0 ? threads : Math.Max(1, Environment.ProcessorCount),
        });

    /// <summary>EdgeTune's own reference forward (plain CPU float32): Hugging Face folders, GGUF files, PEFT or GGUF adapters merged.</summary>
    public static IInferenceModel Reference(string model, string? adapter = null) =>
        ReferenceRuntime.Instance.Open(new ModelOptions { Path = model, Adapters = adapter is null ? [] : [adapter] });

    /// <summary>Rendered chat text to ids: BOS as the tokenizer says, template markers parsed as special tokens.</summary>
    public static int[] EncodePrompt(this IInferenceModel model, string text) => model.Tokenize(text, addSpecial: true, parseSpecial: true);

    /// <summary>Plain text to ids: no BOS, no special-token parsing (reference answers, general text).</summary>
    public static int[] EncodePlain(this IInferenceModel model, string text) => model.Tokenize(text, addSpecial: false, parseSpecial: false);

    /// <summary>Greedy continuation until an end of generation, the end-of-turn text or <paramref name="maxTokens"/>.</summary>
    public static (string Text, int Tokens) GenerateGreedy(this IInferenceModel model, int[] prompt, int maxTokens, CancellationToken cancellationToken)
    {
        var result = model.Generate(prompt, SamplingSettings.Greedy(maxTokens), null, cancellationToken);
        return (result.Text, result.Tokens?.Count ?? result.CompletionTokens);
    }

    /// <summary>log p(tokens[t] | tokens[..t]) for t from <paramref name="from"/> (≥ 1) to the end, teacher-forced in one pass.</summary>
    public static double[] LogProbs(this IInferenceModel model, int[] tokens, int from)
    {
        if (from < 1) throw new ArgumentOutOfRangeException(nameof(from), from, "must be 1 or more (position 0 has no prediction)");
        int v = model.VocabularySize;
        var logits = model.Logits(tokens[..^1], from - 1);
        var result = new double[tokens.Length - from];
        for (int t = from; t < tokens.Length; t++) result[t - from] = LogSoftmax.Of(logits.AsSpan((t - from) * v, v), tokens[t]);
        return result;
    }
}

internal static class LogSoftmax
{
    public static double Of(ReadOnlySpan<float> logits, int id)
    {
        float max = float.NegativeInfinity;
        foreach (float v in logits) if (v > max) max = v;
        double sum = 0;
        foreach (float v in logits) sum += Math.Exp(v - max);
        return logits[id] - max - Math.Log(sum);
    }
}
