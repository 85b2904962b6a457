using System.Globalization;
using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Formats.FieldData;
using Microsoft.Data.Sqlite;

namespace EdgeTune.Agent.FieldLog;

/// <summary>One completion as the field log keeps it.</summary>
public sealed record CompletionRecord(
    string Id, DateTimeOffset Created, string DeviceId, string Kind, string Model, string? Adapter,
    IReadOnlyList<FieldMessage> Messages, string Output, IReadOnlyDictionary<string, object?> Sampling,
    double LatencyMs, double TimeToFirstTokenMs, int PromptTokens, int CompletionTokens, string FinishReason);

/// <summary>The field log cannot be used as asked: a database that cannot be made durable, or a cursor never handed out.</summary>
public sealed class FieldLogException : EdgeTuneException
{
    public FieldLogException(string message) : base(message) { }
    public FieldLogException() : base("field log error") { }
    public FieldLogException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>
/// The field log: every completion and every feedback event in SQLite.
/// Durability rule: a record is committed (journal_mode=WAL, synchronous=FULL, both read back at open: the WAL is
/// fsynced at every commit) before the client gets the answer it belongs to, so an acknowledged record survives
/// a crash or a power cut.
/// Export is by cursor and reading never acknowledges. Every completion carries a revision from one persisted,
/// increasing counter (never reused, even after eviction), set when it is written and bumped when feedback
/// arrives. A page read from a cursor the agent handed out (or from 0) hands out its end cursor; a consumer
/// passes a handed-out cursor to <see cref="Acknowledge"/> once it has stored what it read. Only acknowledged
/// records may be evicted by the row cap; when the cap is reached and nothing is acknowledged, new records are
/// refused (counted, and logged), never dropped from the log.
/// </summary>
public sealed class FieldLogStore : IDisposable
{
    /// <summary>The most records one page may hold (the HTTP export's upper bound for <c>limit</c>).</summary>
    public const int MaxPage = 10_000;

    private readonly SqliteConnection _connection;
    private readonly Lock _lock = new();
    private readonly long _maxRecords;
    private readonly Action<string>? _onWarning;
    private long _count;
    private long _evicted, _refused;
    private bool _full, _warnedEviction;

    /// <param name="maxRecords">Row cap (0: unbounded). At it, the oldest acknowledged records are evicted to make room
    /// (those without feedback first); when none is acknowledged, the new record is refused.</param>
    /// <param name="onWarning">Receives one line when eviction starts, when records start being refused and when that ends.</param>
    public FieldLogStore(string path, long maxRecords = 0, Action<string>? onWarning = null)
    {
        Path = path;
        _maxRecords = maxRecords;
        _onWarning = onWarning;
        bool plainPath = !path.StartsWith("file:", StringComparison.Ordinal) && path != ":memory:"; // not a SQLite URI
        if (plainPath && System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path)) is { } dir) Directory.CreateDirectory(dir);
        _connection = Open(path);
        try
        {
            // The durability rule rests on these two settings: read them back rather than trust that they took.
            string mode = Convert.ToString(Scalar("PRAGMA journal_mode=WAL;"), CultureInfo.InvariantCulture) ?? "";
            if (!mode.Equals("wal", StringComparison.OrdinalIgnoreCase))
                throw new FieldLogException($"{path}: the field log needs journal_mode=WAL but SQLite runs it as '{mode}' (a file system without shared-memory support, or not a file?); refusing to start");
            Execute("PRAGMA synchronous=FULL;");
            long synchronous = Convert.ToInt64(Scalar("PRAGMA synchronous;"), CultureInfo.InvariantCulture);
            if (synchronous != 2)
                throw new FieldLogException($"{path}: the field log needs synchronous=FULL (2) but SQLite reports {synchronous}; refusing to start");
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
                CREATE TABLE IF NOT EXISTS consumers(name TEXT PRIMARY KEY, cursor INTEGER NOT NULL);
                INSERT OR IGNORE INTO state(key, value) VALUES('acknowledged', 0);
                INSERT OR IGNORE INTO state(key, value) VALUES('issued', (SELECT value FROM state WHERE key = 'acknowledged'));
                INSERT OR IGNORE INTO state(key, value)
                  VALUES('revision', max(coalesce((SELECT max(rev) FROM completions), 0), (SELECT value FROM state WHERE key = 'issued')));
                """);
            _count = (long)Scalar("SELECT count(*) FROM completions")!;
        }
        catch
        {
            _connection.Dispose();
            throw;
        }
    }

    private static SqliteConnection Open(string path)
    {
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Pooling = false }.ToString());
        connection.Open();
        return connection;
    }

    public string Path { get; }

    /// <summary>Records evicted by the row cap since start.</summary>
    public long Evicted { get { lock (_lock) return _evicted; } }

    /// <summary>New records refused since start because the log was at its cap with nothing acknowledged to evict.</summary>
    public long Refused { get { lock (_lock) return _refused; } }

    public long Count { get { lock (_lock) return _count; } }

    /// <summary>The highest cursor a consumer has acknowledged (everything at or before it was stored by the consumer).</summary>
    public long Acknowledged => State("acknowledged");

    /// <summary>The highest cursor handed out by an export that read every record up to it.</summary>
    public long Issued => State("issued");

    /// <summary>Records not yet acknowledged by an export consumer (the export lag).</summary>
    public long Unexported
    {
        get
        {
            lock (_lock) return (long)Scalar("SELECT count(*) FROM completions WHERE rev > (SELECT value FROM state WHERE key = 'acknowledged')")!;
        }
    }

    private long State(string key)
    {
        lock (_lock) return (long)Scalar($"SELECT value FROM state WHERE key = '{key}'")!;
    }

    /// <summary>
    /// Other export consumers (the fleet outbox) keep their own cursor in <c>consumers</c>; eviction takes only records
    /// every consumer has had (see <see cref="EvictionBound"/>).
    /// </summary>
    public long ConsumerCursor(string consumer)
    {
        lock (_lock)
        {
            using var command = Command(null, "SELECT coalesce((SELECT cursor FROM consumers WHERE name = $n), 0)");
            command.Parameters.AddWithValue("$n", consumer);
            return (long)command.ExecuteScalar()!;
        }
    }

    /// <summary>Registers a consumer at cursor 0 (so eviction waits for it from now on) unless it is known.</summary>
    public void RegisterConsumer(string consumer) => AdvanceConsumer(consumer, 0);

    /// <summary>Moves a consumer's cursor forward (never back), durably.</summary>
    public void AdvanceConsumer(string consumer, long cursor)
    {
        lock (_lock)
        {
            using var command = Command(null, "INSERT INTO consumers(name, cursor) VALUES($n, $c) ON CONFLICT(name) DO UPDATE SET cursor = max(cursor, $c)");
            command.Parameters.AddWithValue("$n", consumer);
            command.Parameters.AddWithValue("$c", cursor);
            command.ExecuteNonQuery();
        }
    }

    // The newest revision every consumer has had: the HTTP pull's acknowledgement and every registered consumer's
    // cursor. An agent whose records travel only through the fleet outbox (no HTTP export was ever handed out)
    // does not wait for an HTTP consumer that does not exist.
    private const string EvictionBound = """
        (SELECT min(bound) FROM (
           SELECT value AS bound FROM state WHERE key = 'acknowledged'
             AND ((SELECT value FROM state WHERE key = 'issued') > 0 OR NOT EXISTS(SELECT 1 FROM consumers))
           UNION ALL SELECT cursor FROM consumers))
        """;

    /// <summary>Commits a completion; returns its revision once the record is durable, or null when the log is at its
    /// cap with nothing acknowledged to evict (the record is refused, counted in <see cref="Refused"/>).</summary>
    public long? Add(CompletionRecord r)
    {
        lock (_lock)
        {
            using var transaction = _connection.BeginTransaction();
            if (_maxRecords > 0 && _count >= _maxRecords && !MakeRoom(transaction))
            {
                transaction.Commit(); // what could be evicted was (it was acknowledged); the new record is not stored
                _refused++;
                if (!_full)
                    _onWarning?.Invoke($"field log full: {_count} records, none acknowledged by an export consumer beyond what max_records ({_maxRecords}) allows; new records are refused (edgetune_field_log_refused_total) until a consumer acknowledges (POST /v1/field-data/ack)");
                _full = true;
                return null;
            }
            long rev = NextRevision(transaction);
            using var command = Command(transaction, """
                INSERT INTO completions(id, created, device_id, kind, model, adapter, messages, output, sampling, latency_ms, ttft_ms, prompt_tokens, completion_tokens, finish_reason, rev)
                VALUES($id, $created, $device, $kind, $model, $adapter, $messages, $output, $sampling, $latency, $ttft, $pt, $ct, $finish, $rev);
                """);
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
            command.Parameters.AddWithValue("$rev", rev);
            command.ExecuteNonQuery();
            transaction.Commit();
            _count++;
            if (_full)
            {
                _full = false;
                _onWarning?.Invoke("field log accepts records again (a consumer acknowledged an export)");
            }
            return rev;
        }
    }

    // Evicts the oldest acknowledged records (without feedback first) so that one more fits under the cap.
    private bool MakeRoom(SqliteTransaction transaction)
    {
        var victims = new List<string>();
        using (var select = Command(transaction, $"""
            SELECT c.id FROM completions c
            WHERE c.rev <= coalesce({EvictionBound}, 0)
            ORDER BY EXISTS(SELECT 1 FROM feedback f WHERE f.completion_id = c.id), c.rev
            LIMIT $n;
            """))
        {
            select.Parameters.AddWithValue("$n", _count - _maxRecords + 1);
            using var reader = select.ExecuteReader();
            while (reader.Read()) victims.Add(reader.GetString(0));
        }
        foreach (var id in victims)
        {
            using var delete = Command(transaction, "DELETE FROM feedback WHERE completion_id = $id; DELETE FROM completions WHERE id = $id;");
            delete.Parameters.AddWithValue("$id", id);
            delete.ExecuteNonQuery();
        }
        if (victims.Count > 0)
        {
            _count -= victims.Count;
            _evicted += victims.Count;
            if (!_warnedEviction)
                _onWarning?.Invoke($"field log at its cap of {_maxRecords} records: evicting the oldest acknowledged records (without feedback first); edgetune_field_log_evicted_total counts them");
            _warnedEviction = true;
        }
        return _count < _maxRecords;
    }

    private long NextRevision(SqliteTransaction transaction)
    {
        using var command = Command(transaction, "UPDATE state SET value = value + 1 WHERE key = 'revision' RETURNING value");
        return (long)command.ExecuteScalar()!;
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
            using var command = Command(transaction, """
                INSERT INTO feedback(completion_id, rating, corrected, comment, created)
                SELECT $id, $rating, $corrected, $comment, $created WHERE EXISTS(SELECT 1 FROM completions WHERE id = $id);
                """);
            command.Parameters.AddWithValue("$id", completionId);
            command.Parameters.AddWithValue("$rating", (object?)rating ?? DBNull.Value);
            command.Parameters.AddWithValue("$corrected", (object?)corrected ?? DBNull.Value);
            command.Parameters.AddWithValue("$comment", (object?)comment ?? DBNull.Value);
            command.Parameters.AddWithValue("$created", DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture));
            if (command.ExecuteNonQuery() != 1) return false;
            using var bump = Command(transaction, "UPDATE completions SET rev = $rev WHERE id = $id");
            bump.Parameters.AddWithValue("$rev", NextRevision(transaction));
            bump.Parameters.AddWithValue("$id", completionId);
            bump.ExecuteNonQuery();
            transaction.Commit();
            return true;
        }
    }

    /// <summary>
    /// Opens a page of up to <paramref name="limit"/> records after <paramref name="after"/>, read from a snapshot on
    /// a connection of its own: the store's lock is not held while the page is read, so completions keep being
    /// committed. Call <see cref="FieldLogPage.Complete"/> once the page has been delivered.
    /// </summary>
    public FieldLogPage OpenPage(long after, int limit)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(after);
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        return new FieldLogPage(this, Open(Path), after, Math.Min(limit, MaxPage));
    }

    /// <summary>
    /// Up to <paramref name="limit"/> examples after <paramref name="after"/>, oldest first, read into memory, and the
    /// cursor to pass next time (handed out, so it may be acknowledged). For small reads; exports stream pages.
    /// </summary>
    public (IReadOnlyList<FieldExample> Examples, long Next) Export(long after, int limit)
    {
        using var page = OpenPage(after, limit);
        var examples = page.Read().ToList();
        page.Complete();
        return (examples, page.Next);
    }

    /// <summary>
    /// Records that a page (after, next] was delivered. It extends the handed-out range only when it starts inside it,
    /// so the handed-out cursor always means "every record up to here was delivered", and a reader that skipped
    /// ahead (after=N of its own choosing) cannot acknowledge records nobody received.
    /// </summary>
    internal void MarkIssued(long after, long next)
    {
        lock (_lock)
        {
            using var command = Command(null, "UPDATE state SET value = $next WHERE key = 'issued' AND value >= $after AND value < $next");
            command.Parameters.AddWithValue("$after", after);
            command.Parameters.AddWithValue("$next", next);
            command.ExecuteNonQuery();
        }
    }

    /// <summary>
    /// A consumer has stored every record up to <paramref name="through"/>: from now on those may be evicted. Only a
    /// cursor an export handed out is accepted; an older one than the current acknowledgement changes nothing.
    /// Returns the acknowledged cursor.
    /// </summary>
    public long Acknowledge(long through)
    {
        if (through < 0) throw new FieldLogException($"cursor {through} is negative");
        lock (_lock)
        {
            using var transaction = _connection.BeginTransaction();
            using var issued = Command(transaction, "SELECT value FROM state WHERE key = 'issued'");
            long handedOut = (long)issued.ExecuteScalar()!;
            if (through > handedOut)
                throw new FieldLogException($"cursor {through} was not handed out by an export (the highest handed out is {handedOut}): read the records first, then acknowledge the cursor the export returned");
            using var command = Command(transaction, "UPDATE state SET value = max(value, $c) WHERE key = 'acknowledged' RETURNING value");
            command.Parameters.AddWithValue("$c", through);
            long acknowledged = (long)command.ExecuteScalar()!;
            transaction.Commit();
            return acknowledged;
        }
    }

    private SqliteCommand Command(SqliteTransaction? transaction, string sql)
    {
        var command = _connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        return command;
    }

    private object? Scalar(string sql)
    {
        using var command = Command(null, sql);
        return command.ExecuteScalar();
    }

    private void Execute(string sql)
    {
        using var command = Command(null, sql);
        command.ExecuteNonQuery();
    }

    /// <summary>
    /// Up to <paramref name="limit"/> examples after <paramref name="after"/> without handing out a cursor (a consumer
    /// with its own cursor, such as the fleet outbox).
    /// </summary>
    public (IReadOnlyList<FieldExample> Examples, long Next) Read(long after, int limit)
    {
        using var page = OpenPage(after, limit);
        return (page.Read().ToList(), page.Next);
    }

    public void Dispose() => _connection.Dispose();
}

/// <summary>
/// One export page: a read snapshot on its own connection, so its size is fixed (<see cref="Count"/> records up to
/// <see cref="Next"/>) before anything is sent and its records are read one at a time while they are written out.
/// </summary>
public sealed class FieldLogPage : IDisposable
{
    private readonly FieldLogStore _store;
    private readonly SqliteConnection _connection;
    private readonly SqliteTransaction _snapshot;

    internal FieldLogPage(FieldLogStore store, SqliteConnection connection, long after, int limit)
    {
        _store = store;
        _connection = connection;
        After = after;
        try
        {
            // A deferred transaction: the snapshot starts with the first read and holds no write lock.
            _snapshot = connection.BeginTransaction(System.Data.IsolationLevel.Serializable, deferred: true);
            using var bounds = connection.CreateCommand();
            bounds.Transaction = _snapshot;
            bounds.CommandText = "SELECT count(*), max(rev) FROM (SELECT rev FROM completions WHERE rev > $after ORDER BY rev LIMIT $limit)";
            bounds.Parameters.AddWithValue("$after", after);
            bounds.Parameters.AddWithValue("$limit", limit);
            using var reader = bounds.ExecuteReader();
            reader.Read();
            Count = reader.GetInt32(0);
            Next = reader.IsDBNull(1) ? after : reader.GetInt64(1);
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    public long After { get; }

    /// <summary>The cursor after this page (the last record's revision, or <see cref="After"/> when the page is empty).</summary>
    public long Next { get; }

    public int Count { get; }

    /// <summary>The page's examples, oldest first, each with its latest feedback (a correction becomes the assistant's target).</summary>
    public IEnumerable<FieldExample> Read()
    {
        using var command = _connection.CreateCommand();
        command.Transaction = _snapshot;
        command.CommandText = """
            SELECT c.rev, c.id, c.created, c.device_id, c.kind, c.model, c.adapter, c.messages, c.output, c.sampling,
                   c.latency_ms, c.prompt_tokens, c.completion_tokens, c.finish_reason,
                   f.rating, f.corrected, f.comment, f.created
            FROM completions c
            LEFT JOIN feedback f ON f.seq = (SELECT max(seq) FROM feedback WHERE completion_id = c.id)
            WHERE c.rev > $after AND c.rev <= $next ORDER BY c.rev;
            """;
        command.Parameters.AddWithValue("$after", After);
        command.Parameters.AddWithValue("$next", Next);
        using var reader = command.ExecuteReader();
        while (reader.Read()) yield return Example(reader);
    }

    private static FieldExample Example(SqliteDataReader reader)
    {
        var messages = JsonSerializer.Deserialize<List<FieldMessage>>(reader.GetString(7), FieldExample.JsonOptions) ?? [];
        string output = reader.GetString(8);
        FieldFeedback? feedback = reader.IsDBNull(17) ? null : new FieldFeedback(
            reader.IsDBNull(14) ? null : reader.GetInt32(14),
            reader.IsDBNull(15) ? null : reader.GetString(15),
            reader.IsDBNull(16) ? null : reader.GetString(16),
            DateTimeOffset.Parse(reader.GetString(17), CultureInfo.InvariantCulture));
        string? corrected = feedback?.Corrected;
        messages.Add(new FieldMessage("assistant", corrected ?? output));
        return new FieldExample(messages, new FieldProvenance
        {
            Id = reader.GetString(1),
            Cursor = reader.GetInt64(0),
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
        });
    }

    /// <summary>The page was delivered whole: its end cursor is handed out (and may be acknowledged).</summary>
    public void Complete() => _store.MarkIssued(After, Next);

    public void Dispose()
    {
        _snapshot.Dispose();
        _connection.Dispose();
    }
}
