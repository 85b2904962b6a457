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
