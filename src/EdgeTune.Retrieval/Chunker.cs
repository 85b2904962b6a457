using EdgeTune.Core;

namespace EdgeTune.Retrieval;

/// <summary>How a knowledge folder is cut and counted: sizes in the model's tokens, through its tokenizer.</summary>
public sealed record ChunkingOptions
{
    /// <summary>Target chunk size in tokens (the heading line included).</summary>
    public int ChunkTokens { get; init; } = 256;
    /// <summary>Tokens of the previous chunk repeated at the start of the next one within a section.</summary>
    public int ChunkOverlap { get; init; } = 32;
    /// <summary>Text to token ids, no BOS (the model's tokenizer).</summary>
    public required Func<string, int[]> Tokenize { get; init; }
    /// <summary>A chunk over this many tokens cannot be placed in a prompt at all (the model's context): refused.</summary>
    public int MaxChunkTokens { get; init; } = int.MaxValue;

    public void Validate()
    {
        if (ChunkTokens < 8) throw new EdgeTuneException($"chunk_tokens {ChunkTokens}: at least 8 tokens");
        if (ChunkOverlap < 0 || ChunkOverlap >= ChunkTokens) throw new EdgeTuneException($"chunk_overlap {ChunkOverlap}: from 0 to below chunk_tokens ({ChunkTokens})");
        if (ChunkTokens > MaxChunkTokens) throw new EdgeTuneException($"chunk_tokens {ChunkTokens} is over the {MaxChunkTokens} tokens of the model's context a chunk may take: lower it");
    }
}

/// <summary>A piece of a knowledge document: what retrieval ranks and a prompt shows.</summary>
public sealed record KnowledgeChunk(string ChunkId, string File, int Line, string Heading, string Text, int Tokens)
{
    /// <summary>The heading path and the text, as the index stores it and the prompt shows it.</summary>
    public string Content => Heading.Length == 0 ? Text : $"{Heading}\n{Text}";
}

/// <summary>
/// Cuts documents on headings (Markdown #..######; a chunk never spans two sections, and carries its heading path),
/// then packs paragraphs into chunks of about <see cref="ChunkingOptions.ChunkTokens"/> tokens; a paragraph longer than
/// that is cut between words. Consecutive chunks of a section share about <see cref="ChunkingOptions.ChunkOverlap"/>
/// tokens, so a fact cut at a boundary is whole in one of them.
/// </summary>
public sealed class Chunker(ChunkingOptions options)
{
    private readonly Dictionary<string, int> wordTokens = new(StringComparer.Ordinal);

    public int Count(string text) => text.Length == 0 ? 0 : options.Tokenize(text).Length;

    public IReadOnlyList<KnowledgeChunk> Chunk(KnowledgeFile file, string fullPath)
    {
        var chunks = new List<KnowledgeChunk>();
        foreach (var doc in file.Documents)
            foreach (var section in Sections(doc))
                foreach (var (line, body) in Pack(section))
                {
                    var chunk = new KnowledgeChunk($"{file.RelativePath}#{chunks.Count + 1}", file.RelativePath, line, section.Heading, body, 0);
                    int tokens = Count(chunk.Content);
                    if (tokens > options.MaxChunkTokens)
                        throw new EdgeTuneException($"{fullPath}:{line}: a chunk of {tokens} tokens (starting here) is over the {options.MaxChunkTokens} tokens of the model's context it may take (a word or line that cannot be cut: shorten it)");
                    chunks.Add(chunk with { Tokens = tokens });
                }
        return chunks;
    }

    private sealed record Section(string Heading, List<(int Line, string Text)> Paragraphs);

    private static IEnumerable<Section> Sections(KnowledgeDocument doc)
    {
        var lines = doc.Text.Replace("\r\n", "\n").Split('\n');
        var path = new List<(int Level, string Title)>();
        if (!doc.Markdown) path.Add((0, doc.Title));
        var paragraphs = new List<(int Line, string Text)>();
        var paragraph = new List<string>();
        int paragraphLine = 0;
        bool fenced = false;
        string Heading() => string.Join(" > ", path.Select(p => p.Title));

        void EndParagraph()
        {
            if (paragraph.Count > 0) paragraphs.Add((paragraphLine, string.Join("\n", paragraph)));
            paragraph.Clear();
        }

        for (int i = 0; i < lines.Length; i++)
        {
            string line = lines[i].TrimEnd();
            int lineNo = doc.OneLine ? doc.Line : doc.Line + i;
            if (doc.Markdown && line.TrimStart().StartsWith("```", StringComparison.Ordinal)) fenced = !fenced;
            int level = doc.Markdown && !fenced ? HeadingLevel(line) : 0;
            if (level > 0)
            {
                EndParagraph();
                if (paragraphs.Count > 0) yield return new Section(Heading(), [.. paragraphs]);
                paragraphs.Clear();
                path.RemoveAll(p => p.Level >= level);
                path.Add((level, line[(level + 1)..].Trim().TrimEnd('#').Trim()));
                continue;
            }
            if (line.Trim().Length == 0 && !fenced) { EndParagraph(); continue; }
            if (paragraph.Count == 0) paragraphLine = lineNo;
            paragraph.Add(line);
        }
        EndParagraph();
        if (paragraphs.Count > 0) yield return new Section(Heading(), paragraphs);
    }

    private static int HeadingLevel(string line)
    {
        int level = 0;
        while (level < line.Length && line[level] == '#') level++;
        return level is >= 1 and <= 6 && level < line.Length && line[level] == ' ' ? level : 0;
    }

    /// <summary>
    /// A word's tokens on its own, cached: the packing estimate (a chunk's own count is exact). Without a leading space,
    /// since SentencePiece tokenizers add their own word-start marker and would count a second one.
    /// </summary>
    private int WordTokens(string word)
    {
        if (!wordTokens.TryGetValue(word, out int n)) wordTokens[word] = n = Math.Max(1, options.Tokenize(word).Length);
        return n;
    }

    /// <summary>The section's paragraphs packed into bodies (with the line each starts on), each within the budget.</summary>
    private IEnumerable<(int Line, string Body)> Pack(Section section)
    {
        int budget = Math.Max(1, options.ChunkTokens - Count(section.Heading) - 1);
        var current = new List<(int Line, List<string> Words)>();
        int currentTokens = 0;
        bool fresh = false; // does the current chunk hold anything beyond the overlap carried from the previous one?

        (int, string) Flush()
        {
            var body = (current[0].Line, string.Join("\n\n", current.Select(p => string.Join(' ', p.Words))));
            // The next chunk starts with the last words of this one, up to the overlap.
            var tail = new List<string>();
            int tailTokens = 0;
            foreach (var w in current.SelectMany(p => p.Words).Reverse())
            {
                int t = WordTokens(w);
                if (tailTokens + t > options.ChunkOverlap) break;
                tail.Insert(0, w);
                tailTokens += t;
            }
            int line = current[^1].Line;
            current = tail.Count > 0 ? [(line, tail)] : [];
            currentTokens = tailTokens;
            fresh = false;
            return body;
        }

        foreach (var (line, text) in section.Paragraphs)
        {
            var words = text.Split((char[])[' ', '\t', '\n'], StringSplitOptions.RemoveEmptyEntries).ToList();
            int tokens = words.Sum(WordTokens);
            if (currentTokens + tokens <= budget)
            {
                current.Add((line, words));
                currentTokens += tokens;
                fresh = true;
                continue;
            }
            if (fresh)
            {
                yield return Flush();
                if (currentTokens + tokens <= budget)
                {
                    current.Add((line, words));
                    currentTokens += tokens;
                    fresh = true;
                    continue;
                }
            }
            // A paragraph longer than the budget: cut between words.
            var part = new List<string>();
            current.Add((line, part));
            foreach (var w in words)
            {
                int t = WordTokens(w);
                if (currentTokens + t > budget && fresh)
                {
                    yield return Flush();
                    part = [];
                    current.Add((line, part));
                }
                part.Add(w);
                currentTokens += t;
                fresh = true;
            }
        }
        if (fresh) yield return Flush();
    }
}
