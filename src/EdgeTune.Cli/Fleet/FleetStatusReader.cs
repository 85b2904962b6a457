using System.Buffers;
using System.Collections.Concurrent;
using EdgeTune.Agent.Fleet;
using EdgeTune.Formats.FieldData;
using MQTTnet;
using MQTTnet.Protocol;

namespace EdgeTune.Cli.Fleet;

/// <summary>Reads every device's retained status: subscribe, take what the broker sends, listen a little longer.</summary>
public static class FleetStatusReader
{
    public static async Task<IReadOnlyList<FleetStatus>> ReadAsync(FleetConnection connection, string fleet, TimeSpan wait, CancellationToken ct)
    {
        var latest = new ConcurrentDictionary<string, FleetStatus>(StringComparer.Ordinal);
        using var client = new MqttClientFactory().CreateMqttClient();
        client.ApplicationMessageReceivedAsync += e =>
        {
            if (FleetProtocol.DeviceOf(e.ApplicationMessage.Topic) is { } device
                && FleetStatus.Parse(e.ApplicationMessage.Payload.ToArray()) is { } status)
                latest.AddOrUpdate(device, status with { Device = device }, (_, old) => status.Time >= old.Time ? status with { Device = device } : old);
            return Task.CompletedTask;
        };
        // A throw-away session: clean start, nothing kept on the broker.
        var options = FleetBroker.Options(connection, b => b.WithCleanStart(true));
        await FleetBroker.ConnectAsync(client, options, connection.Broker, ct);
        await client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(FleetProtocol.AllStatus(fleet), MqttQualityOfServiceLevel.AtLeastOnce).Build(), ct);
        await Task.Delay(wait, ct);
        await client.TryDisconnectAsync();
        return latest.Values.OrderBy(s => s.Device, StringComparer.Ordinal).ToList();
    }
}
