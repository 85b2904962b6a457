using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using EdgeTune.Core;
using EdgeTune.Core.IO;
using Microsoft.Data.Sqlite;

namespace EdgeTune.Retrieval;

/// <summary>What an index build did: how many files were (re)chunked, kept or dropped, and the result's size.</summary>
public sealed record IndexBuildResult(string File, int Files, int FilesChunked, int FilesKept, int FilesRemoved, int Chunks, long Bytes, bool UpToDate);

public sealed record IndexProgress(int Done, int Total);

/// <summary>One hit of a search: the chunk and its bm25() score (lower is better, as SQLite gives it).</summary>
public sealed record KnowledgeHit(KnowledgeChunk Chunk, double Score);

/// <summary>
/// A knowledge index file (kb.etidx): SQLite with an FTS5 table ranked by its bm25(), the chunks with their ids, and
/// each source file's SHA-256. A rebuild re-chunks only the files whose content changed (and drops removed ones);
/// a change of tokenizer or chunk sizes re-chunks everything. The file is replaced whole (written aside, fsynced,
/// renamed), so a reader never sees half an index.
/// </summary>
public sealed class KnowledgeIndex : IDisposable
{
    public const string Format = "edgetune-knowledge-index";
    public const int Version = 1;

    private readonly SqliteConnection connection;

    public string File { get; }
    public string TokenizerFingerprint { get; }
    public string Source { get; }
    public int ChunkTokens { get; }
    public int ChunkOverlap { get; }
    public int ChunkCount { get; }

    private KnowledgeIndex(string file, SqliteConnection connection, IReadOnlyDictionary<string, string> meta)
    {
        File = file;
        this.connection = connection;
        TokenizerFingerprint = meta["tokenizer"];
        Source = meta["source"];
        ChunkTokens = int.Parse(meta["chunk_tokens"], CultureInfo.InvariantCulture);
        ChunkOverlap = int.Parse(meta["chunk_overlap"], CultureInfo.InvariantCulture);
        using var count = connection.CreateCommand();
        count.CommandText = "SELECT count(*) FROM chunks";
        ChunkCount = Convert.ToInt32(count.ExecuteScalar(), CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// A fingerprint of a tokenizer: the ids it gives a fixed probe text. Chunk sizes are counted in tokens, so an
    /// index is only valid for the tokenizer it was built with.
    /// </summary>
    public static string Fingerprint(Func<string, int[]> tokenize)
    {
        int[] ids = tokenize("EdgeTune probe: The quick brown fox, 12,345 naïve café — {\"json\": true}\n\tTokyo 東京 🙂 warranty");
        var bytes = new byte[ids.Length * 4];
        Buffer.BlockCopy(ids, 0, bytes, 0, bytes.Length);
        return Convert.ToHexStringLower(SHA256.HashData(bytes))[..16];
    }

    private static SqliteConnection Connect(string file, SqliteOpenMode mode)
    {
        // No pooling: the file is renamed and reopened, and a pooled handle would keep the old one.
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = file, Mode = mode, Pooling = false }.ToString());
        connection.Open();
        return connection;
    }

    /// <summary>
    /// Opens an index for searching. A missing file, a file that is not an index, another format version or
    /// another tokenizer (<paramref name="tokenizerFingerprint"/>, when given) is one line naming the file. When the
    /// folder the index was built from is present here, changed documents make it stale too.
    /// </summary>
    public static KnowledgeIndex Open(string file, string? tokenizerFingerprint = null)
    {
        if (!System.IO.File.Exists(file)) throw new EdgeTuneException($"{file}: no such knowledge index (build it with `edgetune retrieval index DOCS --out {Path.GetFileName(file)} --model MODEL`)");
        SqliteConnection connection;
        Dictionary<string, string> meta;
        try
        {
            connection = Connect(file, SqliteOpenMode.ReadOnly);
            meta = ReadMeta(connection);
        }
        catch (SqliteException e)
        {
            throw new EdgeTuneException($"{file}: not a knowledge index ({MessageText.Escape(e.Message)})");
        }
        try
        {
            if (!meta.TryGetValue("format", out var format) || format != Format)
                throw new EdgeTuneException($"{file}: not a knowledge index (no '{Format}' format mark)");
            if (meta.GetValueOrDefault("version") != Version.ToString(CultureInfo.InvariantCulture))
                throw new EdgeTuneException($"{file}: knowledge index version {meta.GetValueOrDefault("version")}, this build reads version {Version}: rebuild it with `edgetune retrieval index`");
            if (tokenizerFingerprint is not null && meta["tokenizer"] != tokenizerFingerprint)
                throw new EdgeTuneException($"{file}: stale knowledge index: built for another tokenizer (model {meta.GetValueOrDefault("model")}); rebuild it with `edgetune retrieval index --model` for the model served");
            var index = new KnowledgeIndex(file, connection, meta);
            if (Directory.Exists(index.Source))
            {
                var changed = index.ChangedFiles(KnowledgeFolder.Read(index.Source));
                if (changed.Count > 0)
                    throw new EdgeTuneException($"{file}: stale knowledge index: {Path.Combine(index.Source, changed[0])}{(changed.Count > 1 ? $" and {changed.Count - 1} more" : "")} changed since it was built; rebuild it");
            }
            return index;
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    private static Dictionary<string, string> ReadMeta(SqliteConnection connection)
    {
        using var cmd = connection.CreateCommand();
        cmd.CommandText = "SELECT key, value FROM meta";
        var meta = new Dictionary<string, string>(StringComparer.Ordinal);
        using var reader = cmd.ExecuteReader();
        while (reader.Read()) meta[reader.GetString(0)] = reader.GetString(1);
        return meta;
    }

    private Dictionary<string, string> FileHashes() => FileHashes(connection);

    private static Dictionary<string, string> FileHashes(SqliteConnection connection)
    {
        using var cmd = connection.CreateCommand();
        cmd.CommandText = "SELECT path, sha256 FROM files";
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        using var reader = cmd.ExecuteReader();
        while (reader.Read()) result[reader.GetString(0)] = reader.GetString(1);
        return result;
    }

    /// <summary>Files added, changed or removed in <paramref name="files"/> against the index (relative paths).</summary>
    public IReadOnlyList<string> ChangedFiles(IReadOnlyList<KnowledgeFile> files)
    {
        var indexed = FileHashes();
        var now = files.ToDictionary(f => f.RelativePath, f => f.Sha256, StringComparer.Ordinal);
        return now.Where(kv => indexed.GetValueOrDefault(kv.Key) != kv.Value).Select(kv => kv.Key)
            .Concat(indexed.Keys.Where(k => !now.ContainsKey(k))).Order(StringComparer.Ordinal).ToList();
    }

    /// <summary>
    /// Builds or updates the index of <paramref name="folder"/> at <paramref name="file"/>: unchanged when every file's
    /// hash, the tokenizer and the chunk sizes match; otherwise only the changed files are chunked again.
    /// </summary>
    public static IndexBuildResult Build(string folder, string file, ChunkingOptions options, string model,
        Action<string>? warn = null, IProgress<IndexProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        options.Validate();
        var files = KnowledgeFolder.Read(folder, warn);
        string source = Path.GetFullPath(folder);
        string fingerprint = Fingerprint(options.Tokenize);
        var meta = new Dictionary<string, string>
        {
            ["format"] = Format,
            ["version"] = Version.ToString(CultureInfo.InvariantCulture),
            ["tokenizer"] = fingerprint,
            ["model"] = model,
            ["chunk_tokens"] = options.ChunkTokens.ToString(CultureInfo.InvariantCulture),
            ["chunk_overlap"] = options.ChunkOverlap.ToString(CultureInfo.InvariantCulture),
            ["source"] = source,
        };

        // What the existing index holds, when it was built the same way.
        Dictionary<string, string> indexed = [];
        if (System.IO.File.Exists(file))
        {
            try
            {
                using var old = Connect(file, SqliteOpenMode.ReadOnly);
                var oldMeta = ReadMeta(old);
                if (new[] { "format", "version", "tokenizer", "chunk_tokens", "chunk_overlap" }.All(k => oldMeta.GetValueOrDefault(k) == meta[k]))
                    indexed = FileHashes(old);
            }
            catch (SqliteException) { } // not an index we can update: written anew
        }
        var now = files.ToDictionary(f => f.RelativePath, StringComparer.Ordinal);
        var changed = files.Where(f => indexed.GetValueOrDefault(f.RelativePath) != f.Sha256).ToList();
        var removed = indexed.Keys.Where(k => !now.ContainsKey(k)).ToList();
        bool upToDate = indexed.Count > 0 && changed.Count == 0 && removed.Count == 0 && ReadSource(file) == source;
        if (upToDate)
            return new IndexBuildResult(file, files.Count, 0, files.Count, 0, CountChunks(file), new FileInfo(file).Length, UpToDate: true);

        string full = Path.GetFullPath(file);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        string aside = $"{full}.{Guid.NewGuid():N}.tmp";
        try
        {
            if (indexed.Count > 0) System.IO.File.Copy(file, aside);
            int chunks;
            using (var db = Connect(aside, SqliteOpenMode.ReadWriteCreate))
            {
                Exec(db, "PRAGMA journal_mode = OFF"); // the aside file is the journal: it is renamed only when complete
                if (indexed.Count == 0) CreateSchema(db);
                using var tx = db.BeginTransaction();
                foreach (var (k, v) in meta) Exec(db, "INSERT OR REPLACE INTO meta(key, value) VALUES ($k, $v)", ("$k", k), ("$v", v));
                foreach (var path in removed.Concat(changed.Select(f => f.RelativePath).Where(indexed.ContainsKey))) DeleteFile(db, path);
                var chunker = new Chunker(options);
                int done = 0;
                foreach (var f in changed)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    InsertFile(db, f, chunker.Chunk(f, Path.Combine(source, f.RelativePath)));
                    progress?.Report(new IndexProgress(++done, changed.Count));
                }
                tx.Commit();
                Exec(db, "INSERT INTO chunks_fts(chunks_fts) VALUES ('optimize')");
                chunks = Scalar(db, "SELECT count(*) FROM chunks");
            }
            DurableFiles.SyncFile(aside);
            System.IO.File.Move(aside, full, overwrite: true);
            DurableFiles.SyncFolder(Path.GetDirectoryName(full)!);
            return new IndexBuildResult(file, files.Count, changed.Count, files.Count - changed.Count, removed.Count, chunks, new FileInfo(full).Length, UpToDate: false);
        }
        catch
        {
            try { System.IO.File.Delete(aside); } catch (IOException) { }
            throw;
        }
    }

    private static string? ReadSource(string file)
    {
        using var db = Connect(file, SqliteOpenMode.ReadOnly);
        return ReadMeta(db).GetValueOrDefault("source");
    }

    private static int CountChunks(string file)
    {
        using var db = Connect(file, SqliteOpenMode.ReadOnly);
        return Scalar(db, "SELECT count(*) FROM chunks");
    }

    private static void CreateSchema(SqliteConnection db)
    {
        Exec(db, "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)");
        Exec(db, "CREATE TABLE files(path TEXT PRIMARY KEY, sha256 TEXT NOT NULL, bytes INTEGER NOT NULL)");
        Exec(db, "CREATE TABLE chunks(id INTEGER PRIMARY KEY, chunk_id TEXT NOT NULL UNIQUE, file TEXT NOT NULL, line INTEGER NOT NULL, tokens INTEGER NOT NULL)");
        Exec(db, "CREATE INDEX chunks_file ON chunks(file)");
        // The text lives in the FTS5 table (rowid = chunks.id); porter stemming so 'returns' finds 'return'.
        Exec(db, "CREATE VIRTUAL TABLE chunks_fts USING fts5(heading, text, tokenize = 'porter unicode61')");
        Exec(db, "CREATE VIRTUAL TABLE chunks_vocab USING fts5vocab(chunks_fts, 'row')");
    }

    private static void DeleteFile(SqliteConnection db, string path)
    {
        Exec(db, "DELETE FROM chunks_fts WHERE rowid IN (SELECT id FROM chunks WHERE file = $f)", ("$f", path));
        Exec(db, "DELETE FROM chunks WHERE file = $f", ("$f", path));
        Exec(db, "DELETE FROM files WHERE path = $f", ("$f", path));
    }

    private static void InsertFile(SqliteConnection db, KnowledgeFile f, IReadOnlyList<KnowledgeChunk> chunks)
    {
        Exec(db, "INSERT INTO files(path, sha256, bytes) VALUES ($p, $h, $b)", ("$p", f.RelativePath), ("$h", f.Sha256), ("$b", f.Bytes));
        using var insert = db.CreateCommand();
        insert.CommandText = "INSERT INTO chunks(chunk_id, file, line, tokens) VALUES ($id, $f, $l, $t) RETURNING id";
        var pid = insert.Parameters.Add("$id", SqliteType.Text);
        var pf = insert.Parameters.Add("$f", SqliteType.Text);
        var pl = insert.Parameters.Add("$l", SqliteType.Integer);
        var pt = insert.Parameters.Add("$t", SqliteType.Integer);
        using var fts = db.CreateCommand();
        fts.CommandText = "INSERT INTO chunks_fts(rowid, heading, text) VALUES ($r, $h, $x)";
        var pr = fts.Parameters.Add("$r", SqliteType.Integer);
        var ph = fts.Parameters.Add("$h", SqliteType.Text);
        var px = fts.Parameters.Add("$x", SqliteType.Text);
        foreach (var c in chunks)
        {
            pid.Value = c.ChunkId; pf.Value = c.File; pl.Value = c.Line; pt.Value = c.Tokens;
            pr.Value = Convert.ToInt64(insert.ExecuteScalar(), CultureInfo.InvariantCulture);
            ph.Value = c.Heading; px.Value = c.Text;
            fts.ExecuteNonQuery();
        }
    }

    /// <summary>The <paramref name="k"/> chunks bm25() ranks best for <paramref name="query"/> (heading matches weigh double), best first.</summary>
    public IReadOnlyList<KnowledgeHit> Search(string query, int k)
    {
        return FtsQuery.Search(connection, "chunks_vocab", query, ChunkCount, k, match => SearchMatch(match, k));
    }

    private List<KnowledgeHit> SearchMatch(string match, int k)
    {
        using var cmd = connection.CreateCommand();
        cmd.CommandText = """
            SELECT c.chunk_id, c.file, c.line, f.heading, f.text, c.tokens, bm25(chunks_fts, 2.0, 1.0) AS score
            FROM chunks_fts f JOIN chunks c ON c.id = f.rowid
            WHERE chunks_fts MATCH $q ORDER BY score, c.id LIMIT $k
            """;
        cmd.Parameters.AddWithValue("$q", match);
        cmd.Parameters.AddWithValue("$k", k);
        var hits = new List<KnowledgeHit>(k);
        using var reader = cmd.ExecuteReader();
        while (reader.Read())
            hits.Add(new KnowledgeHit(new KnowledgeChunk(reader.GetString(0), reader.GetString(1), reader.GetInt32(2), reader.GetString(3), reader.GetString(4), reader.GetInt32(5)), reader.GetDouble(6)));
        return hits;
    }

    /// <summary>Every chunk in id order (tests and reviewers).</summary>
    public IReadOnlyList<KnowledgeChunk> Chunks()
    {
        using var cmd = connection.CreateCommand();
        cmd.CommandText = "SELECT c.chunk_id, c.file, c.line, f.heading, f.text, c.tokens FROM chunks c JOIN chunks_fts f ON f.rowid = c.id ORDER BY c.id";
        var result = new List<KnowledgeChunk>();
        using var reader = cmd.ExecuteReader();
        while (reader.Read())
            result.Add(new KnowledgeChunk(reader.GetString(0), reader.GetString(1), reader.GetInt32(2), reader.GetString(3), reader.GetString(4), reader.GetInt32(5)));
        return result;
    }

    private static void Exec(SqliteConnection db, string sql, params (string Name, object Value)[] parameters)
    {
        using var cmd = db.CreateCommand();
        cmd.CommandText = sql;
        foreach (var (name, value) in parameters) cmd.Parameters.AddWithValue(name, value);
        cmd.ExecuteNonQuery();
    }

    private static int Scalar(SqliteConnection db, string sql)
    {
        using var cmd = db.CreateCommand();
        cmd.CommandText = sql;
        return Convert.ToInt32(cmd.ExecuteScalar(), CultureInfo.InvariantCulture);
    }

    public void Dispose() => connection.Dispose();
}

/// <summary>
/// FTS5 queries from free text: every word quoted (user text is never FTS syntax), any of them matching. Words that
/// occur in half the rows or more are left out: FTS5's bm25() gives them an idf of ~0 (log((N − n + 0.5)/(n + 0.5)) ≤ 0
/// is clamped to 1e-6), so they change no ranking, yet OR-ing them in makes every row a match to score. When every
/// word is that common, the rarest one stays. A search that finds fewer than k rows this way runs again with every
/// word, so the top k are those of the full query (rows matching only common words rank last there anyway).
/// </summary>
public static class FtsQuery
{
    public const int MaxTerms = 64;

    /// <summary>The distinct words of <paramref name="text"/> (letters and digits), lower-cased, at most <see cref="MaxTerms"/>.</summary>
    public static List<string> Words(string text)
    {
        var words = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var word = new StringBuilder();
        void End()
        {
            if (word.Length > 0 && words.Count < MaxTerms && seen.Add(word.ToString())) words.Add(word.ToString());
            word.Clear();
        }
        foreach (char c in text)
        {
            if (char.IsLetterOrDigit(c)) word.Append(char.ToLowerInvariant(c));
            else End();
        }
        End();
        return words;
    }

    public static string AnyWord(IEnumerable<string> words) => string.Join(" OR ", words.Select(w => "\"" + w + "\""));

    /// <summary>
    /// The MATCH text for <paramref name="text"/> against an FTS5 table whose fts5vocab 'row' table is <paramref name="vocabulary"/>
    /// and which has <paramref name="rows"/> rows. A word's row count is looked up as written; one the stemmer changes is
    /// not found and stays in the query.
    /// </summary>
    public static (string Informative, string All) Plan(SqliteConnection connection, string vocabulary, string text, long rows)
    {
        var words = Words(text);
        if (words.Count == 0) return ("", "");
        using var cmd = connection.CreateCommand();
        cmd.CommandText = $"SELECT doc FROM {vocabulary} WHERE term = $t";
        var term = cmd.Parameters.Add("$t", SqliteType.Text);
        var counted = new List<(string Word, long Rows)>(words.Count);
        foreach (var w in words)
        {
            term.Value = w;
            counted.Add((w, cmd.ExecuteScalar() is long n ? n : 0));
        }
        var kept = counted.Where(c => 2 * c.Rows < rows).Select(c => c.Word).ToList();
        if (kept.Count == 0) kept.Add(counted.MinBy(c => c.Rows).Word);
        return (AnyWord(kept), AnyWord(words));
    }

    /// <summary>Runs <paramref name="search"/> with the informative words, and with all of them when that finds fewer than <paramref name="k"/>.</summary>
    public static List<T> Search<T>(SqliteConnection connection, string vocabulary, string text, long rows, int k, Func<string, List<T>> search)
    {
        if (k <= 0) return [];
        var (informative, all) = Plan(connection, vocabulary, text, rows);
        if (informative.Length == 0) return [];
        var hits = search(informative);
        return hits.Count < k && all != informative ? search(all) : hits;
    }
}
