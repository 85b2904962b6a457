using EdgeTune.Inference;
using EdgeTune.Inference.LlamaCpp;
using LLama.Native;

namespace EdgeTune.Testing;

/// <summary>
/// llama.cpp as the oracle: it loads what we write and quantises what we quantise. Start-up, parity settings and
/// the one-inference-thread rule come from EdgeTune.Inference (the product's one llama.cpp layer); only the
/// argmax loop and llama.cpp's own quantiser are the oracle's.
/// </summary>
public static class LlamaCpp
{
    /// <summary>Loads llama.cpp through the product's loader (which silences its log).</summary>
    public static void EnsureLoaded() => LlamaCppNative.EnsureLoaded();

    /// <summary>Quantise with llama.cpp's own llama_model_quantize; throws when it fails.</summary>
    public static void Quantize(string input, string output, LLamaFtype ftype, bool pure = false, int threads = 1)
    {
        EnsureLoaded();
        var p = LLamaModelQuantizeParams.Default();
        p.ftype = ftype;
        p.nthread = threads;
        p.pure = pure;
        uint rc = NativeApi.llama_model_quantize(input, output, ref p);
        if (rc != 0) throw new InvalidOperationException($"llama_model_quantize failed ({rc}) for {input}");
    }

    /// <summary>
    /// Parity settings (F32 KV cache, no flash attention, one ubatch: ~5e-7 agreement, see REFERENCE.md) for a
    /// prompt of up to <paramref name="contextSize"/> tokens; with <paramref name="adapterPath"/>, that GGUF LoRA
    /// adapter attached at scale 1 (llama.cpp adds scale·B(A·x)).
    /// </summary>
    private static IInferenceModel Open(string modelPath, int contextSize, string? adapterPath = null) =>
        LlamaCppRuntime.Default.Open(new ModelOptions
        {
            Path = modelPath,
            ContextSize = Math.Max(64, contextSize),
            Threads = 2,
            Exact = true,
            Adapters = adapterPath is null ? [] : [adapterPath],
        });

    /// <summary>llama.cpp's logits of the last position for <paramref name="tokens"/>.</summary>
    public static float[] LastLogits(string modelPath, int[] tokens)
    {
        using var model = Open(modelPath, tokens.Length);
        return model.Logits(tokens, tokens.Length - 1);
    }

    /// <summary>llama.cpp's logits of every position, (T, V) row-major, with the parity settings.</summary>
    public static float[] AllLogits(string modelPath, int[] tokens, string? adapterPath = null)
    {
        using var model = Open(modelPath, tokens.Length, adapterPath);
        return model.Logits(tokens);
    }

    /// <summary>llama.cpp's greedy continuation: decode the prompt, then one token at a time, taking the argmax.</summary>
    public static int[] Greedy(string modelPath, int[] prompt, int count)
    {
        using var model = Open(modelPath, prompt.Length + count);
        return model.Run(session =>
        {
            session.Prompt(prompt);
            var generated = new int[count];
            for (int n = 0; n < count; n++)
            {
                var logits = session.LastLogits();
                int best = 0;
                for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
                generated[n] = best;
                if (n + 1 < count) session.Decode(best);
            }
            return generated;
        });
    }
}
