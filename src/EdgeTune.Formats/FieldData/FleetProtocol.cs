using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace EdgeTune.Formats.FieldData;

/// <summary>
/// What agents and <c>edgetune fleet</c> say to each other through an MQTT broker. Topics live under
/// <c>edgetune/{fleet}/{device}/</c>: <c>records</c> carries one <see cref="FieldExample"/> JSON line per message
/// (QoS 1, with the application message id as a user property), <c>status</c> the retained
/// <see cref="FleetStatus"/>. The MQTT packet id is per session, 16-bit and recycled, so it never identifies a
/// record: the message id (device and field-log revision) and the record id do.
/// </summary>
public static class FleetProtocol
{
    public const string Root = "edgetune";
    public const string RecordsLeaf = "records";
    public const string StatusLeaf = "status";

    /// <summary>MQTT 5 user property carrying <see cref="MessageId"/>.</summary>
    public const string MessageIdProperty = "edgetune-message-id";

    /// <summary>MQTT 5 user property carrying the revision this device published before this one (0: none), so a collector can see a gap.</summary>
    public const string PreviousProperty = "edgetune-previous";

    /// <summary>A device's rollout command (<see cref="RolloutCommand"/>, retained, QoS 1) and its answer (<see cref="RolloutResult"/>, retained, QoS 1).</summary>
    public const string RolloutLeaf = "rollout";
    public const string RolloutResultLeaf = "rollout-result";

    public static string RecordsTopic(string fleet, string device) => $"{Root}/{fleet}/{device}/{RecordsLeaf}";
    public static string RolloutTopic(string fleet, string device) => $"{Root}/{fleet}/{device}/{RolloutLeaf}";
    public static string RolloutResultTopic(string fleet, string device) => $"{Root}/{fleet}/{device}/{RolloutResultLeaf}";
    public static string AllRollouts(string fleet) => $"{Root}/{fleet}/+/{RolloutLeaf}";
    public static string AllRolloutResults(string fleet) => $"{Root}/{fleet}/+/{RolloutResultLeaf}";
    public static string StatusTopic(string fleet, string device) => $"{Root}/{fleet}/{device}/{StatusLeaf}";
    public static string AllRecords(string fleet) => $"{Root}/{fleet}/+/{RecordsLeaf}";
    public static string AllStatus(string fleet) => $"{Root}/{fleet}/+/{StatusLeaf}";

    /// <summary>The application message id: the device and the field-log revision of the record (unique per device).</summary>
    public static string MessageId(string device, long revision) => device + "/" + revision.ToString(CultureInfo.InvariantCulture);

    /// <summary>The device of a topic under <c>edgetune/{fleet}/</c>, or null when the topic has another shape.</summary>
    public static string? DeviceOf(string topic)
    {
        var parts = topic.Split('/');
        return parts.Length == 4 && parts[0] == Root && parts[2].Length > 0 ? parts[2] : null;
    }

    /// <summary>
    /// Device and fleet names become topic levels: letters, digits and <c>. _ -</c> only (no MQTT wildcards,
    /// separators or control characters). Returns the problem, or null when the name is fine.
    /// </summary>
    public static string? CheckName(string name)
    {
        if (name.Length is 0 or > 128) return "must be 1 to 128 characters";
        foreach (char c in name)
            if (!(char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-')) return $"'{c}' is not allowed (letters, digits, '.', '_' and '-' only)";
        return null;
    }
}

/// <summary>One device's retained status message: health, what it serves, how it is doing, and its outbox.</summary>
public sealed record FleetStatus
{
    [JsonPropertyName("device")] public required string Device { get; init; }
    [JsonPropertyName("time")] public DateTimeOffset Time { get; init; }

    /// <summary>ok, loading, error, or offline (the broker's last-will message when the agent vanished).</summary>
    [JsonPropertyName("health")] public required string Health { get; init; }
    [JsonPropertyName("error")] public string? Error { get; init; }
    [JsonPropertyName("model")] public string? Model { get; init; }
    [JsonPropertyName("adapter")] public string? Adapter { get; init; }
    [JsonPropertyName("bundle")] public string? Bundle { get; init; }
    [JsonPropertyName("tokens_per_second")] public double? TokensPerSecond { get; init; }
    [JsonPropertyName("queue_depth")] public int QueueDepth { get; init; }

    /// <summary>Over the last <see cref="Window"/> field-log records: the share with feedback, the share whose output is valid JSON (null: none looked like JSON), and p95 latency.</summary>
    [JsonPropertyName("window")] public int Window { get; init; }
    [JsonPropertyName("feedback_rate")] public double? FeedbackRate { get; init; }
    [JsonPropertyName("format_valid_rate")] public double? FormatValidRate { get; init; }
    [JsonPropertyName("latency_p95_ms")] public double? LatencyP95Ms { get; init; }

    /// <summary>Records committed but not yet acknowledged by the broker, and records the outbox gave up on (refused by the broker as malformed or too large).</summary>
    [JsonPropertyName("outbox_lag")] public long OutboxLag { get; init; }
    [JsonPropertyName("outbox_dropped")] public long OutboxDropped { get; init; }
    [JsonPropertyName("published")] public long Published { get; init; }
    [JsonPropertyName("power_watts")] public double? PowerWatts { get; init; }
    [JsonPropertyName("temperature_c")] public double? TemperatureC { get; init; }

    /// <summary>The [drift] monitor over its window (absent when the agent has no fingerprint): see EdgeTune.Core.Drift.</summary>
    [JsonPropertyName("drift_prompt_length_psi")] public double? DriftPromptLengthPsi { get; init; }
    [JsonPropertyName("drift_token_js")] public double? DriftTokenJs { get; init; }
    [JsonPropertyName("drift_format_validity")] public double? DriftFormatValidity { get; init; }
    [JsonPropertyName("drift_warning")] public bool? DriftWarning { get; init; }
    [JsonPropertyName("drift_reasons")] public IReadOnlyList<string>? DriftReasons { get; init; }

    public static readonly JsonSerializerOptions JsonOptions = new() { DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    /// <summary>Null when the payload is not a status object.</summary>
    public static FleetStatus? Parse(ReadOnlySpan<byte> payload)
    {
        try { return JsonSerializer.Deserialize<FleetStatus>(payload, JsonOptions); }
        catch (JsonException) { return null; }
    }
}

/// <summary>
/// <c>edgetune fleet rollout</c>'s order to one device, retained on its rollout topic so a device that is offline
/// gets it when it reconnects: fetch the bundle (bounded by <see cref="Size"/>, checked against
/// <see cref="Sha256"/>), install it through the agent's own install path, answer with a <see cref="RolloutResult"/>.
/// An empty retained message withdraws it. A device handles one rollout id once.
/// </summary>
public sealed record RolloutCommand
{
    [JsonPropertyName("rollout_id")] public required string RolloutId { get; init; }
    /// <summary>http(s):// URL or a file path on the device.</summary>
    [JsonPropertyName("url")] public required string Url { get; init; }
    [JsonPropertyName("sha256")] public required string Sha256 { get; init; }
    [JsonPropertyName("size")] public required long Size { get; init; }
    [JsonPropertyName("version")] public required string Version { get; init; }
    [JsonPropertyName("time")] public DateTimeOffset Time { get; init; }

    public string ToJson() => JsonSerializer.Serialize(this, FleetStatus.JsonOptions);

    /// <summary>Null when the payload is not a usable command (the reason in <paramref name="problem"/>).</summary>
    public static RolloutCommand? Parse(ReadOnlySpan<byte> payload, out string? problem)
    {
        problem = null;
        RolloutCommand? command;
        try { command = JsonSerializer.Deserialize<RolloutCommand>(payload, FleetStatus.JsonOptions); }
        catch (JsonException e) { problem = $"not a rollout command ({e.Message})"; return null; }
        if (command is null) problem = "not a rollout command (null)";
        else if (FleetProtocol.CheckName(command.RolloutId) is { } bad) problem = $"rollout_id '{command.RolloutId}': {bad}";
        else if (command.Size <= 0) problem = $"size {command.Size}: must be positive";
        else if (command.Sha256.Length != 64 || !command.Sha256.All(char.IsAsciiHexDigit)) problem = "sha256: expected 64 hex digits";
        return problem is null ? command : null;
    }
}

/// <summary>A device's answer to a <see cref="RolloutCommand"/>, retained on its rollout-result topic.</summary>
public sealed record RolloutResult
{
    public const string Installed = "installed";
    public const string RolledBack = "rolled_back";
    public const string Refused = "refused";
    /// <summary>The bundle could not be fetched or did not match its announced size or SHA-256: nothing was installed.</summary>
    public const string Failed = "failed";

    [JsonPropertyName("rollout_id")] public required string RolloutId { get; init; }
    [JsonPropertyName("device")] public required string Device { get; init; }
    [JsonPropertyName("outcome")] public required string Outcome { get; init; }
    [JsonPropertyName("version")] public string? Version { get; init; }
    [JsonPropertyName("code")] public string? Code { get; init; }
    [JsonPropertyName("reason")] public string? Reason { get; init; }
    /// <summary>The agent's health after the install: ok, loading or error.</summary>
    [JsonPropertyName("health")] public string? Health { get; init; }
    /// <summary>The share of the bundle's scored health set answered exactly (null: the bundle has none).</summary>
    [JsonPropertyName("score")] public double? Score { get; init; }
    [JsonPropertyName("time")] public DateTimeOffset Time { get; init; }

    public string ToJson() => JsonSerializer.Serialize(this, FleetStatus.JsonOptions);

    public static RolloutResult? Parse(ReadOnlySpan<byte> payload)
    {
        try { return JsonSerializer.Deserialize<RolloutResult>(payload, FleetStatus.JsonOptions); }
        catch (JsonException) { return null; }
    }
}
