using LLama;
using LLama.Common;
using LLama.Native;

namespace EdgeTune.Testing;

/// <summary>
/// llama.cpp, through LLamaSharp, as the oracle: it loads what we write and quantises what we quantise.
/// </summary>
public static class LlamaCpp
{
    private static readonly Lock InitLock = new();
    private static bool _initialised;

    /// <summary>Registers LLamaSharp's native-library resolver (any NativeApi call does it) and silences its log.</summary>
    public static void EnsureLoaded()
    {
        lock (InitLock)
        {
            if (_initialised) return;
            try
            {
                NativeLibraryConfig.All.WithLogCallback((level, message) => { });
            }
            catch (InvalidOperationException)
            {
                // The code under test loaded llama.cpp first (the CLI does): configure its log directly.
                NativeLogConfig.llama_log_set((level, message) => { });
            }
            NativeApi.llama_empty_call();
            _initialised = true;
        }
    }

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

    /// <summary>Load a GGUF with llama.cpp and return the logits of the last position for <paramref name="tokens"/>.</summary>
    public static float[] LastLogits(string modelPath, int[] tokens)
    {
        EnsureLoaded();
        var parameters = new ModelParams(modelPath)
        {
            ContextSize = 64,
            GpuLayerCount = 0,
            BatchSize = 64,
            TypeK = GGMLType.GGML_TYPE_F32,
            TypeV = GGMLType.GGML_TYPE_F32,
            FlashAttention = false,
            Threads = 1,
        };
        using var weights = LLamaWeights.LoadFromFile(parameters);
        using var context = weights.CreateContext(parameters);
        var batch = new LLamaBatch();
        for (int i = 0; i < tokens.Length; i++) batch.Add((LLamaToken)tokens[i], i, LLamaSeqId.Zero, i == tokens.Length - 1);
        var result = context.NativeHandle.Decode(batch);
        if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode failed: {result}");
        return context.NativeHandle.GetLogitsIth(batch.TokenCount - 1).ToArray();
    }
}
