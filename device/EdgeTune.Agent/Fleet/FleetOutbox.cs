using System.Diagnostics;
using System.Text;
using System.Text.Json;
using EdgeTune.Agent.FieldLog;
using EdgeTune.Formats.FieldData;
using Microsoft.Data.Sqlite;
using MQTTnet;
using MQTTnet.Protocol;

namespace EdgeTune.Agent.Fleet;

/// <summary>
/// The durable outbox: the field log itself, read by revision after the fleet's own cursor (a consumer row in
/// the field log's state table, so eviction never takes a record the broker has not acknowledged). Every record
/// is published QoS 1 with an application message id (device and revision); the cursor advances only on PUBACK
/// and is committed (fsync) before the next batch, so a crash re-sends at most one batch and never skips one.
/// MQTTnet 5 has no managed client and does not re-send QoS 1 itself: this loop reconnects with back-off on a
/// persistent session. Publishing runs on its own task; the request path only commits to SQLite as before.
/// </summary>
public sealed class FleetOutbox : BackgroundService
{
    /// <summary>The fleet's cursor in the field log's state table.</summary>
    public const string Consumer = "fleet_published";

    private readonly FleetConfig _config;
    private readonly FieldLogStore? _log;
    private readonly Func<FleetStatus>? _status;
    private readonly Action<string> _warn;
    private readonly SqliteConnection? _reader;
    private readonly Lock _readerLock = new();
    private string? _lastWarning;
    private long _published, _dropped;

    /// <param name="status">The agent's side of the status message (health, model, speed, sensors); the outbox adds its own figures.</param>
    public FleetOutbox(FleetConfig config, FieldLogStore? log, Func<FleetStatus>? status = null, Action<string>? warn = null)
    {
        _config = config;
        _log = log;
        _status = status;
        _warn = warn ?? (_ => { });
        if (log is null) return;
        log.RegisterConsumer(Consumer);
        // A second connection for polling and statistics: WAL readers never wait for the request path's writer.
        _reader = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = log.Path, Pooling = false, Mode = SqliteOpenMode.ReadOnly }.ToString());
        _reader.Open();
    }

    /// <summary>Most QoS 1 messages in flight at once (also capped by the broker's receive maximum).</summary>
    public int Window { get; init; } = 64;
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromMilliseconds(100);
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(30);
    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromMilliseconds(250);

    public bool Connected { get; private set; }
    public string? LastError { get; private set; }
    public long Published => Interlocked.Read(ref _published);

    /// <summary>Records the broker refused as malformed (they can never be delivered): skipped, counted, logged.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>Committed records the broker has not acknowledged yet.</summary>
    public long Lag => _log is null ? 0 : ReaderScalar("SELECT count(*) FROM completions WHERE rev > $c", _log.ConsumerCursor(Consumer));

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var backoff = InitialBackoff;
        var options = FleetBroker.Options(_config.Connection);
        while (!stoppingToken.IsCancellationRequested)
        {
            using var client = new MqttClientFactory().CreateMqttClient();
            try
            {
                var connected = await FleetBroker.ConnectAsync(client, options, _config.Connection.Broker, stoppingToken);
                Connected = true;
                LastError = null;
                _lastWarning = null;
                backoff = InitialBackoff;
                int window = Math.Max(1, Math.Min(Window, connected.ReceiveMaximum is > 0 and ushort max ? max : ushort.MaxValue));
                await PumpAsync(client, window, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e)
            {
                Warn($"fleet: {(e is FleetException ? e.Message : $"connection to {_config.Connection.Broker} lost ({e.Message})")}; retrying with back-off");
            }
            finally
            {
                Connected = false;
                if (client.IsConnected) await client.TryDisconnectAsync();
            }
            try { await Task.Delay(Jitter(backoff), stoppingToken); }
            catch (OperationCanceledException) { break; }
            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxBackoff.Ticks));
        }
    }

    /// <summary>Publishes in revision order until the connection drops (throws) or the service stops.</summary>
    private async Task PumpAsync(IMqttClient client, int window, CancellationToken ct)
    {
        long cursor = _log?.ConsumerCursor(Consumer) ?? 0;
        var statusDue = Stopwatch.GetTimestamp();
        var statusEvery = TimeSpan.FromSeconds(_config.StatusEverySeconds);
        var refusedBackoff = InitialBackoff;
        string topic = FleetProtocol.RecordsTopic(_config.Fleet, _config.Device);
        while (!ct.IsCancellationRequested)
        {
            if (!client.IsConnected) throw new FleetException($"connection to {_config.Connection.Broker} lost");
            if (Stopwatch.GetTimestamp() >= statusDue)
            {
                await PublishStatusAsync(client, ct);
                statusDue = Stopwatch.GetTimestamp() + (long)(statusEvery.TotalSeconds * Stopwatch.Frequency);
            }
            var batch = _log is null ? [] : _log.Read(cursor, window).Examples;
            if (batch.Count == 0)
            {
                await WaitForRecordsAsync(client, cursor, statusDue, ct);
                continue;
            }

            var sends = new Task<MqttClientPublishResult>[batch.Count];
            for (int i = 0; i < batch.Count; i++)
                sends[i] = client.PublishAsync(RecordMessage(topic, batch[i], i == 0 ? cursor : batch[i - 1].Metadata.Cursor), ct);
            try { await Task.WhenAll(sends); }
            catch (Exception) when (!ct.IsCancellationRequested) { /* each task is looked at below */ }

            // The cursor moves over the acknowledged prefix only: a later PUBACK cannot vouch for an earlier record.
            long advanced = cursor;
            string? holdBack = null;
            for (int i = 0; i < sends.Length && holdBack is null; i++)
            {
                var task = sends[i];
                long revision = batch[i].Metadata.Cursor;
                if (!task.IsCompletedSuccessfully) { holdBack = $"publishing record {revision} failed ({task.Exception?.GetBaseException().Message ?? "cancelled"})"; break; }
                var result = task.Result;
                switch (result.ReasonCode)
                {
                    case MqttClientPublishReasonCode.Success:
                        advanced = revision;
                        Interlocked.Increment(ref _published);
                        break;
                    case MqttClientPublishReasonCode.NoMatchingSubscribers:
                        // Nobody holds a session for the records: the broker dropped this one. Keep it until a collector subscribes.
                        holdBack = $"no collector is subscribed to {FleetProtocol.AllRecords(_config.Fleet)} on {_config.Connection.Broker}; records are kept and re-sent";
                        break;
                    case MqttClientPublishReasonCode.PayloadFormatInvalid or MqttClientPublishReasonCode.TopicNameInvalid:
                        advanced = revision;
                        Interlocked.Increment(ref _dropped);
                        Warn($"fleet: the broker refused record {revision} as malformed ({result.ReasonCode} {result.ReasonString}); dropped and counted");
                        break;
                    default:
                        holdBack = $"the broker refused record {revision}: {result.ReasonCode} {result.ReasonString}";
                        break;
                }
            }
            if (advanced > cursor)
            {
                _log!.AdvanceConsumer(Consumer, advanced);
                cursor = advanced;
                refusedBackoff = InitialBackoff;
            }
            if (holdBack is not null)
            {
                if (!client.IsConnected) throw new FleetException(holdBack);
                Warn("fleet: " + holdBack);
                await Task.Delay(Jitter(refusedBackoff), ct);
                refusedBackoff = TimeSpan.FromTicks(Math.Min(refusedBackoff.Ticks * 2, MaxBackoff.Ticks));
            }
        }
    }

    private MqttApplicationMessage RecordMessage(string topic, FieldExample example, long previous) =>
        new MqttApplicationMessageBuilder()
            .WithTopic(topic)
            .WithPayload(Encoding.UTF8.GetBytes(example.ToJsonLine()))
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .WithContentType("application/json")
            .WithUserProperty(FleetProtocol.MessageIdProperty, Utf8(FleetProtocol.MessageId(_config.Device, example.Metadata.Cursor)))
            .WithUserProperty(FleetProtocol.PreviousProperty, Utf8(previous.ToString(System.Globalization.CultureInfo.InvariantCulture)))
            .Build();

    private static ReadOnlyMemory<byte> Utf8(string s) => Encoding.UTF8.GetBytes(s);

    private async Task PublishStatusAsync(IMqttClient client, CancellationToken ct)
    {
        var status = CurrentStatus();
        var message = new MqttApplicationMessageBuilder()
            .WithTopic(FleetProtocol.StatusTopic(_config.Fleet, _config.Device))
            .WithPayload(Encoding.UTF8.GetBytes(status.ToJson()))
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .WithRetainFlag()
            .WithContentType("application/json")
            .Build();
        await client.PublishAsync(message, ct);
    }

    /// <summary>The status message now: the agent's part plus the outbox's and the field log's figures.</summary>
    public FleetStatus CurrentStatus()
    {
        var status = _status?.Invoke() ?? new FleetStatus { Device = _config.Device, Health = "ok" };
        var (window, feedback, valid, p95) = RecentWindow(1000);
        return status with
        {
            Device = _config.Device,
            Time = DateTimeOffset.UtcNow,
            Window = window,
            FeedbackRate = feedback,
            FormatValidRate = valid,
            LatencyP95Ms = p95,
            OutboxLag = Lag,
            OutboxDropped = Dropped,
            Published = Published,
        };
    }

    /// <summary>
    /// Over the newest <paramref name="size"/> records: the share with feedback, the share whose output is valid
    /// JSON (null when none looks like JSON: the task does not answer in JSON), and the 95th percentile latency.
    /// </summary>
    private (int Count, double? Feedback, double? FormatValid, double? P95) RecentWindow(int size)
    {
        if (_reader is null) return (0, null, null, null);
        var latencies = new List<double>();
        int withFeedback = 0, jsonShaped = 0, valid = 0;
        lock (_readerLock)
        {
            using var command = _reader.CreateCommand();
            command.CommandText = """
                SELECT c.latency_ms, c.output, EXISTS(SELECT 1 FROM feedback f WHERE f.completion_id = c.id)
                FROM completions c ORDER BY c.seq DESC LIMIT $n
                """;
            command.Parameters.AddWithValue("$n", size);
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                latencies.Add(reader.GetDouble(0));
                string output = reader.GetString(1).Trim();
                if (output.StartsWith('{') || output.StartsWith('['))
                {
                    jsonShaped++;
                    if (IsJson(output)) valid++;
                }
                if (reader.GetInt64(2) != 0) withFeedback++;
            }
        }
        int n = latencies.Count;
        if (n == 0) return (0, null, null, null);
        latencies.Sort();
        double p95 = latencies[Math.Clamp((int)Math.Ceiling(0.95 * n) - 1, 0, n - 1)];
        return (n, (double)withFeedback / n, jsonShaped == 0 ? null : (double)valid / n, p95);
    }

    private static bool IsJson(string text)
    {
        try
        {
            using var _ = JsonDocument.Parse(text);
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>Sleeps until the field log has a record after <paramref name="cursor"/>, a status is due, or the connection drops.</summary>
    private async Task WaitForRecordsAsync(IMqttClient client, long cursor, long statusDue, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested && client.IsConnected)
        {
            if (Stopwatch.GetTimestamp() >= statusDue) return;
            if (_reader is not null && ReaderScalar("SELECT coalesce(max(rev), 0) FROM completions", 0) > cursor) return;
            await Task.Delay(PollInterval, ct);
        }
    }

    private long ReaderScalar(string sql, long cursor)
    {
        lock (_readerLock)
        {
            using var command = _reader!.CreateCommand();
            command.CommandText = sql;
            command.Parameters.AddWithValue("$c", cursor);
            return (long)command.ExecuteScalar()!;
        }
    }

    private void Warn(string message)
    {
        LastError = message;
        if (message == _lastWarning) return; // once per distinct problem, not once per retry
        _lastWarning = message;
        _warn(message);
    }

    private static TimeSpan Jitter(TimeSpan t) => t * (0.75 + Random.Shared.NextDouble() * 0.5);

    public override void Dispose()
    {
        base.Dispose();
        _reader?.Dispose();
    }
}
