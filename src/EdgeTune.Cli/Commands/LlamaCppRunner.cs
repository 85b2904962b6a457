using EdgeTune.Core;
using LLama;
using LLama.Common;
using LLama.Native;

namespace EdgeTune.Cli.Commands;

/// <summary>Runs a GGUF in llama.cpp (through LLamaSharp) and returns its logits: the consumer's verdict on a file.</summary>
internal static class LlamaCppRunner
{
    private static readonly Lock InitLock = new();
    private static bool _loaded;

    internal static void EnsureLoaded()
    {
        lock (InitLock)
        {
            if (_loaded) return;
            NativeApi.llama_empty_call(); // registers LLamaSharp's native-library resolver and loads llama.cpp
            // Set after loading (NativeLibraryConfig may only be changed before), so any caller order works.
            NativeLogConfig.llama_log_set((_, _) => { });
            _loaded = true;
        }
    }

    /// <summary>Logits at every position of <paramref name="tokens"/>, with exact (F32 KV cache) settings.</summary>
    public static float[][] Logits(string modelPath, int[] tokens, int threads)
    {
        EnsureLoaded();
        var parameters = new ModelParams(modelPath)
        {
            ContextSize = (uint)Math.Max(32, tokens.Length),
            BatchSize = (uint)Math.Max(32, tokens.Length),
            GpuLayerCount = 0,
            TypeK = GGMLType.GGML_TYPE_F32,
            TypeV = GGMLType.GGML_TYPE_F32,
            FlashAttention = false,
            Threads = threads,
        };
        using var weights = LoadOrFail(parameters, modelPath);
        using var context = weights.CreateContext(parameters);
        var batch = new LLamaBatch();
        for (int i = 0; i < tokens.Length; i++) batch.Add((LLamaToken)tokens[i], i, LLamaSeqId.Zero, logits: true);
        var result = context.NativeHandle.Decode(batch);
        if (result != DecodeResult.Ok) throw new EdgeTuneException($"{modelPath}: llama.cpp could not evaluate the model ({result})");
        return Enumerable.Range(0, tokens.Length).Select(i => context.NativeHandle.GetLogitsIth(i).ToArray()).ToArray();
    }

    private static LLamaWeights LoadOrFail(ModelParams parameters, string path)
    {
        try
        {
            return LLamaWeights.LoadFromFile(parameters);
        }
        catch (LLama.Exceptions.LoadWeightsFailedException)
        {
            throw new EdgeTuneException($"{path}: llama.cpp refused to load the model");
        }
    }
}
