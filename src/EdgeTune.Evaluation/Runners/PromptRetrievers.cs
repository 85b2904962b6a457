using EdgeTune.Data;
using EdgeTune.Retrieval;

namespace EdgeTune.Evaluation.Runners;

/// <summary>One thing retrieval found for a test prompt: a training example to show as a demonstration, or a knowledge chunk.</summary>
public sealed record Retrieved(string Id, DatasetExample? Shot = null, KnowledgeChunk? Chunk = null);

/// <summary>
/// Per-example context for a runner: candidates most relevant first. The runner shows as many of them as fit the
/// context budget, in that order, and records their ids in the answers file.
/// </summary>
public abstract class PromptRetriever : IDisposable
{
    /// <summary>What the answers depend on besides the model (resumed answers must come from the same retrieval).</summary>
    public abstract string Key { get; }
    public abstract string Description { get; }
    public abstract IReadOnlyList<Retrieved> Retrieve(EvalItem item);
    public virtual void Dispose() => GC.SuppressFinalize(this);

    /// <summary>The text retrieval is asked with: the test prompt's last user turn.</summary>
    public static string Query(EvalItem item) => item.Prompt.LastOrDefault(m => m.Role == "user")?.Content ?? "";
}

/// <summary>
/// Retrieved few-shot: BM25 (SQLite FTS5) over the training examples' prompts. It is built from the training split
/// alone, so no test or eval row can be retrieved whatever their similarity.
/// </summary>
public sealed class RetrievedShots : PromptRetriever
{
    private readonly ExampleIndex index;
    private readonly Dictionary<string, DatasetExample> byId = [];
    private readonly int k;

    public RetrievedShots(IReadOnlyList<DatasetExample> trainingSplit, int k)
    {
        this.k = k;
        foreach (var e in trainingSplit.Where(e => e.Answer.Length > 0)) byId.TryAdd(TextHash.Hex(e.Hash), e);
        index = new ExampleIndex(byId.Select(kv => (kv.Key, PromptText(kv.Value))));
        Key = $"retrieved_few_shot|{k}|{TextHash.Hex(TextHash.Of(string.Join(",", byId.Keys)))}";
    }

    public override string Key { get; }
    public override string Description => $"{k} retrieved shots (BM25 over {byId.Count} training examples)";

    /// <summary>What a training example is found by: its user turns.</summary>
    private static string PromptText(DatasetExample e) => string.Join("\n", e.Messages.Where(m => m.Role == "user").Select(m => m.Content));

    public override IReadOnlyList<Retrieved> Retrieve(EvalItem item) =>
        index.Search(Query(item), k).Select(id => new Retrieved(id, Shot: byId[id])).ToList();

    public override void Dispose()
    {
        index.Dispose();
        base.Dispose();
    }
}

/// <summary>RAG: the top-k chunks of a knowledge index for the test prompt, placed in the system prompt.</summary>
public sealed class KnowledgeChunks(KnowledgeIndex index, int k) : PromptRetriever
{
    public override string Key { get; } = $"rag|{k}|{TextHash.Hex(TextHash.Of(string.Join(",", index.Chunks().Select(c => c.ChunkId + ":" + TextHash.Hex(TextHash.Of(c.Text))))))}";
    public override string Description => $"top {k} of {index.ChunkCount} knowledge chunks (BM25, {Path.GetFileName(index.File)})";

    public override IReadOnlyList<Retrieved> Retrieve(EvalItem item) =>
        index.Search(Query(item), k).Select(h => new Retrieved(h.Chunk.ChunkId, Chunk: h.Chunk)).ToList();

    public override void Dispose()
    {
        index.Dispose();
        base.Dispose();
    }
}
