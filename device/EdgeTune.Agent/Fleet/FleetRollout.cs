// A rollout logs a handful of lines; evaluating their arguments is not worth guarding.
#pragma warning disable CA1873
using System.Buffers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using EdgeTune.Agent.Bundles;
using EdgeTune.Core.IO;
using EdgeTune.Formats.FieldData;
using MQTTnet;
using MQTTnet.Protocol;

namespace EdgeTune.Agent.Fleet;

/// <summary>
/// The agent's half of <c>edgetune fleet rollout</c> (on when [fleet] is configured): subscribes to its own
/// retained rollout topic, fetches the announced bundle aside (never more than its announced size; SHA-256
/// checked), installs it through <see cref="BundleInstaller"/> (signature against bundles.trust, canary,
/// rollback: the same path as <c>edgetune-agent install</c>) and publishes the outcome, retained, on its
/// rollout-result topic. Each rollout id is handled once: the outcome is written to
/// <c>{state_dir}/rollouts.json</c> (fsynced) before it is published, so a replayed or re-delivered command, even
/// after a restart, re-publishes the stored answer instead of installing again.
/// </summary>
/// <param name="maxBundleBytes">bundles.max_bundle_bytes: the most an announced bundle may be.</param>
/// <param name="health">The agent's health now (ok, loading, error), reported with each answer.</param>
public sealed class FleetRollout(FleetConfig config, BundleInstaller installer, long maxBundleBytes, Func<string> health, ILogger logger) : BackgroundService
{
    /// <summary>Outcomes remembered (the newest); an older rollout id than these is not expected back.</summary>
    public const int LedgerSize = 64;

    private readonly Channel<RolloutCommand> _commands = Channel.CreateUnbounded<RolloutCommand>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Lock _ledgerLock = new();
    private volatile IMqttClient? _client;

    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromMilliseconds(250);
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long an install waits for another one (an admin upload, say) to finish before it is tried again.</summary>
    public TimeSpan BusyRetry { get; init; } = TimeSpan.FromSeconds(1);

    private string LedgerPath => Path.Combine(installer.Store.StateDir, "rollouts.json");
    private string Topic => FleetProtocol.RolloutTopic(config.Fleet, config.Device);
    private string ResultTopic => FleetProtocol.RolloutResultTopic(config.Fleet, config.Device);

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.WhenAll(ConnectLoopAsync(stoppingToken), WorkAsync(stoppingToken));

    /// <summary>Keeps a subscription to this device's rollout topic; the broker hands over the retained command at each subscribe.</summary>
    private async Task ConnectLoopAsync(CancellationToken ct)
    {
        // Its own client id: the outbox's connection holds the device id, and a broker drops the older of two equal ids.
        var options = FleetBroker.Options(config.Connection with { ClientId = config.Device + ".rollout", SessionExpirySeconds = 0 }, b => b.WithCleanStart(true));
        var backoff = InitialBackoff;
        string? lastWarning = null;
        while (!ct.IsCancellationRequested)
        {
            using var client = new MqttClientFactory().CreateMqttClient();
            client.ApplicationMessageReceivedAsync += e =>
            {
                if (e.ApplicationMessage.Payload.IsEmpty) return Task.CompletedTask; // a withdrawn command
                if (RolloutCommand.Parse(e.ApplicationMessage.Payload.ToArray(), out var problem) is { } command) _commands.Writer.TryWrite(command);
                else logger.LogWarning("fleet rollout: {Topic}: {Problem}; ignored", e.ApplicationMessage.Topic, problem);
                return Task.CompletedTask;
            };
            try
            {
                await FleetBroker.ConnectAsync(client, options, config.Connection.Broker, ct);
                _client = client;
                lastWarning = null;
                backoff = InitialBackoff;
                // Answers written while the broker was away go out first.
                foreach (var entry in ReadLedger().Where(e => !e.Published)) await PublishAsync(entry.Result, ct);
                await client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(Topic, MqttQualityOfServiceLevel.AtLeastOnce).Build(), ct);
                while (client.IsConnected) await Task.Delay(250, ct);
                throw new FleetException($"connection to {config.Connection.Broker} lost");
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e)
            {
                string message = $"fleet rollout: {(e is FleetException ? e.Message : $"connection to {config.Connection.Broker} lost ({e.Message})")}; retrying with back-off";
                if (message != lastWarning) logger.LogWarning("{Message}", message);
                lastWarning = message;
            }
            finally
            {
                _client = null;
                if (client.IsConnected) await client.TryDisconnectAsync();
            }
            try { await Task.Delay(backoff, ct); }
            catch (OperationCanceledException) { break; }
            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxBackoff.Ticks));
        }
    }

    /// <summary>One command at a time, in the order they came.</summary>
    private async Task WorkAsync(CancellationToken ct)
    {
        try
        {
            await foreach (var command in _commands.Reader.ReadAllAsync(ct))
            {
                try
                {
                    if (ReadLedger().FirstOrDefault(e => e.Result.RolloutId == command.RolloutId) is { } done)
                    {
                        logger.LogInformation("fleet rollout {Id}: already handled ({Outcome}); answering again without installing", command.RolloutId, done.Result.Outcome);
                        await PublishAsync(done.Result, ct);
                        continue;
                    }
                    var result = await HandleAsync(command, ct);
                    Remember(result);
                    await PublishAsync(result, ct);
                }
                catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
                {
                    // An unreadable ledger or a full disk must not take the serving agent down with it: say so, take the next command.
                    logger.LogError("fleet rollout {Id}: not handled: {Message}", command.RolloutId, e.Message);
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
    }

    private async Task<RolloutResult> HandleAsync(RolloutCommand command, CancellationToken ct)
    {
        logger.LogInformation("fleet rollout {Id}: version {Version} from {Url}", command.RolloutId, command.Version, command.Url);
        RolloutResult Answer(string outcome, string? code, string? reason, string? version = null, double? score = null) => new()
        {
            RolloutId = command.RolloutId, Device = config.Device, Outcome = outcome, Code = code, Reason = reason, Version = version ?? command.Version,
            Health = health(), Score = score, Time = DateTimeOffset.UtcNow,
        };
        string incoming = Path.Combine(installer.Store.StateDir, "incoming");
        string download = Path.Combine(incoming, $"rollout-{command.RolloutId}.etb");
        try
        {
            try
            {
                Directory.CreateDirectory(incoming);
                await FetchAsync(command, download, ct);
            }
            catch (Exception e) when (!ct.IsCancellationRequested
                                      && e is RolloutFetchException or IOException or UnauthorizedAccessException or HttpRequestException or TaskCanceledException)
            {
                string code = e is RolloutFetchException f ? f.Code : "download_failed";
                logger.LogError("fleet rollout {Id}: {Reason}", command.RolloutId, e.Message);
                return Answer(RolloutResult.Failed, code, e.Message);
            }
            InstallResult installed;
            while (true)
            {
                installed = await installer.InstallAsync(download, allowDowngrade: false, ct);
                if (installed.Code != "busy") break;
                await Task.Delay(BusyRetry, ct); // another install (an admin upload) runs: ours waits its turn
            }
            return Answer(installed.Outcome, installed.Code, installed.Reason, installed.Version, installed.Score);
        }
        finally
        {
            try { File.Delete(download); } catch (IOException) { }
        }
    }

    /// <summary>Copies the bundle aside: no byte past the announced size is written, and the SHA-256 must match.</summary>
    private async Task FetchAsync(RolloutCommand command, string path, CancellationToken ct)
    {
        long max = maxBundleBytes;
        if (command.Size > max) throw new RolloutFetchException("too_large", $"the bundle is announced at {command.Size} bytes, more than bundles.max_bundle_bytes ({max})");
        long free = new DriveInfo(Path.GetDirectoryName(path)!).AvailableFreeSpace;
        if (free < 2 * command.Size + BundleInstaller.SpaceMargin)
            throw new RolloutFetchException("no_space", $"{Path.GetDirectoryName(path)}: not enough free space for a {command.Size}-byte bundle and its unpacked copy");

        using var http = IsHttp(command.Url) ? new HttpClient { Timeout = Timeout.InfiniteTimeSpan } : null;
        Stream source;
        HttpResponseMessage? response = null;
        if (http is not null)
        {
            response = await http.GetAsync(command.Url, HttpCompletionOption.ResponseHeadersRead, ct);
            if (!response.IsSuccessStatusCode) throw new RolloutFetchException("download_failed", $"{command.Url}: HTTP {(int)response.StatusCode} {response.ReasonPhrase}");
            if (response.Content.Headers.ContentLength is { } length && length != command.Size)
                throw new RolloutFetchException("size_mismatch", $"{command.Url}: the server sends {length} bytes, the rollout announced {command.Size}");
            source = await response.Content.ReadAsStreamAsync(ct);
        }
        else
        {
            string file = command.Url.StartsWith("file://", StringComparison.OrdinalIgnoreCase) ? new Uri(command.Url).LocalPath : command.Url;
            if (!File.Exists(file)) throw new RolloutFetchException("download_failed", $"{file}: no such bundle file on this device");
            source = File.OpenRead(file);
        }
        try
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            long total = 0;
            await using (var output = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true))
            {
                var buffer = new byte[1 << 16];
                int n;
                while ((n = await source.ReadAsync(buffer, ct)) > 0)
                {
                    total += n;
                    if (total > command.Size) throw new RolloutFetchException("size_mismatch", $"{command.Url}: more than the announced {command.Size} bytes; download stopped");
                    hash.AppendData(buffer, 0, n);
                    await output.WriteAsync(buffer.AsMemory(0, n), ct);
                }
                output.Flush(flushToDisk: true);
            }
            if (total != command.Size) throw new RolloutFetchException("size_mismatch", $"{command.Url}: {total} bytes, the rollout announced {command.Size}");
            string sha = Convert.ToHexStringLower(hash.GetHashAndReset());
            if (!sha.Equals(command.Sha256, StringComparison.OrdinalIgnoreCase))
                throw new RolloutFetchException("sha256_mismatch", $"{command.Url}: SHA-256 {sha}, the rollout announced {command.Sha256}");
        }
        finally
        {
            await source.DisposeAsync();
            response?.Dispose();
        }
    }

    private static bool IsHttp(string url) =>
        url.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || url.StartsWith("https://", StringComparison.OrdinalIgnoreCase);

    private async Task PublishAsync(RolloutResult result, CancellationToken ct)
    {
        if (_client is not { IsConnected: true } client) return; // published at the next connect (the ledger says it is not out yet)
        var message = new MqttApplicationMessageBuilder()
            .WithTopic(ResultTopic)
            .WithPayload(Encoding.UTF8.GetBytes(result.ToJson()))
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .WithRetainFlag()
            .WithContentType("application/json")
            .Build();
        try
        {
            var sent = await client.PublishAsync(message, ct);
            if (sent.ReasonCode is MqttClientPublishReasonCode.Success or MqttClientPublishReasonCode.NoMatchingSubscribers) Remember(result, published: true);
        }
        catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            logger.LogWarning("fleet rollout {Id}: the answer was not published ({Message}); it goes out at the next connection", result.RolloutId, e.Message);
        }
    }

    private sealed record LedgerEntry(RolloutResult Result, bool Published);

    private List<LedgerEntry> ReadLedger()
    {
        lock (_ledgerLock)
        {
            if (!File.Exists(LedgerPath)) return [];
            try { return JsonSerializer.Deserialize<List<LedgerEntry>>(File.ReadAllBytes(LedgerPath)) ?? []; }
            catch (JsonException e) { throw new IOException($"{LedgerPath}: unreadable rollout ledger ({e.Message}); remove it to let rollouts be handled again"); }
        }
    }

    /// <summary>Writes (fsync, rename) the outcome of a rollout id; the newest <see cref="LedgerSize"/> are kept.</summary>
    private void Remember(RolloutResult result, bool published = false)
    {
        lock (_ledgerLock)
        {
            var entries = ReadLedger().Where(e => e.Result.RolloutId != result.RolloutId).Append(new LedgerEntry(result, published)).TakeLast(LedgerSize).ToList();
            Directory.CreateDirectory(installer.Store.StateDir);
            DurableFiles.WriteAllBytes(LedgerPath, JsonSerializer.SerializeToUtf8Bytes(entries));
        }
    }
}

/// <summary>The announced bundle could not be fetched as announced; <see cref="Code"/> names why.</summary>
public sealed class RolloutFetchException : Exception
{
    public RolloutFetchException(string code, string message) : base(message) => Code = code;
    public RolloutFetchException() : base("the bundle could not be fetched") { }
    public RolloutFetchException(string message) : base(message) { }
    public RolloutFetchException(string message, Exception inner) : base(message, inner) { }

    public string Code { get; } = "download_failed";
}
