using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Threading.Channels;
using EdgeTune.Agent.Fleet;
using EdgeTune.Data;
using EdgeTune.Formats.FieldData;
using MQTTnet;
using MQTTnet.Packets;
using MQTTnet.Protocol;

namespace EdgeTune.Cli.Fleet;

public sealed record CollectOptions
{
    public required FleetConnection Connection { get; init; }
    public required string Into { get; init; }
    public string Fleet { get; init; } = "default";
    /// <summary>Stop after this long without a message (null: run until cancelled).</summary>
    public TimeSpan? UntilIdle { get; init; }
    /// <summary>Most messages written in one batch (one ingest, one fsync round).</summary>
    public int MaxBatch { get; init; } = 2000;
    /// <summary>How long a batch waits for more messages once one has arrived, at least; it waits as long as the last batch took to write (up to 2 s), so a slow disk or a big dataset gets fewer, larger batches.</summary>
    public TimeSpan Linger { get; init; } = TimeSpan.FromMilliseconds(50);
}

public sealed record CollectResult
{
    public int Received { get; set; }
    public int Replayed { get; set; }
    public int Malformed { get; set; }
    public Dictionary<string, int> Added { get; } = DatasetSplitter.Splits.ToDictionary(s => s, _ => 0);
    public int Duplicates { get; set; }
    public int HeldBack { get; set; }
    public int Refused { get; set; }
    public int Batches { get; set; }
    public SortedSet<string> Devices { get; } = new(StringComparer.Ordinal);
    public List<string> Gaps { get; } = [];
    public bool RolledBack { get; set; }
}

/// <summary>
/// <c>edgetune fleet collect</c>: subscribes to every device's records with a persistent session, writes each
/// record once into a split folder and acknowledges (PUBACK, sent by hand) only after the batch is on disk. A
/// message the ledger already holds (a broker re-delivery, a replay) is acknowledged and not written again; a
/// collector killed mid-batch loses nothing, because the unacknowledged messages come back on the next start.
/// </summary>
public sealed class FleetCollector(CollectOptions options, TextWriter progress)
{
    private static readonly JsonSerializerOptions RowJson = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private sealed record Incoming(MqttApplicationMessageReceivedEventArgs Args);

    private TimeSpan _lastCommit;

    public async Task<CollectResult> RunAsync(CancellationToken ct)
    {
        var dataset = new CollectedDataset(options.Into);
        var result = new CollectResult { RolledBack = dataset.RolledBack };
        if (dataset.RolledBack) progress.WriteLine("fleet collect: the previous run stopped inside a batch; that batch was undone (the broker re-delivers it)");
        var previousOf = new Dictionary<(string Device, long Revision), long>();

        var inbox = Channel.CreateUnbounded<Incoming>(new UnboundedChannelOptions { SingleReader = true });
        using var client = new MqttClientFactory().CreateMqttClient();
        client.ApplicationMessageReceivedAsync += e =>
        {
            e.AutoAcknowledge = false; // PUBACK goes out after the row is on disk
            inbox.Writer.TryWrite(new Incoming(e));
            return Task.CompletedTask;
        };
        var mqtt = FleetBroker.Options(options.Connection);
        await ConnectAsync(client, mqtt, dataset, first: true, ct);

        var batch = new List<Incoming>();
        var backoff = TimeSpan.FromMilliseconds(250);
        while (!ct.IsCancellationRequested)
        {
            batch.Clear();
            bool more;
            try { more = await NextAsync(inbox.Reader, batch, client, ct); }
            catch (FleetException e) when (!client.IsConnected)
            {
                // The broker went away (a restart, the network): reconnect to the same session; what was not acknowledged comes back.
                progress.WriteLine($"fleet collect: {e.Message}; reconnecting");
                while (!ct.IsCancellationRequested)
                {
                    try
                    {
                        await Task.Delay(backoff, ct);
                        await ConnectAsync(client, mqtt, dataset, first: false, ct);
                        backoff = TimeSpan.FromMilliseconds(250);
                        break;
                    }
                    catch (FleetException again) when (!FleetBroker.IsRefusal(again))
                    {
                        backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, TimeSpan.FromSeconds(10).Ticks));
                    }
                }
                continue;
            }
            if (!more) break;
            Process(batch, dataset, result, previousOf);
            foreach (var m in batch)
            {
                // A message from a connection that has since dropped cannot be acknowledged; the broker re-delivers it and the ledger skips it.
                try { await m.Args.AcknowledgeAsync(ct); }
                catch (Exception e) when (e is not OperationCanceledException) { }
            }
        }
        if (client.IsConnected) await client.TryDisconnectAsync();

        // A message names the revision its device published before it; one never received means the broker lost it.
        foreach (var ((device, revision), previous) in previousOf.OrderBy(kv => kv.Key.Device, StringComparer.Ordinal).ThenBy(kv => kv.Key.Revision))
            if (previous > 0 && !dataset.HasRevision(device, previous))
                result.Gaps.Add($"{device}: revision {previous} (published before {revision}) never arrived; the broker may have dropped it (check its persistence and max_queued_messages)");
        return result;
    }

    private async Task ConnectAsync(IMqttClient client, MqttClientOptions mqtt, CollectedDataset dataset, bool first, CancellationToken ct)
    {
        if (client.IsConnected) await client.TryDisconnectAsync();
        var connected = await FleetBroker.ConnectAsync(client, mqtt, options.Connection.Broker, ct);
        if (first)
            progress.WriteLine($"fleet collect: connected to {options.Connection.Broker} as {options.Connection.ClientId} (session {(connected.IsSessionPresent ? "resumed" : "new")}), {dataset.LedgerCount} message(s) in the ledger");
        else
            progress.WriteLine($"fleet collect: reconnected (session {(connected.IsSessionPresent ? "resumed" : "new: messages queued while away may be lost")})");
        var subscription = await client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter(FleetProtocol.AllRecords(options.Fleet), MqttQualityOfServiceLevel.AtLeastOnce).Build(), ct);
        if (subscription.Items.FirstOrDefault()?.ResultCode is not (MqttClientSubscribeResultCode.GrantedQoS1 or MqttClientSubscribeResultCode.GrantedQoS2))
            throw new FleetException($"broker {options.Connection.Broker} refused the subscription to {FleetProtocol.AllRecords(options.Fleet)}: {subscription.Items.FirstOrDefault()?.ResultCode}");
    }

    /// <summary>Waits for the first message (or the idle limit), then gathers what arrives within the linger time.</summary>
    private async Task<bool> NextAsync(ChannelReader<Incoming> reader, List<Incoming> batch, IMqttClient client, CancellationToken ct)
    {
        using var idle = CancellationTokenSource.CreateLinkedTokenSource(ct);
        if (options.UntilIdle is { } limit) idle.CancelAfter(limit);
        while (batch.Count == 0)
        {
            try
            {
                using var tick = CancellationTokenSource.CreateLinkedTokenSource(idle.Token);
                tick.CancelAfter(TimeSpan.FromSeconds(1));
                if (await reader.WaitToReadAsync(tick.Token)) break;
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                if (idle.IsCancellationRequested) return false; // idle long enough
                if (!client.IsConnected) throw new FleetException($"connection to {options.Connection.Broker} lost");
            }
            catch (OperationCanceledException)
            {
                return false;
            }
        }
        var until = DateTime.UtcNow + TimeSpan.FromTicks(Math.Clamp(_lastCommit.Ticks, options.Linger.Ticks, TimeSpan.FromSeconds(2).Ticks));
        while (batch.Count < options.MaxBatch)
        {
            if (reader.TryRead(out var m)) { batch.Add(m); continue; }
            var left = until - DateTime.UtcNow;
            if (left <= TimeSpan.Zero) break;
            await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(5, left.TotalMilliseconds)), ct);
        }
        return true;
    }

    private void Process(List<Incoming> batch, CollectedDataset dataset, CollectResult result, Dictionary<(string, long), long> previousOf)
    {
        var rows = new List<(string Device, long Revision, string RecordId, string ChatJson)>();
        var inBatch = new HashSet<(string, long, string)>();
        foreach (var m in batch)
        {
            result.Received++;
            var message = m.Args.ApplicationMessage;
            var parsed = Parse(message, out string? problem);
            if (parsed is not { } p)
            {
                result.Malformed++;
                progress.WriteLine($"fleet collect: {message.Topic}: {problem}; acknowledged and skipped");
                continue;
            }
            result.Devices.Add(p.Device);
            previousOf[(p.Device, p.Revision)] = p.Previous;
            if (dataset.Contains(p.Device, p.Revision, p.Example.Metadata.Id) || !inBatch.Add((p.Device, p.Revision, p.Example.Metadata.Id)))
            {
                result.Replayed++;
                continue;
            }
            rows.Add((p.Device, p.Revision, p.Example.Metadata.Id, Row(p.Device, p.Revision, p.Example)));
        }
        if (rows.Count == 0) return;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var ingest = dataset.Commit(rows);
        _lastCommit = clock.Elapsed;
        result.Batches++;
        foreach (var (split, n) in ingest.Added) result.Added[split] += n;
        result.Duplicates += ingest.Duplicates;
        result.HeldBack += ingest.HeldBack;
        result.Refused += ingest.Findings.Count;
        foreach (var f in ingest.Findings) progress.WriteLine($"fleet collect: {f}");
        progress.WriteLine($"fleet collect: batch {result.Batches}: {rows.Count} new record(s), {ingest.Added.Values.Sum()} added, {ingest.Duplicates} duplicate(s), {ingest.HeldBack} held back, {ingest.Findings.Count} refused ({clock.Elapsed.TotalSeconds:0.00} s)");
    }

    private static (string Device, long Revision, long Previous, FieldExample Example)? Parse(MqttApplicationMessage message, out string? problem)
    {
        problem = null;
        string? device = FleetProtocol.DeviceOf(message.Topic);
        if (device is null) { problem = "not a records topic (edgetune/FLEET/DEVICE/records)"; return null; }
        FieldExample? example;
        try { example = JsonSerializer.Deserialize<FieldExample>(message.Payload.ToArray(), FieldExample.JsonOptions); }
        catch (JsonException e) { problem = $"the payload is not a field record ({e.Message})"; return null; }
        if (example is null || example.Messages is not { Count: > 0 } || example.Metadata?.Id is not { Length: > 0 } || example.Metadata.Cursor <= 0)
        {
            problem = "the payload is not a field record (messages, metadata.id and metadata.cursor are required)";
            return null;
        }
        string expected = FleetProtocol.MessageId(device, example.Metadata.Cursor);
        string? id = Property(message, FleetProtocol.MessageIdProperty);
        if (id is not null && id != expected) { problem = $"message id '{id}' does not match the topic's device and the record's revision ('{expected}')"; return null; }
        long previous = long.TryParse(Property(message, FleetProtocol.PreviousProperty), NumberStyles.None, CultureInfo.InvariantCulture, out long p) ? p : 0;
        return (device, example.Metadata.Cursor, previous, example);
    }

    private static string? Property(MqttApplicationMessage message, string name) =>
        message.UserProperties?.FirstOrDefault(p => p.Name == name)?.ReadValueAsString();

    /// <summary>The row as <c>data ingest</c> reads it: the conversation, and provenance naming the device, record, revision and time.</summary>
    private static string Row(string device, long revision, FieldExample e)
    {
        var provenance = new Dictionary<string, object?>
        {
            ["device"] = device,
            ["record"] = e.Metadata.Id,
            ["revision"] = revision.ToString(CultureInfo.InvariantCulture),
            ["time"] = e.Metadata.Created.ToString("O", CultureInfo.InvariantCulture),
        };
        if (e.Metadata.Model is { } model) provenance["model"] = model;
        if (e.Metadata.Feedback is { } f) provenance["feedback"] = JsonSerializer.Serialize(f, FieldExample.JsonOptions);
        return JsonSerializer.Serialize(new { messages = e.Messages, provenance }, RowJson);
    }
}
