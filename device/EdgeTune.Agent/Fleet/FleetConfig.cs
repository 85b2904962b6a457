using EdgeTune.Agent.Config;
using EdgeTune.Formats.FieldData;
using EdgeTune.Profiles.Toml;

namespace EdgeTune.Agent.Fleet;

/// <summary>
/// agent.toml [fleet]: publish the field log to an MQTT broker (device/EdgeTune.Agent/README.md lists the keys).
/// The section's presence turns the outbox on; without it the agent behaves as before (HTTP pull only).
/// </summary>
public sealed record FleetConfig
{
    public required FleetConnection Connection { get; init; }
    public required string Device { get; init; }
    public string Fleet { get; init; } = "default";
    public double StatusEverySeconds { get; init; } = 60;

    internal static readonly string[] Keys =
        ["broker", "device", "fleet", "username", "password_file", "client_certificate", "client_key", "ca_file", "status_every_seconds", "session_expiry_seconds"];

    internal static FleetConfig? Load(TomlTableNode? table, FieldLogConfig fieldLog, Func<string, string> resolve, bool checkFiles)
    {
        if (table is null) return null;
        string? broker = AgentConfig.Str(table, "fleet", "broker");
        if (broker is null) throw new AgentConfigException($"{table.Location}: fleet.broker: required (mqtt://HOST[:PORT] or mqtts://HOST[:PORT])");
        if (FleetBroker.ParseUrl(broker, out var problem) is null) AgentConfig.Fail(table["broker"]!, "fleet.broker", problem!);
        string device = AgentConfig.Str(table, "fleet", "device") ?? fieldLog.DeviceId;
        string fleet = AgentConfig.Str(table, "fleet", "fleet") ?? "default";
        foreach (var (key, value) in new[] { ("device", device), ("fleet", fleet) })
            if (FleetProtocol.CheckName(value) is { } bad)
                AgentConfig.Fail((TomlNode?)table[key] ?? table, $"fleet.{key}", $"'{value}' {bad} (it becomes an MQTT topic level{(key == "device" ? "; the default is field_log.device_id, the host name" : "")})");

        string? File(string key)
        {
            if (AgentConfig.Str(table, "fleet", key) is not { Length: > 0 } path) return null;
            string full = resolve(path);
            if (checkFiles && !System.IO.File.Exists(full)) AgentConfig.Fail(table[key]!, $"fleet.{key}", $"no such file: {full}");
            return full;
        }
        var connection = new FleetConnection
        {
            Broker = broker,
            ClientId = device,
            Username = AgentConfig.Str(table, "fleet", "username"),
            PasswordFile = File("password_file"),
            CaFile = File("ca_file"),
            ClientCertificate = File("client_certificate"),
            ClientKey = File("client_key"),
            SessionExpirySeconds = (uint)(AgentConfig.Int(table, "fleet", "session_expiry_seconds", 1, uint.MaxValue) ?? 7 * 24 * 3600),
        };
        if (connection.PasswordFile is not null && connection.Username is null)
            AgentConfig.Fail(table["password_file"]!, "fleet.password_file", "a password file needs fleet.username");
        if ((connection.CaFile is not null || connection.ClientCertificate is not null) && !broker.StartsWith("mqtts:", StringComparison.OrdinalIgnoreCase))
            AgentConfig.Fail(table["broker"]!, "fleet.broker", "ca_file and client_certificate need an mqtts:// broker");
        if (connection.ClientKey is not null && connection.ClientCertificate is null)
            AgentConfig.Fail(table["client_key"]!, "fleet.client_key", "a client key needs fleet.client_certificate");
        return new FleetConfig
        {
            Connection = connection,
            Device = device,
            Fleet = fleet,
            StatusEverySeconds = (double)(AgentConfig.Int(table, "fleet", "status_every_seconds", 1, 86_400) ?? 60),
        };
    }
}
