using System.Buffers;
using System.Collections.Concurrent;
using System.Text.Json;
using EdgeTune.Agent.Config;
using EdgeTune.Agent.FieldLog;
using EdgeTune.Agent.Fleet;
using EdgeTune.Formats.FieldData;
using EdgeTune.Testing;
using MQTTnet;
using MQTTnet.Packets;
using MQTTnet.Protocol;

namespace EdgeTune.Agent.Tests;

/// <summary>The agent's [fleet] section and its MQTT outbox, against a real Mosquitto.</summary>
public sealed class FleetTests
{
    private static CompletionRecord Record(int i) => new($"id-{i}", DateTimeOffset.UtcNow, "dev", "chat", "tiny", null,
        [new FieldMessage("user", $"q{i}")], $"a{i}", new Dictionary<string, object?>(), 10 + i, 1, 5, 4, "stop");

    [Fact]
    public void Fleet_section_defaults_and_errors_name_the_place()
    {
        using var dir = new TempDir();
        string model = TinyAgentModel.Write(dir.Path);
        File.WriteAllText(dir.File("broker.pw"), "pw\n");
        string config = TinyAgentModel.WriteConfig(dir.Path, model, extra: "\n[fleet]\nbroker = \"mqtt://broker.lan\"\nusername = \"agent\"\npassword_file = \"broker.pw\"\n");
        var fleet = AgentConfig.Load(config).Fleet!;
        Assert.Equal("test-device", fleet.Device);            // field_log.device_id (the host name by default)
        Assert.Equal("test-device", fleet.Connection.ClientId);
        Assert.Equal("default", fleet.Fleet);
        Assert.Equal(dir.File("broker.pw"), fleet.Connection.PasswordFile);
        Assert.True(fleet.Connection.SessionExpirySeconds > 0);
        Assert.Null(AgentConfig.Load(TinyAgentModel.WriteConfig(dir.Path, model)).Fleet); // no [fleet]: nothing changes

        void Refused(string fleetToml, string pattern)
        {
            File.WriteAllText(config, File.ReadAllText(TinyAgentModel.WriteConfig(dir.Path, model)) + "\n[fleet]\n" + fleetToml + "\n");
            var e = Assert.Throws<AgentConfigException>(() => AgentConfig.Load(config));
            Assert.Matches(pattern, e.Message);
        }
        Refused("broker = \"http://broker.lan\"", @"agent\.toml:\d+:\d+: fleet\.broker: expected mqtt://HOST\[:PORT\] or mqtts://HOST\[:PORT\]");
        Refused("broker = \"mqtt://b\"\ndevice = \"a/b\"", @"agent\.toml:\d+:\d+: fleet\.device: 'a/b' '/' is not allowed");
        Refused("broker = \"mqtt://b\"\npassword_file = \"broker.pw\"", @"fleet\.password_file: a password file needs fleet\.username");
        Refused("broker = \"mqtt://b\"\nca_file = \"broker.pw\"", @"fleet\.broker: ca_file and client_certificate need an mqtts:// broker");
        Refused("broker = \"mqtt://b\"\nqos = 2", @"fleet\.qos: unknown key");
        Refused("device = \"x\"", @"fleet\.broker: required");
    }

    [MosquittoFact]
    public async Task Unpublished_records_are_kept_past_the_row_cap_until_a_collector_has_them()
    {
        using var dir = new TempDir();
        using var broker = new Mosquitto();
        using var log = new FieldLogStore(dir.File("f.db"), maxRecords: 5);
        var config = new FleetConfig { Connection = Connection(broker, "dev-a"), Device = "dev-a", Fleet = "t" };
        using var outbox = new FleetOutbox(config, log) { InitialBackoff = TimeSpan.FromMilliseconds(20), MaxBackoff = TimeSpan.FromMilliseconds(100) };
        // Over the cap with nothing published or acknowledged: the log refuses new records (counted), never evicts.
        for (int i = 1; i <= 10; i++) log.Add(Record(i));
        Assert.Equal(5, log.Count);
        Assert.Equal(5, log.Refused);
        await outbox.StartAsync(default);

        // No collector holds a session yet: the broker answers "no matching subscribers", so nothing counts as sent.
        await Until(() => outbox.LastError?.Contains("no collector is subscribed", StringComparison.Ordinal) == true);
        // An HTTP consumer that has read and acknowledged everything does not let eviction take what the broker has not had.
        var (all, next) = log.Export(0, 100);
        log.Acknowledge(next);
        Assert.Null(log.Add(Record(11)));
        Assert.Equal(5, log.Count);
        Assert.Equal(0, log.Evicted);
        Assert.Equal(5, outbox.Lag);

        var received = new ConcurrentQueue<(string Id, string Previous, FieldExample Example)>();
        using var collector = await Subscribe(broker, "collector-t", FleetProtocol.AllRecords("t"), m => received.Enqueue((
            m.UserProperties.Single(p => p.Name == FleetProtocol.MessageIdProperty).ReadValueAsString(),
            m.UserProperties.Single(p => p.Name == FleetProtocol.PreviousProperty).ReadValueAsString(),
            FieldExample.FromJsonLine(System.Text.Encoding.UTF8.GetString(m.Payload.ToArray()))!)));
        await Until(() => outbox.Lag == 0);
        await Until(() => received.Count >= 5);
        var messages = received.DistinctBy(r => r.Id).OrderBy(r => r.Example.Metadata.Cursor).ToList();
        Assert.Equal(Enumerable.Range(1, 5).Select(i => $"dev-a/{i}"), messages.Select(m => m.Id));
        Assert.Equal(Enumerable.Range(0, 5).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)), messages.Select(m => m.Previous));
        Assert.Equal(5, log.ConsumerCursor(FleetOutbox.Consumer));

        // Published and acknowledged by both consumers: now the cap evicts again.
        Assert.NotNull(log.Add(Record(12)));
        Assert.Equal(5, log.Count);
        Assert.Equal(1, log.Evicted);
        await outbox.StopAsync(default);
    }

    // Feedback gives the completion a new revision, so the collector sees one message (the outbox polled after the
    // feedback) or two (it polled in between): the test waits for the record with its feedback, not for a count.
    [MosquittoFact]
    public async Task The_agent_with_fleet_publishes_completions_feedback_and_a_retained_status()
    {
        using var broker = new Mosquitto();
        var received = new ConcurrentQueue<MqttApplicationMessage>();
        // The collector's persistent session exists before the agent publishes (so the broker queues for it).
        using (await Subscribe(broker, "collector-x", FleetProtocol.AllRecords("x"), received.Enqueue)) { }
        var agent = new AgentFixture(8, null, extra: $"\n[fleet]\nbroker = \"{broker.Url}\"\nfleet = \"x\"\nusername = \"{Mosquitto.User}\"\npassword_file = \"{broker.PasswordFile}\"\nstatus_every_seconds = 1\n");
        await agent.InitializeAsync();
        try
        {
            var (status, body) = await agent.Client.PostJson("/v1/chat/completions", new { model = "tiny", max_tokens = 3, messages = new[] { new { role = "user", content = "hello fleet" } } });
            Assert.Equal(200, status);
            string id = body.GetProperty("id").GetString()!;
            Assert.Equal(200, (await agent.Client.PostJson("/v1/feedback", new { completion_id = id, rating = 1, corrected = "{\"ok\": true}" })).Status);

            using var collector = await Subscribe(broker, "collector-x", FleetProtocol.AllRecords("x"), received.Enqueue);
            List<FieldExample> Records() => received.Select(m => FieldExample.FromJsonLine(System.Text.Encoding.UTF8.GetString(m.Payload.ToArray()))!).ToList();
            await Until(() => Records().Any(r => r.Metadata.Feedback is not null));
            var records = Records();
            Assert.All(records, r => Assert.Equal(id, r.Metadata.Id));
            Assert.Contains(records, r => r.Metadata.Feedback?.Rating == 1 && r.Messages[^1].Content == "{\"ok\": true}");
            Assert.All(received, m => Assert.Equal("edgetune/x/test-device/records", m.Topic));

            FleetStatus? seen = null;
            using var watcher = await Subscribe(broker, "status-watcher", FleetProtocol.AllStatus("x"), m => seen = FleetStatus.Parse(m.Payload.ToArray()), persistent: false);
            await Until(() => seen is { Published: >= 1, Window: 1, OutboxLag: 0, FeedbackRate: 1.0 }); // 1 or 2 published: see above
            Assert.Equal("ok", seen!.Health);
            Assert.Equal("tiny", seen.Model);
            Assert.Equal(1.0, seen.FeedbackRate);
            Assert.Equal(0, seen.OutboxLag);
        }
        finally
        {
            await agent.DisposeAsync();
        }
    }

    private static FleetConnection Connection(Mosquitto broker, string clientId) => new()
    {
        Broker = broker.Url, ClientId = clientId, Username = Mosquitto.User, PasswordFile = broker.PasswordFile,
    };

    private static async Task<IMqttClient> Subscribe(Mosquitto broker, string clientId, string filter, Action<MqttApplicationMessage> onMessage, bool persistent = true)
    {
        var client = new MqttClientFactory().CreateMqttClient();
        client.ApplicationMessageReceivedAsync += e =>
        {
            onMessage(e.ApplicationMessage);
            return Task.CompletedTask;
        };
        await FleetBroker.ConnectAsync(client, FleetBroker.Options(Connection(broker, clientId) with { SessionExpirySeconds = persistent ? 600u : 0 }), broker.Url, default);
        await client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(filter, MqttQualityOfServiceLevel.AtLeastOnce).Build());
        return client;
    }

    /// <summary>A liveness bound (the broker and the outbox are asynchronous), not a timing assertion.</summary>
    private static async Task Until(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddMinutes(1);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException("condition not reached");
            await Task.Delay(20);
        }
    }
}
