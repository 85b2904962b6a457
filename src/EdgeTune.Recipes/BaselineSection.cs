using EdgeTune.Profiles.Toml;

namespace EdgeTune.Recipes;

/// <summary>
/// [baseline]: the retrieval baselines `edgetune baseline` and `edgetune eval` run beside the base and fixed few-shot
/// ones. retrieved_few_shot: the k training examples most similar to each test prompt (BM25) as demonstrations.
/// knowledge: a folder of Markdown, text and JSONL {title, text} documents for the rag baseline, chunked on headings
/// and paragraphs to about chunk_tokens model tokens (chunk_overlap shared between neighbours), the top_k chunks
/// placed in the system prompt.
/// </summary>
public sealed record BaselineSection
{
    /// <summary>Demonstrations per test prompt for retrieved few-shot; null takes [eval].few_shot; 0 turns it off.</summary>
    public int? RetrievedFewShot { get; init; }
    /// <summary>The knowledge folder for the rag baseline; null: no rag runner.</summary>
    public string? Knowledge { get; init; }
    public int ChunkTokens { get; init; } = 256;
    public int ChunkOverlap { get; init; } = 32;
    public int TopK { get; init; } = 4;

    internal static BaselineSection Read(TomlSection s, Func<string, string> resolve)
    {
        s.RefuseUnknown(["retrieved_few_shot", "knowledge", "chunk_tokens", "chunk_overlap", "top_k"]);
        var d = new BaselineSection();
        int chunkTokens = s.Int("chunk_tokens", 8, 1 << 20) ?? d.ChunkTokens;
        int overlap = s.Int("chunk_overlap", 0, 1 << 20) ?? Math.Min(d.ChunkOverlap, chunkTokens / 4);
        if (overlap >= chunkTokens) throw s.Error("chunk_overlap", $"{overlap} must be below chunk_tokens ({chunkTokens})");
        return new BaselineSection
        {
            RetrievedFewShot = s.Int("retrieved_few_shot", 0, 1000),
            Knowledge = s.String("knowledge") is { Length: > 0 } k ? resolve(k) : null,
            ChunkTokens = chunkTokens,
            ChunkOverlap = overlap,
            TopK = s.Int("top_k", 1, 100) ?? d.TopK,
        };
    }
}
