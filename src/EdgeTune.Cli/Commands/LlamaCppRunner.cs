using EdgeTune.Inference;
using EdgeTune.Inference.LlamaCpp;

namespace EdgeTune.Cli.Commands;

/// <summary>Runs a GGUF in llama.cpp (through EdgeTune.Inference) and returns its logits: the consumer's verdict on a file.</summary>
internal static class LlamaCppRunner
{
    /// <summary>Logits at every position of <paramref name="tokens"/>, with exact (F32 KV cache) settings.</summary>
    public static float[][] Logits(string modelPath, int[] tokens, int threads)
    {
        using var model = LlamaCppRuntime.Default.Open(new ModelOptions { Path = modelPath, ContextSize = Math.Max(32, tokens.Length), Threads = threads, Exact = true });
        var all = model.Logits(tokens);
        int v = model.VocabularySize;
        return Enumerable.Range(0, tokens.Length).Select(i => all.AsSpan(i * v, v).ToArray()).ToArray();
    }
}
