using EdgeTune.Core;
using EdgeTune.Data.Synthetic;
using EdgeTune.Testing;
using Microsoft.Data.Sqlite;

namespace EdgeTune.Retrieval.Tests;

public class KnowledgeIndexTests
{
    private static ChunkingOptions Options(int chunkTokens = 64, int overlap = 8, int max = int.MaxValue) =>
        new() { ChunkTokens = chunkTokens, ChunkOverlap = overlap, Tokenize = WordTokenizer.Tokenize, MaxChunkTokens = max };

    [Fact]
    public void The_bundled_sqlite_has_fts5_with_bm25()
    {
        using var db = new SqliteConnection("Data Source=:memory:");
        db.Open();
        using var cmd = db.CreateCommand();
        cmd.CommandText = "CREATE VIRTUAL TABLE t USING fts5(x); INSERT INTO t VALUES ('warranty months'), ('returns days'); " +
                          "SELECT x FROM t WHERE t MATCH 'warranty' ORDER BY bm25(t)";
        Assert.Equal("warranty months", cmd.ExecuteScalar());
    }

    [Fact]
    public void Recall_at_4_of_the_gold_chunk_is_at_least_0_9_on_a_generated_knowledge_base()
    {
        using var dir = new TempDir();
        string docs = dir.File("docs");
        var questions = ProductKnowledge.Write(docs, products: 15, seed: 3);
        var built = KnowledgeIndex.Build(docs, dir.File("kb.etidx"), Options(), "word-tokenizer");
        Assert.Equal(15, built.Files);
        using var index = KnowledgeIndex.Open(dir.File("kb.etidx"));
        var chunks = index.Chunks();
        Assert.True(chunks.Count >= 15 * 4, $"{chunks.Count} chunks");
        int found = 0;
        foreach (var q in questions)
        {
            // The generator's promise: the answer sits in exactly one chunk.
            var gold = chunks.Where(c => c.Text.Contains(q.GoldSentence, StringComparison.Ordinal)).ToList();
            Assert.Single(gold);
            Assert.Equal(q.File, gold[0].File);
            if (index.Search(q.Text, 4).Any(h => h.Chunk.ChunkId == gold[0].ChunkId)) found++;
        }
        double recall = (double)found / questions.Count;
        Assert.True(recall >= 0.9, $"recall@4 {recall:0.###} ({found}/{questions.Count})");
    }

    [Fact]
    public void Chunks_follow_headings_and_paragraphs_within_the_token_budget_with_overlap()
    {
        using var dir = new TempDir();
        string docs = dir.File("docs");
        Directory.CreateDirectory(docs);
        string longParagraph = string.Join(' ', Enumerable.Range(0, 300).Select(i => $"w{i}"));
        File.WriteAllText(Path.Combine(docs, "guide.md"),
            $"# Guide\n\nIntro line.\n\n## Setup\n\nPlug it in.\n\nTurn it on.\n\n## Long\n\n{longParagraph}\n\n```\n# not a heading\n```\n");
        var files = KnowledgeFolder.Read(docs);
        var chunks = new Chunker(Options(chunkTokens: 50, overlap: 10)).Chunk(files[0], "guide.md");
        Assert.Equal("Guide", chunks[0].Heading);
        Assert.Equal("Intro line.", chunks[0].Text);
        var setup = chunks.Single(c => c.Heading == "Guide > Setup");
        Assert.Equal("Plug it in.\n\nTurn it on.", setup.Text);
        Assert.Equal(7, setup.Line);
        var longOnes = chunks.Where(c => c.Heading == "Guide > Long").ToList();
        Assert.True(longOnes.Count >= 7, $"{longOnes.Count} chunks for 300 words at 50 tokens");
        Assert.All(chunks, c => Assert.True(c.Tokens <= 50, $"{c.ChunkId}: {c.Tokens} tokens"));
        // Consecutive chunks of a section share their boundary words; every word is in some chunk.
        for (int i = 1; i < longOnes.Count - 1; i++)
        {
            string lastWord = longOnes[i - 1].Text.Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries)[^1];
            Assert.Contains(lastWord, longOnes[i].Text.Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries));
        }
        var all = chunks.SelectMany(c => c.Text.Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries)).ToHashSet();
        Assert.All(Enumerable.Range(0, 300), i => Assert.Contains($"w{i}", all));
        Assert.Contains(chunks, c => c.Text.Contains("# not a heading", StringComparison.Ordinal));
        Assert.Equal(chunks.Count, chunks.Select(c => c.ChunkId).Distinct().Count());
    }

    [Fact]
    public void Text_and_jsonl_documents_are_read_with_their_titles()
    {
        using var dir = new TempDir();
        string docs = dir.File("docs");
        Directory.CreateDirectory(Path.Combine(docs, "faq"));
        File.WriteAllText(Path.Combine(docs, "notes.txt"), "Plain text notes.\n\nSecond paragraph.");
        File.WriteAllText(Path.Combine(docs, "faq", "faq.jsonl"), "{\"title\": \"Reset\", \"text\": \"Hold the button ten seconds.\"}\n\n{\"text\": \"No title here.\"}\n");
        KnowledgeIndex.Build(docs, dir.File("kb.etidx"), Options(), "word-tokenizer");
        using var index = KnowledgeIndex.Open(dir.File("kb.etidx"));
        var chunks = index.Chunks();
        var reset = chunks.Single(c => c.Heading == "Reset");
        Assert.Equal(("faq/faq.jsonl", 1), (reset.File, reset.Line));
        var untitled = chunks.Single(c => c.Text == "No title here.");
        Assert.Equal(("faq:3", 3), (untitled.Heading, untitled.Line));
        Assert.Equal("notes", chunks.Single(c => c.File == "notes.txt").Heading);
        Assert.Equal("faq/faq.jsonl#1", index.Search("how do I reset it", 1).Single().Chunk.ChunkId);
    }

    [Fact]
    public void The_index_is_rebuilt_only_for_documents_whose_content_changed()
    {
        using var dir = new TempDir();
        string docs = dir.File("docs"), kb = dir.File("kb.etidx");
        ProductKnowledge.Write(docs, products: 4, seed: 1);
        var first = KnowledgeIndex.Build(docs, kb, Options(), "m");
        Assert.Equal((4, 4, false), (first.Files, first.FilesChunked, first.UpToDate));

        var again = KnowledgeIndex.Build(docs, kb, Options(), "m");
        Assert.True(again.UpToDate);
        Assert.Equal(first.Chunks, again.Chunks);

        File.AppendAllText(Path.Combine(docs, "CamPro.md"), "\n## Colours\n\nThe CamPro comes in teal.\n");
        File.Delete(Path.Combine(docs, "HubMini.md"));
        var update = KnowledgeIndex.Build(docs, kb, Options(), "m");
        Assert.Equal((3, 1, 2, 1), (update.Files, update.FilesChunked, update.FilesKept, update.FilesRemoved));
        using (var index = KnowledgeIndex.Open(kb))
        {
            Assert.Equal("CamPro.md", index.Search("what colours does the CamPro come in", 1)[0].Chunk.File);
            Assert.DoesNotContain(index.Chunks(), c => c.File == "HubMini.md");
        }

        // Other chunk sizes: everything again.
        var resized = KnowledgeIndex.Build(docs, kb, Options(chunkTokens: 32), "m");
        Assert.Equal(3, resized.FilesChunked);
        Assert.Empty(Directory.GetFiles(dir.Path, "*.tmp"));
    }

    [Fact]
    public void Opening_a_missing_foreign_or_stale_index_is_one_line_naming_the_file()
    {
        using var dir = new TempDir();
        string docs = dir.File("docs"), kb = dir.File("kb.etidx");
        var e = Assert.Throws<EdgeTuneException>(() => KnowledgeIndex.Open(kb));
        Assert.StartsWith($"{kb}: no such knowledge index", e.Message);

        File.WriteAllText(dir.File("junk.etidx"), "not sqlite at all, just some text that is long enough to be a header........");
        e = Assert.Throws<EdgeTuneException>(() => KnowledgeIndex.Open(dir.File("junk.etidx")));
        Assert.StartsWith($"{dir.File("junk.etidx")}: not a knowledge index", e.Message);

        ProductKnowledge.Write(docs, products: 2, seed: 1);
        KnowledgeIndex.Build(docs, kb, Options(), "m");
        string fingerprint = KnowledgeIndex.Fingerprint(WordTokenizer.Tokenize);
        using (KnowledgeIndex.Open(kb, fingerprint)) { }
        e = Assert.Throws<EdgeTuneException>(() => KnowledgeIndex.Open(kb, "0000000000000000"));
        Assert.StartsWith($"{kb}: stale knowledge index: built for another tokenizer", e.Message);

        File.AppendAllText(Path.Combine(docs, "RouterX.md"), "\nNew fact.\n");
        e = Assert.Throws<EdgeTuneException>(() => KnowledgeIndex.Open(kb, fingerprint));
        Assert.Contains("stale knowledge index", e.Message);
        Assert.Contains("RouterX.md changed since it was built", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Bad_knowledge_folders_are_refused_in_one_line_naming_the_file()
    {
        using var dir = new TempDir();
        string docs = dir.File("docs"), kb = dir.File("kb.etidx");
        Directory.CreateDirectory(docs);
        var e = Assert.Throws<EdgeTuneException>(() => KnowledgeIndex.Build(docs, kb, Options(), "m"));
        Assert.StartsWith($"{docs}: no knowledge documents", e.Message);

        // Files of other kinds are skipped with a warning (documentation folders hold images).
        File.WriteAllBytes(Path.Combine(docs, "diagram.png"), [0x89, 0x50, 0x4e, 0x47, 0, 0, 0]);
        File.WriteAllText(Path.Combine(docs, "ok.md"), "# Ok\n\nFine text.\n");
        var warnings = new List<string>();
        KnowledgeIndex.Build(docs, kb, Options(), "m", warnings.Add);
        Assert.Equal([$"{Path.Combine(docs, "diagram.png")}: skipped (a knowledge folder is read for .md, .markdown, .txt, .jsonl files)"], warnings);

        // Binary content in a text file: refused at the byte.
        string binary = Path.Combine(docs, "blob.txt");
        File.WriteAllBytes(binary, [(byte)'a', (byte)'b', 0, 1, 2]);
        e = Assert.Throws<FileFormatException>(() => KnowledgeIndex.Build(docs, kb, Options(), "m"));
        Assert.StartsWith($"{binary}: at byte 2: a NUL byte", e.Message);
        File.WriteAllBytes(binary, [(byte)'a', 0xff, 0xfe, (byte)'b']);
        e = Assert.Throws<FileFormatException>(() => KnowledgeIndex.Build(docs, kb, Options(), "m"));
        Assert.StartsWith($"{binary}: at byte 1: not UTF-8", e.Message);
        File.Delete(binary);

        // Over 10 MB, before reading it.
        string big = Path.Combine(docs, "big.md");
        using (var f = File.Create(big)) f.SetLength(KnowledgeFolder.MaxFileBytes + 1);
        e = Assert.Throws<EdgeTuneException>(() => KnowledgeIndex.Build(docs, kb, Options(), "m"));
        Assert.StartsWith($"{big}: 10 MB, over the 10 MB a knowledge document may have", e.Message);
        File.Delete(big);

        // JSONL that is not {title, text}.
        string jsonl = Path.Combine(docs, "faq.jsonl");
        File.WriteAllText(jsonl, "{\"title\": \"a\", \"text\": \"b\"}\n{\"title\": \"a\"}\n");
        e = Assert.Throws<EdgeTuneException>(() => KnowledgeIndex.Build(docs, kb, Options(), "m"));
        Assert.StartsWith($"{jsonl}:2: no string \"text\" field", e.Message);
        File.Delete(jsonl);

        // A chunk that cannot fit the context: a line of 40 punctuation marks (40 tokens, no word break) after the overlap (ok, line 3) against 30.
        string wide = Path.Combine(docs, "wide.md");
        File.WriteAllText(wide, "# Wide\n\nok\n\n" + new string('=', 40) + "\n");
        e = Assert.Throws<EdgeTuneException>(() => KnowledgeIndex.Build(docs, kb, Options(chunkTokens: 20, overlap: 2, max: 30), "m"));
        Assert.StartsWith($"{wide}:3: a chunk of 42 tokens (starting here) is over the 30 tokens of the model's context", e.Message);

        e = Assert.Throws<EdgeTuneException>(() => KnowledgeIndex.Build(docs, kb, Options(chunkTokens: 64, max: 30), "m"));
        Assert.StartsWith("chunk_tokens 64 is over the 30 tokens", e.Message);
        Assert.True(File.Exists(kb)); // the earlier good index is untouched
        Assert.Empty(Directory.GetFiles(dir.Path, "*.tmp"));
    }
}
