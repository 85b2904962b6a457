using System.Buffers;
using System.Collections.Concurrent;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using EdgeTune.Agent;
using EdgeTune.Agent.Bundles;
using EdgeTune.Agent.Fleet;
using EdgeTune.Cli.Fleet;
using EdgeTune.Formats.FieldData;
using EdgeTune.Testing;
using Microsoft.AspNetCore.Builder;
using MQTTnet;
using MQTTnet.Protocol;

namespace EdgeTune.Cli.Tests;

/// <summary>
/// <c>edgetune fleet rollout</c> against a real Mosquitto and real in-process agents (llama.cpp, tiny models) that
/// take the rollout through their own [fleet] subscription and bundle installer.
/// </summary>
public sealed class FleetRolloutTests
{
    private const string Fleet = "r";

    /// <summary>An agent in a temporary root with [bundles] (trusting the inputs' key) and [fleet] on the broker.</summary>
    private sealed class FleetDevice(string name, Mosquitto broker, BundleInputs inputs) : IAsyncDisposable
    {
        public string Name { get; } = name;
        public TempDir Dir { get; } = new();
        public int Port { get; } = SshServer.FreePort();
        public WebApplication? App { get; private set; }
        public SlotStore Store => new(Dir.File("state"));

        public async Task Start()
        {
            if (!File.Exists(Dir.File("agent.toml")))
            {
                Directory.CreateDirectory(Dir.File("trusted"));
                File.Copy(inputs.Public, Dir.File("trusted/release.pub"));
                File.Copy(inputs.Model, Dir.File("factory.gguf"));
                File.WriteAllText(Dir.File("agent.toml"), $"""
                    [server]
                    listen = "http://127.0.0.1:{Port}"
                    api_token = "device-token-0123456789"
                    log_level = "Warning"
                    [model]
                    path = "factory.gguf"
                    name = "factory"
                    context = 256
                    threads = 1
                    [field_log]
                    enabled = false
                    [bundles]
                    trust = "trusted"
                    state_dir = "state"
                    board = "x86-64-generic"
                    health_timeout_seconds = 120
                    [fleet]
                    broker = "{broker.Url}"
                    device = "{Name}"
                    fleet = "{Fleet}"
                    username = "{Mosquitto.User}"
                    password_file = "{broker.PasswordFile}"
                    status_every_seconds = 1
                    """);
            }
            App = AgentApp.Build(BundleBoot.Load(Dir.File("agent.toml"), _ => { }));
            await App.StartAsync();
        }

        public async Task Stop()
        {
            if (App is null) return;
            await App.StopAsync();
            await App.DisposeAsync();
            App = null;
        }

        public async Task<string> Served()
        {
            using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{Port}"), Timeout = TimeSpan.FromSeconds(60) };
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "device-token-0123456789");
            using var response = await client.PostAsJsonAsync("/v1/chat/completions", new { max_tokens = 2, messages = new[] { new { role = "user", content = "hi" } } });
            return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("model").GetString()!;
        }

        public async ValueTask DisposeAsync()
        {
            await Stop();
            Dir.Dispose();
        }
    }

    private static FleetConnection Connection(Mosquitto broker) => new()
    {
        Broker = broker.Url, ClientId = $"test-{Guid.NewGuid():N}", Username = Mosquitto.User, PasswordFile = broker.PasswordFile,
    };

    /// <summary>Until every device has published a healthy retained status (so the rollout's discovery sees them).</summary>
    private static async Task WaitHealthy(Mosquitto broker, params FleetDevice[] devices)
    {
        for (int i = 0; i < 600; i++)
        {
            var seen = await FleetStatusReader.ReadAsync(Connection(broker), Fleet, TimeSpan.FromMilliseconds(300), default);
            if (devices.All(d => seen.Any(s => s.Device == d.Name && s.Health == "ok"))) return;
        }
        throw new TimeoutException("the devices did not report a healthy status");
    }

    private static string[] RolloutArgs(Mosquitto broker, BundleInputs inputs, string bundle, string devices, int canary, params string[] extra) =>
        ["fleet", "rollout", bundle, "--trust", inputs.Public, "--broker", broker.Url, "--fleet", Fleet, "--username", Mosquitto.User, "--password-file", broker.PasswordFile,
         "--devices", devices, "--canary", canary.ToString(System.Globalization.CultureInfo.InvariantCulture), "--timeout", "120", "--json", .. extra];

    /// <summary>
    /// The rollout commands the broker holds retained for the fleet. A marker published after the subscription comes
    /// back after the retained messages (Mosquitto handles one connection's packets in order), so nothing is timed.
    /// </summary>
    private static async Task<List<string>> RetainedCommands(Mosquitto broker)
    {
        var topics = new ConcurrentQueue<string>();
        var marker = new TaskCompletionSource();
        using var client = new MqttClientFactory().CreateMqttClient();
        client.ApplicationMessageReceivedAsync += e =>
        {
            if (e.ApplicationMessage.Topic.Contains("/zz-marker/", StringComparison.Ordinal)) marker.TrySetResult();
            else if (!e.ApplicationMessage.Payload.IsEmpty) topics.Enqueue(e.ApplicationMessage.Topic);
            return Task.CompletedTask;
        };
        var options = FleetBroker.Options(Connection(broker) with { SessionExpirySeconds = 0 }, b => b.WithCleanStart(true));
        await FleetBroker.ConnectAsync(client, options, broker.Url, default);
        await client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(FleetProtocol.AllRollouts(Fleet), MqttQualityOfServiceLevel.AtLeastOnce).Build());
        await client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(FleetProtocol.RolloutTopic(Fleet, "zz-marker")).WithPayload("marker")
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
        await marker.Task.WaitAsync(TimeSpan.FromSeconds(30));
        await client.TryDisconnectAsync();
        return [.. topics];
    }

    private static async Task ClearRetained(Mosquitto broker, string topic)
    {
        using var client = new MqttClientFactory().CreateMqttClient();
        await FleetBroker.ConnectAsync(client, FleetBroker.Options(Connection(broker) with { SessionExpirySeconds = 0 }, b => b.WithCleanStart(true)), broker.Url, default);
        await client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(Array.Empty<byte>()).WithRetainFlag()
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
        await client.TryDisconnectAsync();
    }

    private static JsonElement Device(JsonElement report, string name) =>
        report.GetProperty("devices").EnumerateArray().Single(d => d.GetProperty("device").GetString() == name);

    [Fact]
    public void Rollout_has_help_and_refuses_bad_usage()
    {
        var help = CliRunner.Run("fleet", "rollout", "--help");
        Assert.Equal(0, help.ExitCode);
        foreach (var option in new[] { "--broker", "--devices", "--canary", "--min-score", "--trust", "--url", "--timeout", "--json" }) Assert.Contains(option, help.Stdout);

        // A value that is not a number: one usage line (the options' validators used to throw a stack trace).
        foreach (var (option, value) in new[] { ("--canary", "x"), ("--timeout", "soon") })
        {
            var notANumber = CliRunner.Run("fleet", "rollout", "b.etb", "--trust", "k.pub", "--broker", "mqtt://127.0.0.1:1", "--devices", "*", option, value);
            Assert.Equal(2, notANumber.ExitCode);
            Assert.Equal($"edgetune: Cannot parse argument '{value}' for option '{option}' as expected type 'System.{(option == "--canary" ? "Int32" : "Double")}'.", notANumber.Stderr.TrimEnd());
        }

        var noDevices = CliRunner.Run("fleet", "rollout", "b.etb", "--trust", "k.pub", "--broker", "mqtt://127.0.0.1:1", "--canary", "1");
        Assert.Equal(2, noDevices.ExitCode);
        Assert.Contains("--devices", noDevices.Stderr);
        var zeroCanary = CliRunner.Run("fleet", "rollout", "b.etb", "--trust", "k.pub", "--broker", "mqtt://127.0.0.1:1", "--devices", "*", "--canary", "0");
        Assert.Equal(2, zeroCanary.ExitCode);
        Assert.Contains("--canary must be 1 or more", zeroCanary.Stderr);
        var badScore = CliRunner.Run("fleet", "rollout", "b.etb", "--trust", "k.pub", "--broker", "mqtt://127.0.0.1:1", "--devices", "*", "--canary", "1", "--min-score", "1.5");
        Assert.Equal(2, badScore.ExitCode);

        using var dir = new TempDir();
        var missing = CliRunner.Run("fleet", "rollout", dir.File("none.etb"), "--trust", "k.pub", "--broker", "mqtt://127.0.0.1:1", "--devices", "*", "--canary", "1");
        Assert.Equal(1, missing.ExitCode);
        Assert.Equal($"edgetune: {dir.File("none.etb")}: no such bundle file", missing.Stderr.Trim());
    }

    [MosquittoFact]
    public async Task A_tampered_or_unsigned_bundle_is_refused_before_anything_is_published()
    {
        using var broker = new Mosquitto();
        using var inputs = new BundleInputs();
        string tampered = inputs.Create("2.0.0");
        byte[] bytes = File.ReadAllBytes(tampered);
        bytes[^2048] ^= 0x40; // inside the model's tensor data
        File.WriteAllBytes(tampered, bytes);
        var r = CliRunner.Run(RolloutArgs(broker, inputs, tampered, "*", 1));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("does not match the manifest", r.Stderr);
        Assert.Equal("", r.Stdout);

        string unsigned = inputs.Dir.File("unsigned.etb");
        Assert.Equal(0, CliRunner.Run("bundle", "create", "--model", inputs.Model, "--config", inputs.Author, "--profile", "x86-64-generic", "--version", "2.0.0", "--out", unsigned).ExitCode);
        r = CliRunner.Run(RolloutArgs(broker, inputs, unsigned, "*", 1));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("not signed", r.Stderr);

        Assert.Empty(await RetainedCommands(broker));
    }

    [MosquittoFact]
    public async Task A_good_bundle_reaches_the_canary_then_the_rest_and_a_replayed_rollout_id_does_not_reinstall()
    {
        using var broker = new Mosquitto();
        using var inputs = new BundleInputs();
        await using var shop1 = new FleetDevice("shop-1", broker, inputs);
        await using var shop2 = new FleetDevice("shop-2", broker, inputs);
        await using var lab = new FleetDevice("lab-1", broker, inputs);
        foreach (var d in new[] { shop1, shop2, lab }) await d.Start();
        await WaitHealthy(broker, shop1, shop2, lab);
        string bundle = inputs.Create("2.0.0");

        var r = CliRunner.Run(RolloutArgs(broker, inputs, bundle, "shop-*", 1));
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        var report = JsonDocument.Parse(r.Stdout).RootElement;
        string id = report.GetProperty("rollout_id").GetString()!;
        Assert.Equal("2.0.0", report.GetProperty("version").GetString());
        Assert.False(report.GetProperty("stopped").GetBoolean());
        Assert.Equal(2, report.GetProperty("devices").GetArrayLength()); // lab-1 does not match
        Assert.Equal("canary", Device(report, "shop-1").GetProperty("stage").GetString());
        Assert.Equal("rest", Device(report, "shop-2").GetProperty("stage").GetString());
        foreach (var name in new[] { "shop-1", "shop-2" })
        {
            Assert.Equal("installed", Device(report, name).GetProperty("outcome").GetString());
            Assert.Equal("ok", Device(report, name).GetProperty("health").GetString());
        }
        // The rest went out only once the canary was healthy on the new version.
        int canaryLine = r.Stderr.IndexOf("canary shop-1: installed 2.0.0", StringComparison.Ordinal);
        int restLine = r.Stderr.IndexOf("rest shop-2: installed 2.0.0", StringComparison.Ordinal);
        Assert.True(canaryLine >= 0 && restLine > canaryLine, r.Stderr);
        Assert.Equal("shipped", await shop1.Served());
        Assert.Equal("shipped", await shop2.Served());
        Assert.Equal("factory", await lab.Served());
        Assert.Equal("a", shop1.Store.Active);
        Assert.Equal("a", shop2.Store.Active);
        Assert.Null(lab.Store.Active);
        Assert.Empty(await RetainedCommands(broker)); // answered devices are done with their command

        // The same rollout id again, after the canary restarted: each device answers from its ledger and installs nothing
        // (a second install would have gone to slot b).
        await shop1.Stop();
        await shop1.Start();
        await WaitHealthy(broker, shop1);
        await ClearRetained(broker, FleetProtocol.RolloutResultTopic(Fleet, "shop-1")); // so the rollout waits for the canary's new answer
        var replay = CliRunner.Run(RolloutArgs(broker, inputs, bundle, "shop-*", 1, "--rollout-id", id));
        Assert.True(replay.ExitCode == 0, replay.Stdout + replay.Stderr);
        Assert.Equal(id, JsonDocument.Parse(replay.Stdout).RootElement.GetProperty("rollout_id").GetString());
        Assert.Equal("a", shop1.Store.Active);
        Assert.Equal("a", shop2.Store.Active);
        Assert.Equal(InstallResult.Installed, shop1.Store.Read().LastOutcome);
        Assert.Equal("shipped", await shop1.Served());
    }

    [MosquittoFact]
    public async Task A_canary_that_rolls_back_stops_the_rollout_and_leaves_the_other_devices_untouched()
    {
        using var broker = new Mosquitto();
        using var inputs = new BundleInputs();
        await using var a = new FleetDevice("box-a", broker, inputs);
        await using var b = new FleetDevice("box-b", broker, inputs);
        await using var c = new FleetDevice("box-c", broker, inputs);
        foreach (var d in new[] { a, b, c }) await d.Start();
        await WaitHealthy(broker, a, b, c);
        // Signed and hashed correctly, but not a GGUF: only loading it on the device shows the problem.
        string garbage = inputs.Dir.File("broken.gguf");
        File.WriteAllBytes(garbage, new byte[4096]);
        string broken = inputs.Dir.File("broken.etb");
        var created = CliRunner.Run("bundle", "create", "--model", garbage, "--config", inputs.Author, "--profile", "x86-64-generic", "--version", "2.0.0", "--key", inputs.Key, "--out", broken);
        Assert.True(created.ExitCode == 0, created.Stderr);

        var r = CliRunner.Run(RolloutArgs(broker, inputs, broken, "box-*", 1));
        Assert.Equal(1, r.ExitCode);
        var report = JsonDocument.Parse(r.Stdout).RootElement;
        Assert.True(report.GetProperty("stopped").GetBoolean());
        Assert.StartsWith("canary box-a: rolled_back: the model did not load", report.GetProperty("reason").GetString());
        Assert.Equal("rolled_back", Device(report, "box-a").GetProperty("outcome").GetString());
        Assert.Equal("not_started", Device(report, "box-b").GetProperty("outcome").GetString());
        Assert.Equal("not_started", Device(report, "box-c").GetProperty("outcome").GetString());
        Assert.Contains("stopped: canary box-a: rolled_back", r.Stderr);

        Assert.Equal("factory", await a.Served()); // rolled back to the configured model
        foreach (var other in new[] { b, c })
        {
            Assert.Equal("factory", await other.Served());
            Assert.Null(other.Store.Active);
            Assert.False(File.Exists(other.Dir.File("state/rollouts.json"))); // never handled a rollout
        }
        Assert.Empty(await RetainedCommands(broker)); // nothing left for the others to pick up later
    }

    [MosquittoFact]
    public async Task A_canary_under_min_score_stops_the_rollout()
    {
        using var broker = new Mosquitto();
        using var inputs = new BundleInputs();
        await using var a = new FleetDevice("kiosk-1", broker, inputs);
        await using var b = new FleetDevice("kiosk-2", broker, inputs);
        foreach (var d in new[] { a, b }) await d.Start();
        await WaitHealthy(broker, a, b);
        // The device's own bar is 0 (it installs whatever the score); the rollout's is 0.5, and a random tiny model answers nothing exactly.
        File.WriteAllText(inputs.Dir.File("health.jsonl"), "{\"prompt\": \"Capital of France?\", \"expected\": \"Paris\"}\n");
        string scored = inputs.Dir.File("scored.etb");
        var created = CliRunner.Run("bundle", "create", "--model", inputs.Model, "--config", inputs.Author, "--profile", "x86-64-generic", "--version", "2.0.0",
            "--key", inputs.Key, "--health-set", inputs.Dir.File("health.jsonl"), "--health-threshold", "0", "--out", scored);
        Assert.True(created.ExitCode == 0, created.Stderr);

        var unscored = CliRunner.Run(RolloutArgs(broker, inputs, inputs.Create("2.0.0"), "kiosk-*", 1, "--min-score", "0.5"));
        Assert.Equal(1, unscored.ExitCode);
        Assert.Contains("--min-score needs a bundle with a scored health set", unscored.Stderr);

        var r = CliRunner.Run(RolloutArgs(broker, inputs, scored, "kiosk-*", 1, "--min-score", "0.5"));
        Assert.Equal(1, r.ExitCode);
        var report = JsonDocument.Parse(r.Stdout).RootElement;
        Assert.True(report.GetProperty("stopped").GetBoolean());
        var canary = Device(report, "kiosk-1");
        Assert.Equal("below_min_score", canary.GetProperty("outcome").GetString());
        Assert.Equal(0.0, canary.GetProperty("score").GetDouble());
        Assert.Equal("not_started", Device(report, "kiosk-2").GetProperty("outcome").GetString());
        Assert.Null(b.Store.Active);
        Assert.Empty(await RetainedCommands(broker));
    }

    [MosquittoFact]
    public async Task A_device_refuses_a_download_that_is_not_what_the_rollout_announced()
    {
        using var broker = new Mosquitto();
        using var inputs = new BundleInputs();
        await using var device = new FleetDevice("solo", broker, inputs);
        await device.Start();
        await WaitHealthy(broker, device);
        string bundle = inputs.Create("2.0.0");
        long size = new FileInfo(bundle).Length;

        var answers = new ConcurrentDictionary<string, RolloutResult>();
        using var client = new MqttClientFactory().CreateMqttClient();
        client.ApplicationMessageReceivedAsync += e =>
        {
            if (RolloutResult.Parse(e.ApplicationMessage.Payload.ToArray()) is { } result) answers[result.RolloutId] = result;
            return Task.CompletedTask;
        };
        await FleetBroker.ConnectAsync(client, FleetBroker.Options(Connection(broker) with { SessionExpirySeconds = 0 }, o => o.WithCleanStart(true)), broker.Url, default);
        await client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(FleetProtocol.AllRolloutResults(Fleet), MqttQualityOfServiceLevel.AtLeastOnce).Build());

        async Task<RolloutResult> Send(string id, string sha256, long announced)
        {
            var command = new RolloutCommand { RolloutId = id, Url = bundle, Sha256 = sha256, Size = announced, Version = "2.0.0" };
            await client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(FleetProtocol.RolloutTopic(Fleet, "solo")).WithPayload(command.ToJson())
                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).WithRetainFlag().Build());
            for (int i = 0; i < 1200 && !answers.ContainsKey(id); i++) await Task.Delay(50);
            return answers.TryGetValue(id, out var answer) ? answer : throw new TimeoutException($"no answer to {id}");
        }

        var wrongHash = await Send("wrong-hash", new string('0', 64), size);
        Assert.Equal(RolloutResult.Failed, wrongHash.Outcome);
        Assert.Equal("sha256_mismatch", wrongHash.Code);
        var shortSize = await Send("short-size", new string('0', 64), size - 100);
        Assert.Equal("size_mismatch", shortSize.Code);
        Assert.Contains($"more than the announced {size - 100} bytes", shortSize.Reason);
        Assert.Null(device.Store.Active);
        Assert.Equal("factory", await device.Served());
        Assert.Empty(Directory.GetFiles(device.Dir.File("state/incoming"))); // nothing left aside
        await client.TryDisconnectAsync();
    }
}
