using System.Diagnostics;
using System.Text;
using System.Text.Json;
using EdgeTune.Agent.Fleet;
using EdgeTune.Formats.FieldData;
using EdgeTune.Testing;
using MQTTnet;
using MQTTnet.Protocol;

namespace EdgeTune.Cli.Tests;

/// <summary>
/// <c>edgetune fleet</c> against a real Mosquitto, with simulated agents that run the agent's real outbox over
/// real SQLite field logs: exactly-once collection through broker restarts, offline agents, a killed collector
/// and replays; the frozen test split untouched.
/// </summary>
public class FleetCommandTests
{
    private static FleetConnection Connection(Mosquitto broker, string? url = null) => new()
    {
        Broker = url ?? broker.Url, ClientId = "unused", Username = Mosquitto.User, PasswordFile = broker.PasswordFile,
    };

    private static string[] CollectArgs(Mosquitto broker, string data, double untilIdle, params string[] extra) =>
        ["fleet", "collect", "--broker", broker.Url, "--into", data, "--fleet", "f1", "--until-idle", untilIdle.ToString(System.Globalization.CultureInfo.InvariantCulture),
         "--username", Mosquitto.User, "--password-file", broker.PasswordFile, .. extra];

    [Fact]
    public void Fleet_commands_have_help_and_refuse_bad_usage()
    {
        foreach (var verb in new[] { "collect", "status" })
        {
            var help = CliRunner.Run("fleet", verb, "--help");
            Assert.Equal(0, help.ExitCode);
            Assert.Contains("--broker", help.Stdout);
        }
        var missing = CliRunner.Run("fleet", "collect", "--broker", "mqtt://127.0.0.1:1");
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("--into", missing.Stderr);
        using var dir = new TempDir();
        var noSplit = CliRunner.Run("fleet", "collect", "--broker", "mqtt://127.0.0.1:1", "--into", dir.Path);
        Assert.Equal(1, noSplit.ExitCode);
        Assert.Contains("make the split first", noSplit.Stderr);
        var unreachable = CliRunner.Run("fleet", "status", "--broker", "mqtt://127.0.0.1:1");
        Assert.Equal(1, unreachable.ExitCode);
        Assert.StartsWith("edgetune: cannot reach broker mqtt://127.0.0.1:1:", unreachable.Stderr);
    }

    [MosquittoFact]
    public async Task Fifty_agents_through_a_broker_restart_and_an_offline_agent_are_collected_exactly_once()
    {
        using var dir = new TempDir();
        using var broker = new Mosquitto();
        string data = FleetData.MakeSplitFolder(dir);
        string testHash = FleetData.Sha256(Path.Combine(data, "test.jsonl"));
        var agents = Enumerable.Range(0, 50).Select(i => new SimAgent(dir.Path, $"dev-{i:D2}", Connection(broker))).ToList();
        try
        {
            foreach (var a in agents) a.Add(100);

            var collector = Task.Run(() => CliRunner.Run([.. CollectArgs(broker, data, 4), "--json"]));
            // Agent 0 is offline at first: its records wait in its field log.
            foreach (var a in agents.Skip(1)) await a.StartAsync();
            foreach (var a in agents) a.Add(100);
            await WaitUntil(() => agents.Skip(1).Sum(a => a.Outbox.Published) >= 49 * 50, "some records published");
            broker.Restart(); // mid-stream: the broker saves its sessions and comes back on the same port
            await agents[0].StartAsync();
            await FleetData.DrainAsync(agents, TimeSpan.FromMinutes(3));

            var r = await collector;
            Assert.True(r.ExitCode == 0, r.Stderr);
            FleetData.AssertExactlyOnce(data, agents);
            Assert.Equal(testHash, FleetData.Sha256(Path.Combine(data, "test.jsonl")));
            using var json = JsonDocument.Parse(r.Stdout);
            Assert.Equal(50, json.RootElement.GetProperty("devices").GetArrayLength());
            Assert.Equal(0, json.RootElement.GetProperty("gaps").GetArrayLength());
            Assert.Equal(0, json.RootElement.GetProperty("malformed").GetInt32());
            Assert.All(agents, a => Assert.Equal(0, a.Outbox.Dropped));
        }
        finally
        {
            foreach (var a in agents) a.Dispose();
        }
    }

    [MosquittoFact]
    public async Task A_collector_killed_mid_stream_and_restarted_loses_nothing_and_writes_nothing_twice()
    {
        using var dir = new TempDir();
        using var broker = new Mosquitto();
        string data = FleetData.MakeSplitFolder(dir);
        string testHash = FleetData.Sha256(Path.Combine(data, "test.jsonl"));
        var agents = Enumerable.Range(0, 5).Select(i => new SimAgent(dir.Path, $"box-{i}", Connection(broker))).ToList();
        try
        {
            foreach (var a in agents) a.Add(200);
            string pending = Path.Combine(data, "fleet", "pending.json");
            using (var first = StartCollector(CollectArgs(broker, data, 60)))
            {
                foreach (var a in agents) await a.StartAsync();
                // Kill it inside a batch when we catch one (pending.json present), else once some batches are in.
                await WaitUntil(() => File.Exists(pending) || LedgerLines(data) >= 300 || first.HasExited, "the collector to write");
                first.Kill(); // SIGKILL
                first.WaitForExit();
            }
            bool killedInsideBatch = File.Exists(pending);
            long before = LedgerLines(data);
            Assert.True(before < 1000, "killed before the end");

            var second = CliRunner.RunProcess(CollectArgsWithDrain(broker, data));
            Assert.True(second.ExitCode == 0, second.Stderr);
            if (killedInsideBatch) Assert.Contains("that batch was undone", second.Stderr);
            await FleetData.DrainAsync(agents, TimeSpan.FromMinutes(2));
            // Anything acknowledged by the agents after the second run stopped is picked up by a third (the session kept it).
            var third = CliRunner.RunProcess(CollectArgs(broker, data, 2));
            Assert.True(third.ExitCode == 0, third.Stderr);
            FleetData.AssertExactlyOnce(data, agents);
            Assert.Equal(1000, LedgerLines(data));
            Assert.False(File.Exists(pending));
            Assert.Equal(testHash, FleetData.Sha256(Path.Combine(data, "test.jsonl")));
        }
        finally
        {
            foreach (var a in agents) a.Dispose();
        }
    }

    private static string[] CollectArgsWithDrain(Mosquitto broker, string data) => CollectArgs(broker, data, 3);

    [MosquittoFact]
    public async Task A_record_replayed_by_hand_is_not_written_twice_and_status_shows_every_device()
    {
        using var dir = new TempDir();
        using var broker = new Mosquitto();
        string data = FleetData.MakeSplitFolder(dir);
        using var agent = new SimAgent(dir.Path, "kiosk-7", Connection(broker));
        agent.Add(30);
        var collector = Task.Run(() => CliRunner.Run(CollectArgs(broker, data, 2)));
        await agent.StartAsync();
        await FleetData.DrainAsync([agent], TimeSpan.FromMinutes(1));
        Assert.Equal(0, (await collector).ExitCode);
        FleetData.AssertExactlyOnce(data, [agent]);
        var trainBefore = File.ReadAllBytes(Path.Combine(data, "train.jsonl"));

        // Replay record 5 exactly as the agent sent it (same message id), twice.
        var (examples, _) = agent.Log.Read(0, 100);
        var record = examples[4];
        using (var client = new MqttClientFactory().CreateMqttClient())
        {
            await FleetBroker.ConnectAsync(client, FleetBroker.Options(Connection(broker) with { ClientId = "replayer", SessionExpirySeconds = 0 }), broker.Url, default);
            var collecting = Task.Run(() => CliRunner.Run([.. CollectArgs(broker, data, 2), "--json"]));
            await Task.Delay(500); // the collector's session exists already; this only lets it connect first
            for (int i = 0; i < 2; i++)
                await client.PublishAsync(new MqttApplicationMessageBuilder()
                    .WithTopic(FleetProtocol.RecordsTopic("f1", "kiosk-7")).WithPayload(Encoding.UTF8.GetBytes(record.ToJsonLine()))
                    .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
                    .WithUserProperty(FleetProtocol.MessageIdProperty, Encoding.UTF8.GetBytes(FleetProtocol.MessageId("kiosk-7", record.Metadata.Cursor)))
                    .Build());
            var r = await collecting;
            Assert.True(r.ExitCode == 0, r.Stderr);
            using var json = JsonDocument.Parse(r.Stdout);
            Assert.Equal(2, json.RootElement.GetProperty("received").GetInt32());
            Assert.Equal(2, json.RootElement.GetProperty("replayed").GetInt32());
        }
        Assert.Equal(trainBefore, File.ReadAllBytes(Path.Combine(data, "train.jsonl")));
        FleetData.AssertExactlyOnce(data, [agent]);

        var status = CliRunner.Run("fleet", "status", "--broker", broker.Url, "--fleet", "f1", "--username", Mosquitto.User, "--password-file", broker.PasswordFile, "--json", "--wait", "0.5");
        Assert.True(status.ExitCode == 0, status.Stderr);
        using var devices = JsonDocument.Parse(status.Stdout);
        var kiosk = Assert.Single(devices.RootElement.EnumerateArray());
        Assert.Equal("kiosk-7", kiosk.GetProperty("device").GetString());
        Assert.Equal("ok", kiosk.GetProperty("health").GetString());
        Assert.Equal(0, kiosk.GetProperty("outbox_dropped").GetInt64());
        Assert.True(kiosk.GetProperty("latency_p95_ms").GetDouble() > 0);
        var table = CliRunner.Run("fleet", "status", "--broker", broker.Url, "--fleet", "f1", "--username", Mosquitto.User, "--password-file", broker.PasswordFile, "--wait", "0.5");
        Assert.Contains("kiosk-7", table.Stdout);
        Assert.StartsWith("DEVICE", table.Stdout);
    }

    [MosquittoFact]
    public void A_wrong_password_is_one_clear_line_and_exit_1()
    {
        using var dir = new TempDir();
        using var broker = new Mosquitto();
        string data = FleetData.MakeSplitFolder(dir);
        string wrong = dir.File("wrong.pw");
        File.WriteAllText(wrong, "not-the-password\n");
        var r = CliRunner.Run("fleet", "collect", "--broker", broker.Url, "--into", data, "--username", Mosquitto.User, "--password-file", wrong, "--until-idle", "1");
        Assert.Equal(1, r.ExitCode);
        // Mosquitto 2.0 answers a wrong password with "not authorized" (MQTT 5 reason 0x87).
        Assert.Equal($"edgetune: broker {broker.Url} refused the connection: not authorized (check the username, password or client certificate)", r.Stderr.Trim());
        var s = CliRunner.Run("fleet", "status", "--broker", broker.Url, "--username", Mosquitto.User, "--password-file", wrong);
        Assert.Equal(1, s.ExitCode);
        Assert.Contains("refused the connection", s.Stderr);
        var usage = CliRunner.Run("fleet", "collect", "--broker", "http://x", "--into", data);
        Assert.Equal(1, usage.ExitCode);
        Assert.Contains("expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]", usage.Stderr);
    }

    [MosquittoFact]
    public async Task Agents_and_the_collector_talk_over_TLS_with_a_private_CA()
    {
        using var dir = new TempDir();
        using var broker = new Mosquitto(tls: true);
        string data = FleetData.MakeSplitFolder(dir);
        using var agent = new SimAgent(dir.Path, "secure-1", Connection(broker, broker.TlsUrl) with { CaFile = broker.CaFile });
        agent.Add(40);
        var collector = Task.Run(() => CliRunner.Run("fleet", "collect", "--broker", broker.TlsUrl!, "--ca-file", broker.CaFile!, "--into", data, "--fleet", "f1",
            "--username", Mosquitto.User, "--password-file", broker.PasswordFile, "--until-idle", "2"));
        await agent.StartAsync();
        await FleetData.DrainAsync([agent], TimeSpan.FromMinutes(1));
        var r = await collector;
        Assert.True(r.ExitCode == 0, r.Stderr);
        FleetData.AssertExactlyOnce(data, [agent]);

        // Without the CA the broker's certificate is not trusted: a clear error, exit 1.
        var untrusted = CliRunner.Run("fleet", "status", "--broker", broker.TlsUrl!, "--username", Mosquitto.User, "--password-file", broker.PasswordFile);
        Assert.Equal(1, untrusted.ExitCode);
        Assert.Contains($"cannot reach broker {broker.TlsUrl}", untrusted.Stderr);
    }

    private static long LedgerLines(string data)
    {
        string ledger = Path.Combine(data, "fleet", "ledger.tsv");
        if (!File.Exists(ledger)) return 0;
        using var stream = new FileStream(ledger, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        long lines = 0;
        int b;
        while ((b = stream.ReadByte()) >= 0) if (b == '\n') lines++;
        return lines;
    }

    private static Process StartCollector(string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "edgetune.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        var process = Process.Start(psi)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private static async Task WaitUntil(Func<bool> condition, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > TimeSpan.FromMinutes(2)) throw new TimeoutException("waited too long for: " + what);
            await Task.Delay(20);
        }
    }
}
