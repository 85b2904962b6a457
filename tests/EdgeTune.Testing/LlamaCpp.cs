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
            NativeApi.llama_empty_call(); // registers LLamaSharp's native-library resolver and loads llama.cpp
            // Set after loading (NativeLibraryConfig may only be changed before), so any caller order works.
            NativeLogConfig.llama_log_set((_, _) => { });
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
    /// <summary>
    /// Parity settings (F32 KV cache, no flash attention: ~5e-7 agreement, see REFERENCE.md) for a prompt of
    /// up to <paramref name="contextSize"/> tokens.
    /// </summary>
    private static ModelParams ParityParams(string modelPath, int contextSize) => new(modelPath)
    {
        ContextSize = (uint)contextSize,
        GpuLayerCount = 0,
        BatchSize = (uint)contextSize,
        UBatchSize = (uint)contextSize,
        TypeK = GGMLType.GGML_TYPE_F32,
        TypeV = GGMLType.GGML_TYPE_F32,
        FlashAttention = false,
        Threads = 2,
    };

    /// <summary>
    /// llama.cpp's logits of every position, (T, V) row-major, with the parity settings; with
    /// <paramref name="adapterPath"/>, that GGUF LoRA adapter attached at scale 1 (llama.cpp adds scale·B(A·x)).
    /// </summary>
    public static float[] AllLogits(string modelPath, int[] tokens, string? adapterPath = null)
    {
        EnsureLoaded();
        var parameters = ParityParams(modelPath, Math.Max(64, tokens.Length));
        using var weights = LLamaWeights.LoadFromFile(parameters);
        using var context = weights.CreateContext(parameters);
        if (adapterPath is not null)
        {
            var adapter = weights.NativeHandle.LoadLoraFromFile(adapterPath);
            context.NativeHandle.SetLoraAdapters([(adapter, 1f)]);
        }
        var batch = new LLamaBatch();
        for (int i = 0; i < tokens.Length; i++) batch.Add((LLamaToken)tokens[i], i, LLamaSeqId.Zero, true);
        var result = context.NativeHandle.Decode(batch);
        if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode failed: {result}");
        var all = new List<float>();
        for (int i = 0; i < tokens.Length; i++) all.AddRange(context.NativeHandle.GetLogitsIth(i).ToArray());
        return all.ToArray();
    }

    /// <summary>llama.cpp's greedy continuation: decode the prompt, then one token at a time, taking the argmax.</summary>
    public static int[] Greedy(string modelPath, int[] prompt, int count)
    {
        EnsureLoaded();
        var parameters = ParityParams(modelPath, Math.Max(64, prompt.Length + count));
        using var weights = LLamaWeights.LoadFromFile(parameters);
        using var context = weights.CreateContext(parameters);
        var batch = new LLamaBatch();
        for (int i = 0; i < prompt.Length; i++) batch.Add((LLamaToken)prompt[i], i, LLamaSeqId.Zero, i == prompt.Length - 1);
        var generated = new int[count];
        for (int n = 0; n < count; n++)
        {
            var result = context.NativeHandle.Decode(batch);
            if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode failed: {result}");
            var logits = context.NativeHandle.GetLogitsIth(batch.TokenCount - 1);
            int best = 0;
            for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
            generated[n] = best;
            batch.Clear();
            batch.Add((LLamaToken)best, prompt.Length + n, LLamaSeqId.Zero, true);
        }
        return generated;
    }
}
