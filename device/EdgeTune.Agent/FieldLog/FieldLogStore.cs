using System.Globalization;
using System.Text.Json;
using EdgeTune.Formats.FieldData;
using Microsoft.Data.Sqlite;

namespace EdgeTune.Agent.FieldLog;

/// <summary>One completion as the field log keeps it.</summary>
public sealed record CompletionRecord(
    string Id, DateTimeOffset Created, string DeviceId, string Kind, string Model, string? Adapter,
    IReadOnlyList<FieldMessage> Messages, string Output, IReadOnlyDictionary<string, object?> Sampling,
    double LatencyMs, double TimeToFirstTokenMs, int PromptTokens, int CompletionTokens, string FinishReason);

/// <summary>
/// The field log: every completion and every feedback event in SQLite.
/// Durability rule: a record is committed (journal_mode=WAL, synchronous=FULL: the WAL is fsynced at every
/// commit) before the client gets the answer it belongs to, so an acknowledged record survives a crash or a
/// power cut. Export is by cursor: every completion carries a revision from one increasing counter, set when
/// it is written and bumped when feedback arrives, so a consumer that keeps the cursor it was given reads every
/// record once per change (new, then again with its feedback) across restarts.
/// </summary>
public sealed class FieldLogStore : IDisposable
{
    private readonly SqliteConnection _connection;
    private readonly Lock _lock = new();

    private readonly long _maxRecords;
    private readonly Action<string>? _onEvict;

    /// <param name="maxRecords">Row cap (0: unbounded). Past it, the oldest records that carry no feedback and were
    /// already exported (at or before the cursor a consumer has since passed back) are deleted.</param>
    public FieldLogStore(string path, long maxRecords = 0, Action<string>? onEvict = null)
    {
        Path = path;
        _maxRecords = maxRecords;
        _onEvict = onEvict;
        if (System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path)) is { } dir) Directory.CreateDirectory(dir);
        _connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Pooling = false }.ToString());
        _connection.Open();
        Execute("PRAGMA journal_mode=WAL;");
        Execute("PRAGMA synchronous=FULL;");
        Execute("""
            CREATE TABLE IF NOT EXISTS completions(
              seq INTEGER PRIMARY KEY AUTOINCREMENT,
              id TEXT NOT NULL UNIQUE,
              created TEXT NOT NULL,
              device_id TEXT NOT NULL,
              kind TEXT NOT NULL,
              model TEXT NOT NULL,
              adapter TEXT,
              messages TEXT NOT NULL,
              output TEXT NOT NULL,
              sampling TEXT NOT NULL,
              latency_ms REAL NOT NULL,
              ttft_ms REAL NOT NULL,
              prompt_tokens INTEGER NOT NULL,
              completion_tokens INTEGER NOT NULL,
              finish_reason TEXT NOT NULL,
              rev INTEGER NOT NULL);
            CREATE INDEX IF NOT EXISTS completions_rev ON completions(rev);
            CREATE TABLE IF NOT EXISTS feedback(
              seq INTEGER PRIMARY KEY AUTOINCREMENT,
              completion_id TEXT NOT NULL REFERENCES completions(id),
              rating INTEGER,
              corrected TEXT,
              comment TEXT,
              created TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS feedback_completion ON feedback(completion_id);
            CREATE TABLE IF NOT EXISTS state(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
            """);
    }

    /// <summary>Records evicted by the row cap since start.</summary>
    public long Evicted { get; private set; }

    /// <summary>The highest cursor a consumer has passed back (everything at or before it was received).</summary>
    public long Acknowledged
    {
        get
        {
            lock (_lock) return Scalar("SELECT coalesce((SELECT value FROM state WHERE key = 'acknowledged'), 0)");
        }
    }

    /// <summary>Records not yet acknowledged by an export consumer (the export lag).</summary>
    public long Unexported
    {
        get
        {
            lock (_lock) return Scalar("SELECT count(*) FROM completions WHERE rev > coalesce((SELECT value FROM state WHERE key = 'acknowledged'), 0)");
        }
    }

    private long Scalar(string sql)
    {
        using var command = _connection.CreateCommand();
        command.CommandText = sql;
        return (long)command.ExecuteScalar()!;
    }

    private void Acknowledge(long cursor, string consumer = "acknowledged")
    {
        using var command = _connection.CreateCommand();
        command.CommandText = "INSERT INTO state(key, value) VALUES($k, $c) ON CONFLICT(key) DO UPDATE SET value = max(value, $c)";
        command.Parameters.AddWithValue("$k", consumer);
        command.Parameters.AddWithValue("$c", cursor);
        command.ExecuteNonQuery();
    }

    /// <summary>
    /// Every row of <c>state</c> is one export consumer's cursor ('acknowledged' for HTTP pulls, others such as the
    /// fleet outbox's): eviction only takes records at or before the smallest, so no consumer loses a record it has not had.
    /// </summary>
    public long ConsumerCursor(string consumer)
    {
        lock (_lock)
        {
            using var command = _connection.CreateCommand();
            command.CommandText = "SELECT coalesce((SELECT value FROM state WHERE key = $k), 0)";
            command.Parameters.AddWithValue("$k", consumer);
            return (long)command.ExecuteScalar()!;
        }
    }

    /// <summary>Registers a consumer at cursor 0 (so eviction waits for it from now on) unless it is known.</summary>
    public void RegisterConsumer(string consumer)
    {
        lock (_lock) Acknowledge(0, consumer);
    }

    /// <summary>Moves a consumer's cursor forward (never back), durably.</summary>
    public void AdvanceConsumer(string consumer, long cursor)
    {
        lock (_lock) Acknowledge(cursor, consumer);
    }

    private void Evict()
    {
        long count = Scalar("SELECT count(*) FROM completions");
        if (count <= _maxRecords) return;
        using var command = _connection.CreateCommand();
        command.CommandText = """
            DELETE FROM completions WHERE seq IN (
              SELECT c.seq FROM completions c
              WHERE c.rev <= coalesce((SELECT min(value) FROM state), 0)
                AND NOT EXISTS(SELECT 1 FROM feedback f WHERE f.completion_id = c.id)
              ORDER BY c.rev LIMIT $n);
            """;
        command.Parameters.AddWithValue("$n", count - _maxRecords);
        int deleted = command.ExecuteNonQuery();
        Evicted += deleted;
        if (deleted > 0) _onEvict?.Invoke($"field log over its cap of {_maxRecords} records: evicted the {deleted} oldest exported records without feedback");
        if (count - deleted > _maxRecords)
            _onEvict?.Invoke($"field log holds {count - deleted} records, over its cap of {_maxRecords}: the rest are not yet exported or carry feedback, so they are kept");
    }

    public string Path { get; }

    private void Execute(string sql)
    {
        using var command = _connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    /// <summary>Commits a completion; returns its revision (its export cursor). Returns only once the record is durable.</summary>
    public long Add(CompletionRecord r)
    {
        lock (_lock)
        {
            using var command = _connection.CreateCommand();
            command.CommandText = """
                INSERT INTO completions(id, created, device_id, kind, model, adapter, messages, output, sampling, latency_ms, ttft_ms, prompt_tokens, completion_tokens, finish_reason, rev)
                VALUES($id, $created, $device, $kind, $model, $adapter, $messages, $output, $sampling, $latency, $ttft, $pt, $ct, $finish,
                       (SELECT coalesce(max(rev), 0) + 1 FROM completions));
                SELECT rev FROM completions WHERE seq = last_insert_rowid();
                """;
            command.Parameters.AddWithValue("$id", r.Id);
            command.Parameters.AddWithValue("$created", r.Created.ToString("O", CultureInfo.InvariantCulture));
            command.Parameters.AddWithValue("$device", r.DeviceId);
            command.Parameters.AddWithValue("$kind", r.Kind);
            command.Parameters.AddWithValue("$model", r.Model);
            command.Parameters.AddWithValue("$adapter", (object?)r.Adapter ?? DBNull.Value);
            command.Parameters.AddWithValue("$messages", JsonSerializer.Serialize(r.Messages, FieldExample.JsonOptions));
            command.Parameters.AddWithValue("$output", r.Output);
            command.Parameters.AddWithValue("$sampling", JsonSerializer.Serialize(r.Sampling));
            command.Parameters.AddWithValue("$latency", r.LatencyMs);
            command.Parameters.AddWithValue("$ttft", r.TimeToFirstTokenMs);
            command.Parameters.AddWithValue("$pt", r.PromptTokens);
            command.Parameters.AddWithValue("$ct", r.CompletionTokens);
            command.Parameters.AddWithValue("$finish", r.FinishReason);
            long seq = (long)command.ExecuteScalar()!;
            if (_maxRecords > 0) Evict();
            return seq;
        }
    }

    /// <summary>
    /// Commits a feedback event; false when no completion has that id. The completion gets a new revision, so an
    /// export after the cursor sends it again, now with its feedback (consumers keep the latest line per id).
    /// </summary>
    public bool AddFeedback(string completionId, int? rating, string? corrected, string? comment)
    {
        lock (_lock)
        {
            using var transaction = _connection.BeginTransaction();
            using var command = _connection.CreateCommand();
            command.Transaction = transaction;
            command.CommandText = """
                INSERT INTO feedback(completion_id, rating, corrected, comment, created)
                SELECT $id, $rating, $corrected, $comment, $created WHERE EXISTS(SELECT 1 FROM completions WHERE id = $id);
                """;
            command.Parameters.AddWithValue("$id", completionId);
            command.Parameters.AddWithValue("$rating", (object?)rating ?? DBNull.Value);
            command.Parameters.AddWithValue("$corrected", (object?)corrected ?? DBNull.Value);
            command.Parameters.AddWithValue("$comment", (object?)comment ?? DBNull.Value);
            command.Parameters.AddWithValue("$created", DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture));
            if (command.ExecuteNonQuery() != 1) return false;
            using var bump = _connection.CreateCommand();
            bump.Transaction = transaction;
            bump.CommandText = "UPDATE completions SET rev = (SELECT max(rev) + 1 FROM completions) WHERE id = $id";
            bump.Parameters.AddWithValue("$id", completionId);
            bump.ExecuteNonQuery();
            transaction.Commit();
            return true;
        }
    }

    public long Count
    {
        get
        {
            lock (_lock)
            {
                using var command = _connection.CreateCommand();
                command.CommandText = "SELECT count(*) FROM completions";
                return (long)command.ExecuteScalar()!;
            }
        }
    }

    /// <summary>
    /// Up to <paramref name="limit"/> examples after <paramref name="after"/>, oldest first, each with its latest
    /// feedback (a correction becomes the assistant's target), and the cursor to pass next time.
    /// </summary>
    public (IReadOnlyList<FieldExample> Examples, long Next) Export(long after, int limit)
    {
        lock (_lock)
        {
            // Asking for records after a cursor acknowledges everything up to it (eviction may then take those).
            if (after > 0) Acknowledge(after);
            return Read(after, limit);
        }
    }

    /// <summary>Like <see cref="Export"/>, but acknowledges nothing (a consumer with its own cursor, such as the fleet outbox).</summary>
    public (IReadOnlyList<FieldExample> Examples, long Next) Read(long after, int limit)
    {
        lock (_lock)
        {
            using var command = _connection.CreateCommand();
            command.CommandText = """
                SELECT c.rev, c.id, c.created, c.device_id, c.kind, c.model, c.adapter, c.messages, c.output, c.sampling,
                       c.latency_ms, c.prompt_tokens, c.completion_tokens, c.finish_reason,
                       f.rating, f.corrected, f.comment, f.created
                FROM completions c
                LEFT JOIN feedback f ON f.seq = (SELECT max(seq) FROM feedback WHERE completion_id = c.id)
                WHERE c.rev > $after ORDER BY c.rev LIMIT $limit;
                """;
            command.Parameters.AddWithValue("$after", after);
            command.Parameters.AddWithValue("$limit", limit);
            using var reader = command.ExecuteReader();
            var examples = new List<FieldExample>();
            long next = after;
            while (reader.Read())
            {
                long seq = reader.GetInt64(0);
                next = seq;
                var messages = JsonSerializer.Deserialize<List<FieldMessage>>(reader.GetString(7), FieldExample.JsonOptions) ?? [];
                string output = reader.GetString(8);
                FieldFeedback? feedback = reader.IsDBNull(17) ? null : new FieldFeedback(
                    reader.IsDBNull(14) ? null : reader.GetInt32(14),
                    reader.IsDBNull(15) ? null : reader.GetString(15),
                    reader.IsDBNull(16) ? null : reader.GetString(16),
                    DateTimeOffset.Parse(reader.GetString(17), CultureInfo.InvariantCulture));
                string? corrected = feedback?.Corrected;
                messages.Add(new FieldMessage("assistant", corrected ?? output));
                examples.Add(new FieldExample(messages, new FieldProvenance
                {
                    Id = reader.GetString(1),
                    Cursor = seq,
                    Created = DateTimeOffset.Parse(reader.GetString(2), CultureInfo.InvariantCulture),
                    DeviceId = reader.GetString(3),
                    Kind = reader.GetString(4),
                    Model = reader.GetString(5),
                    Adapter = reader.IsDBNull(6) ? null : reader.GetString(6),
                    Sampling = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(reader.GetString(9)),
                    LatencyMs = reader.GetDouble(10),
                    PromptTokens = reader.GetInt32(11),
                    CompletionTokens = reader.GetInt32(12),
                    FinishReason = reader.GetString(13),
                    ModelOutput = corrected is null ? null : output,
                    Feedback = feedback,
                }));
            }
            return (examples, next);
        }
    }

    public void Dispose() => _connection.Dispose();
}
