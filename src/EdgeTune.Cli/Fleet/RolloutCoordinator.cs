using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Enumeration;
using System.Security.Cryptography;
using System.Text;
using EdgeTune.Agent.Fleet;
using EdgeTune.Bundles;
using EdgeTune.Core;
using EdgeTune.Formats.FieldData;
using MQTTnet;
using MQTTnet.Protocol;

namespace EdgeTune.Cli.Fleet;

public sealed record RolloutOptions
{
    public required FleetConnection Connection { get; init; }
    public string Fleet { get; init; } = "default";
    public required string Bundle { get; init; }
    /// <summary>The public key file or folder the bundle's signature must verify against before anything is published.</summary>
    public required string Trust { get; init; }
    /// <summary>Where devices fetch the bundle (http(s):// or a path on the devices); the bundle's absolute path by default.</summary>
    public string? Url { get; init; }
    /// <summary>Devices (from their retained status) whose name matches this glob (* and ?).</summary>
    public required string Devices { get; init; }
    public int Canary { get; init; } = 1;
    public double? MinScore { get; init; }
    /// <summary>How long each stage (canary, rest) waits for the devices' answers and healthy status.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromMinutes(10);
    /// <summary>How long to listen for the devices' retained status messages.</summary>
    public TimeSpan Discover { get; init; } = TimeSpan.FromSeconds(2);
    /// <summary>A rollout id to reuse (follow or repeat a rollout: devices that handled it answer again without installing).</summary>
    public string? RolloutId { get; init; }
}

/// <summary>One device's line in the report.</summary>
public sealed record RolloutDevice(string Device, string Stage)
{
    /// <summary>installed, rolled_back, refused, failed, below_min_score, no_answer (timed out), not_started.</summary>
    public string Outcome { get; set; } = NotStarted;
    public string? Version { get; set; }
    public string? Health { get; set; }
    public double? Score { get; set; }
    public string? Reason { get; set; }

    public const string NotStarted = "not_started";
    public const string NoAnswer = "no_answer";
    public const string BelowMinScore = "below_min_score";
}

public sealed record RolloutReport(string RolloutId, string Version, string Sha256, long Size, string Url, IReadOnlyList<RolloutDevice> Devices)
{
    public bool Stopped { get; set; }
    public string? StopReason { get; set; }
    public bool AllInstalled => !Stopped && Devices.All(d => d.Outcome == RolloutResult.Installed);
}

/// <summary>
/// <c>edgetune fleet rollout</c>: verifies the bundle here (signature against --trust, every file's SHA-256), finds
/// the devices from their retained status, and publishes a retained rollout command (QoS 1) on each device's own
/// topic, canaries first. It waits for each canary's answer and for a status that shows it healthy on the new
/// version; a canary that rolled back, failed, or scored under --min-score stops the rollout: the other devices
/// are not touched, and the commands of devices that have not answered are withdrawn. Then the rest.
/// </summary>
public sealed class RolloutCoordinator(RolloutOptions options, TextWriter progress)
{
    private readonly ConcurrentDictionary<string, FleetStatus> _status = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, RolloutResult> _results = new(StringComparer.Ordinal);
    private string _rolloutId = "";

    public async Task<RolloutReport> RunAsync(CancellationToken ct)
    {
        var (version, sha256, size) = Verify();
        _rolloutId = options.RolloutId ?? NewRolloutId(version);
        if (FleetProtocol.CheckName(_rolloutId) is { } bad) throw new EdgeTuneException($"--rollout-id '{_rolloutId}': {bad}");
        string url = options.Url ?? Path.GetFullPath(options.Bundle);
        var command = new RolloutCommand { RolloutId = _rolloutId, Url = url, Sha256 = sha256, Size = size, Version = version, Time = DateTimeOffset.UtcNow };

        using var client = new MqttClientFactory().CreateMqttClient();
        client.ApplicationMessageReceivedAsync += e =>
        {
            var m = e.ApplicationMessage;
            if (FleetProtocol.DeviceOf(m.Topic) is not { } device || m.Payload.IsEmpty) return Task.CompletedTask;
            if (m.Topic.EndsWith("/" + FleetProtocol.StatusLeaf, StringComparison.Ordinal) && FleetStatus.Parse(m.Payload.ToArray()) is { } status)
                _status.AddOrUpdate(device, status with { Device = device }, (_, old) => status.Time >= old.Time ? status with { Device = device } : old);
            else if (m.Topic.EndsWith("/" + FleetProtocol.RolloutResultLeaf, StringComparison.Ordinal) && RolloutResult.Parse(m.Payload.ToArray()) is { } result
                     && result.RolloutId == _rolloutId)
                _results[device] = result;
            return Task.CompletedTask;
        };
        // A throw-away session: what the devices need is retained on their topics, not in this session.
        await FleetBroker.ConnectAsync(client, FleetBroker.Options(options.Connection, b => b.WithCleanStart(true)), options.Connection.Broker, ct);
        await client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter(FleetProtocol.AllStatus(options.Fleet), MqttQualityOfServiceLevel.AtLeastOnce)
            .WithTopicFilter(FleetProtocol.AllRolloutResults(options.Fleet), MqttQualityOfServiceLevel.AtLeastOnce).Build(), ct);
        await Task.Delay(options.Discover, ct);

        // Healthy devices make the canaries; the order is the name's, so a rerun picks the same ones.
        var matched = _status.Values.Where(s => FileSystemName.MatchesSimpleExpression(options.Devices, s.Device, ignoreCase: false))
            .OrderBy(s => s.Health == "ok" ? 0 : 1).ThenBy(s => s.Device, StringComparer.Ordinal).Select(s => s.Device).ToList();
        if (matched.Count == 0)
            throw new EdgeTuneException($"no device matches --devices '{options.Devices}' under {FleetProtocol.AllStatus(options.Fleet)} on {options.Connection.Broker}" +
                (_status.IsEmpty ? " (no device has published a status)" : $" (seen: {string.Join(", ", _status.Keys.Order(StringComparer.Ordinal).Take(20))})"));
        var devices = matched.Select((d, i) => new RolloutDevice(d, i < options.Canary ? "canary" : "rest")).ToList();
        var report = new RolloutReport(_rolloutId, version, sha256, size, url, devices);
        var canaries = devices.Where(d => d.Stage == "canary").ToList();
        var rest = devices.Where(d => d.Stage == "rest").ToList();
        progress.WriteLine($"fleet rollout {_rolloutId}: version {version} to {devices.Count} device(s); canary: {string.Join(", ", canaries.Select(d => d.Device))}");

        await PublishAsync(client, canaries, command, ct);
        await WaitAsync(canaries, version, ct);
        if (canaries.FirstOrDefault(d => d.Outcome != RolloutResult.Installed) is { } failed)
        {
            report.Stopped = true;
            report.StopReason = $"canary {failed.Device}: {failed.Outcome}{(failed.Reason is null ? "" : ": " + failed.Reason)}";
            progress.WriteLine($"fleet rollout {_rolloutId}: stopped: {report.StopReason}; {rest.Count} other device(s) not touched");
            await WithdrawAsync(client, canaries, ct);
            await client.TryDisconnectAsync();
            return report;
        }

        if (rest.Count > 0)
        {
            progress.WriteLine($"fleet rollout {_rolloutId}: canaries healthy on {version}; rolling out to {rest.Count} more device(s)");
            await PublishAsync(client, rest, command, ct);
            await WaitAsync(rest, version, ct);
        }
        // Answered devices are done with the command; one that has not answered keeps it retained and installs when it reconnects.
        await WithdrawAsync(client, devices.Where(d => d.Outcome != RolloutDevice.NoAnswer), ct);
        await client.TryDisconnectAsync();
        return report;
    }

    /// <summary>The bundle as a device will check it, before anything is published: the signature, then every file. Returns its version, SHA-256 and size.</summary>
    private (string Version, string Sha256, long Size) Verify()
    {
        if (!File.Exists(options.Bundle)) throw new EdgeTuneException($"{options.Bundle}: no such bundle file");
        var trust = BundleKeys.LoadTrust(options.Trust);
        BundleManifest manifest;
        using (var reader = BundleReader.Open(options.Bundle))
        {
            reader.VerifySignature(trust);
            reader.VerifyPayload();
            manifest = reader.Manifest;
        }
        if (options.MinScore is not null && manifest.Health is null)
            throw new EdgeTuneException($"{options.Bundle}: --min-score needs a bundle with a scored health set (edgetune bundle create --health-set); this one has none");
        using var file = File.OpenRead(options.Bundle);
        return (manifest.Version, Convert.ToHexStringLower(SHA256.HashData(file)), file.Length);
    }

    private static string NewRolloutId(string version)
    {
        var id = new StringBuilder();
        foreach (char c in version) id.Append(char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' ? c : '-');
        return $"{id}-{DateTime.UtcNow:yyyyMMdd-HHmmss}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(2))}";
    }

    private async Task PublishAsync(IMqttClient client, IEnumerable<RolloutDevice> devices, RolloutCommand command, CancellationToken ct)
    {
        byte[] payload = Encoding.UTF8.GetBytes(command.ToJson());
        foreach (var d in devices) await RetainAsync(client, d.Device, payload, ct);
    }

    /// <summary>Empties the retained command of devices that need it no longer (an empty retained message removes it from the broker).</summary>
    private async Task WithdrawAsync(IMqttClient client, IEnumerable<RolloutDevice> devices, CancellationToken ct)
    {
        foreach (var d in devices) await RetainAsync(client, d.Device, [], ct);
    }

    private async Task RetainAsync(IMqttClient client, string device, byte[] payload, CancellationToken ct)
    {
        var message = new MqttApplicationMessageBuilder()
            .WithTopic(FleetProtocol.RolloutTopic(options.Fleet, device))
            .WithPayload(payload)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .WithRetainFlag()
            .WithContentType("application/json")
            .Build();
        var sent = await client.PublishAsync(message, ct);
        // No matching subscribers: the device is offline; the broker keeps the retained message for it all the same.
        if (sent.ReasonCode is not (MqttClientPublishReasonCode.Success or MqttClientPublishReasonCode.NoMatchingSubscribers))
            throw new FleetException($"broker {options.Connection.Broker} refused the rollout command for {device}: {sent.ReasonCode} {sent.ReasonString}");
    }

    /// <summary>
    /// Until every device has answered and, when it installed, shows a healthy status on <paramref name="version"/>
    /// published after its answer; or the stage's timeout. Each device's outcome is printed as it comes.
    /// </summary>
    private async Task WaitAsync(List<RolloutDevice> devices, string version, CancellationToken ct)
    {
        var deadline = DateTimeOffset.UtcNow + options.Timeout;
        var open = devices.ToList();
        while (open.Count > 0)
        {
            foreach (var d in open.ToList())
            {
                if (!_results.TryGetValue(d.Device, out var result)) continue;
                d.Version = result.Version;
                d.Health = result.Health;
                d.Score = result.Score;
                d.Reason = result.Reason;
                d.Outcome = result.Outcome;
                if (result.Outcome == RolloutResult.Installed)
                {
                    if (!_status.TryGetValue(d.Device, out var status) || status.Time < result.Time || status.Bundle != version || status.Health != "ok") continue;
                    d.Health = status.Health;
                    if (options.MinScore is { } min && (result.Score ?? 0) < min)
                    {
                        d.Outcome = RolloutDevice.BelowMinScore;
                        d.Reason = $"scored {result.Score ?? 0:0.00} on the bundle's health set, under --min-score {min:0.00}";
                    }
                }
                open.Remove(d);
                progress.WriteLine($"fleet rollout {_rolloutId}: {d.Stage} {d.Device}: {d.Outcome} {d.Version}{(d.Reason is null ? "" : ": " + d.Reason)}");
            }
            if (open.Count == 0) break;
            if (DateTimeOffset.UtcNow >= deadline)
            {
                foreach (var d in open)
                {
                    bool installed = d.Outcome == RolloutResult.Installed;
                    d.Outcome = RolloutDevice.NoAnswer;
                    d.Reason = installed
                        ? $"installed, but no healthy status on {version} within {options.Timeout.TotalSeconds:0.#} s"
                        : $"no answer within {options.Timeout.TotalSeconds:0.#} s (offline, or still installing)";
                    progress.WriteLine($"fleet rollout {_rolloutId}: {d.Stage} {d.Device}: {d.Reason}");
                }
                break;
            }
            await Task.Delay(100, ct);
        }
    }
}
