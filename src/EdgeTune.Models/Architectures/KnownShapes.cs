using EdgeTune.Core;

namespace EdgeTune.Models.Architectures;

/// <summary>A real model's dimensions, as its published config.json states them, with the link to that file.</summary>
public sealed record KnownShape(string Name, string Source, ModelConfig Config)
{
    public long Parameters => ParameterCount(Config);

    /// <summary>Weights of the decoder: embeddings, q/k/v/o and the SwiGLU FFN per layer, norms, q/k/v biases, the head when untied.</summary>
    public static long ParameterCount(ModelConfig c)
    {
        long perLayer = (long)c.HiddenSize * c.QDim * 2 + 2L * c.HiddenSize * c.KvDim + 3L * c.HiddenSize * c.IntermediateSize + 2L * c.HiddenSize
            + (c.AttentionBias ? c.QDim + 2L * c.KvDim : 0);
        long embedding = (long)c.VocabSize * c.HiddenSize;
        return embedding * (c.TiedEmbeddings ? 1 : 2) + perLayer * c.Layers + c.HiddenSize;
    }
}

/// <summary>
/// Built-in shapes of the models EdgeTune's users tune (for <c>edgetune bench train --shape</c> and <c>edgetune plan</c>):
/// dimensions and vocabulary size (the embedding rows, config.json's vocab_size) from each model's config.json.
/// </summary>
public static class KnownShapes
{
    private static ModelConfig Shape(string arch, string type, int vocab, int hidden, int layers, int heads, int kvHeads, int ffn, bool tied,
        double theta, double eps, int context) => new()
    {
        Architecture = arch, HfModelType = type, VocabSize = vocab, HiddenSize = hidden, Layers = layers, Heads = heads, KvHeads = kvHeads,
        HeadDim = hidden / heads, IntermediateSize = ffn, RmsEpsilon = eps, RopeTheta = theta, TiedEmbeddings = tied,
        AttentionBias = arch == "qwen2", ContextLength = context,
    };

    public static readonly IReadOnlyList<KnownShape> All =
    [
        new("qwen2.5-0.5b", "https://huggingface.co/Qwen/Qwen2.5-0.5B/blob/main/config.json",
            Shape("qwen2", "qwen2", 151_936, 896, 24, 14, 2, 4864, tied: true, 1_000_000, 1e-6, 32_768)),
        new("qwen2.5-1.5b", "https://huggingface.co/Qwen/Qwen2.5-1.5B/blob/main/config.json",
            Shape("qwen2", "qwen2", 151_936, 1536, 28, 12, 2, 8960, tied: true, 1_000_000, 1e-6, 32_768)),
        new("llama-3.2-1b", "https://huggingface.co/meta-llama/Llama-3.2-1B/blob/main/config.json",
            Shape("llama", "llama", 128_256, 2048, 16, 32, 8, 8192, tied: true, 500_000, 1e-5, 131_072)),
        new("tinyllama-1.1b", "https://huggingface.co/TinyLlama/TinyLlama-1.1B-Chat-v1.0/blob/main/config.json",
            Shape("llama", "llama", 32_000, 2048, 22, 32, 4, 5632, tied: false, 10_000, 1e-5, 2048)),
        new("smollm2-1.7b", "https://huggingface.co/HuggingFaceTB/SmolLM2-1.7B/blob/main/config.json",
            Shape("llama", "llama", 49_152, 2048, 24, 32, 32, 8192, tied: true, 130_000, 1e-5, 8192)),
    ];

    public static KnownShape? Find(string name) => All.FirstOrDefault(s => string.Equals(s.Name, name, StringComparison.OrdinalIgnoreCase));

    /// <summary>A built-in name, or a Hugging Face config.json (the file or its folder); otherwise one line naming the choices.</summary>
    public static KnownShape Resolve(string nameOrConfig)
    {
        if (Find(nameOrConfig) is { } known) return known;
        if (File.Exists(nameOrConfig) || Directory.Exists(nameOrConfig))
        {
            var c = ModelConfig.FromHuggingFace(nameOrConfig);
            return new KnownShape(Path.GetFileName(Path.TrimEndingDirectorySeparator(Directory.Exists(nameOrConfig) ? nameOrConfig : Path.GetDirectoryName(Path.GetFullPath(nameOrConfig))!)), Path.GetFullPath(nameOrConfig), c);
        }
        throw new EdgeTuneException($"{nameOrConfig}: not a built-in shape ({string.Join(", ", All.Select(s => s.Name))}) and no such config.json");
    }
}
