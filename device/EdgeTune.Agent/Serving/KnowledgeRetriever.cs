using EdgeTune.Agent.Config;
using EdgeTune.Inference;
using EdgeTune.Models.Chat;
using EdgeTune.Retrieval;

namespace EdgeTune.Agent.Serving;

/// <summary>
/// [retrieval]: the knowledge index chat completions are served with. It is opened each time a model loads (at start,
/// and when a bundle brings another model and perhaps its own index), with that model's tokenizer checked against the
/// one the index was built for (chunk sizes are counted in it): a stale index fails the model's load in one line
/// rather than serving chunks of the wrong size. Without [retrieval] for the model served, it retrieves nothing.
/// </summary>
public sealed class KnowledgeRetriever : IDisposable
{
    private readonly Lock _gate = new();
    private KnowledgeIndex? _index;
    private RetrievalConfig? _config;

    /// <summary>The index file's name while one is attached.</summary>
    public string? IndexName
    {
        get { lock (_gate) return _config is null ? null : Path.GetFileName(_config.Index); }
    }

    /// <summary>Opens <paramref name="config"/>'s index for <paramref name="model"/>, replacing the previous one; null: serve without retrieval.</summary>
    public void Attach(IInferenceModel model, RetrievalConfig? config)
    {
        var opened = config is null ? null : KnowledgeIndex.Open(config.Index, KnowledgeIndex.Fingerprint(text => model.Tokenize(text, addSpecial: false, parseSpecial: false)));
        KnowledgeIndex? previous;
        lock (_gate)
        {
            previous = _index;
            _index = opened;
            _config = config;
        }
        previous?.Dispose();
    }

    /// <summary>
    /// The top_k chunks for the conversation's last user turn, most relevant first, as many as fit max_context_tokens
    /// (the whole block placed in the system turn, counted with <paramref name="countTokens"/>, the model's tokenizer);
    /// null when the model is served without retrieval.
    /// </summary>
    public IReadOnlyList<KnowledgeChunk>? Retrieve(IReadOnlyList<ChatMessage> messages, Func<string, int> countTokens)
    {
        IReadOnlyList<KnowledgeHit> hits = [];
        RetrievalConfig config;
        lock (_gate)
        {
            if (_index is null || _config is null) return null;
            config = _config;
            string? query = messages.LastOrDefault(m => m.Role == "user")?.Content;
            if (!string.IsNullOrWhiteSpace(query)) hits = _index.Search(query, config.TopK);
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
            _config = null;
        }
    }
}
