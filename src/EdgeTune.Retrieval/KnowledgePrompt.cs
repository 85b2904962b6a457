using System.Text;

namespace EdgeTune.Retrieval;

/// <summary>
/// How retrieved chunks enter a prompt, the same for the rag baseline and the agent (what was measured is what is
/// served): after the system prompt, each chunk under its id.
/// </summary>
public static class KnowledgePrompt
{
    public const string Preamble = "Use these excerpts from the knowledge base where they apply:";

    public static string System(string? system, IReadOnlyList<KnowledgeChunk> chunks)
    {
        if (chunks.Count == 0) return system ?? "";
        var sb = new StringBuilder();
        if (!string.IsNullOrEmpty(system)) sb.Append(system).Append("\n\n");
        sb.Append(Preamble);
        foreach (var c in chunks) sb.Append("\n\n[").Append(c.ChunkId).Append("]\n").Append(c.Content);
        return sb.ToString();
    }
}
