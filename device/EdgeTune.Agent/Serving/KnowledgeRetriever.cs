using EdgeTune.Agent.Config;
using EdgeTune.Inference;
using EdgeTune.Models.Chat;
using EdgeTune.Retrieval;

namespace EdgeTune.Agent.Serving;

/// <summary>
/// [retrieval]: the knowledge index chat completions are served with. It is opened when a model has loaded, with that
/// model's tokenizer checked against the one the index was built for (chunk sizes are counted in it), so a stale index
/// fails the model's load in one line rather than serving chunks of the wrong size.
/// </summary>
public sealed class KnowledgeRetriever(RetrievalConfig config) : IDisposable
{
    private readonly Lock _gate = new();
    private KnowledgeIndex? _index;

    public RetrievalConfig Config => config;
    public string IndexName => Path.GetFileName(config.Index);

    /// <summary>Opens the index for <paramref name="model"/> (replacing one opened for a previous model).</summary>
    public void Attach(IInferenceModel model)
    {
        var opened = KnowledgeIndex.Open(config.Index, KnowledgeIndex.Fingerprint(text => model.Tokenize(text, addSpecial: false, parseSpecial: false)));
        KnowledgeIndex? previous;
        lock (_gate)
        {
            previous = _index;
            _index = opened;
        }
        previous?.Dispose();
    }

    /// <summary>
    /// The top_k chunks for the conversation's last user turn, most relevant first, as many as fit max_context_tokens
    /// (the whole block placed in the system turn, counted with <paramref name="countTokens"/>, the model's tokenizer).
    /// </summary>
    public IReadOnlyList<KnowledgeChunk> Retrieve(IReadOnlyList<ChatMessage> messages, Func<string, int> countTokens)
    {
        string? query = messages.LastOrDefault(m => m.Role == "user")?.Content;
        if (string.IsNullOrWhiteSpace(query)) return [];
        IReadOnlyList<KnowledgeHit> hits;
        lock (_gate)
        {
            if (_index is null) return [];
            hits = _index.Search(query, config.TopK);
        }
        var chunks = new List<KnowledgeChunk>();
        foreach (var hit in hits)
        {
            chunks.Add(hit.Chunk);
            if (countTokens(KnowledgePrompt.System(null, chunks)) > config.MaxContextTokens)
            {
                chunks.RemoveAt(chunks.Count - 1);
                break;
            }
        }
        return chunks;
    }

    /// <summary>The conversation as the model is shown it: <paramref name="chunks"/> in the system turn, as the rag baseline placed them.</summary>
    public static IReadOnlyList<ChatMessage> Place(IReadOnlyList<ChatMessage> messages, IReadOnlyList<KnowledgeChunk> chunks)
    {
        if (chunks.Count == 0) return messages;
        var served = messages.ToList();
        if (served.Count > 0 && served[0].Role == "system") served[0] = served[0] with { Content = KnowledgePrompt.System(served[0].Content, chunks) };
        else served.Insert(0, new ChatMessage("system", KnowledgePrompt.System(null, chunks)));
        return served;
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _index?.Dispose();
            _index = null;
        }
    }
}
