using System.Net.Http.Json;
using System.Text.Json;
using EdgeTune.Agent.Bundles;
using EdgeTune.Agent.Config;
using Microsoft.AspNetCore.Builder;

namespace EdgeTune.Agent.Tests;

/// <summary>Installs through the running agent (POST /v1/admin/bundles): the real agent and llama.cpp, tiny models.</summary>
public sealed class BundleInstallTests
{
    private static async Task<WebApplication> StartAgent(BundleDevice device)
    {
        var app = AgentApp.Build(BundleBoot.Load(device.ConfigPath, _ => { }));
        await app.StartAsync();
        using var client = device.Client();
        await AgentFixture.WaitReady(client);
        return app;
    }

    private static async Task<(int Status, JsonElement Body)> Install(HttpClient client, string bundle, bool allowDowngrade = false)
    {
        using var content = new StreamContent(File.OpenRead(bundle));
        using var response = await client.PostAsync("/v1/admin/bundles" + (allowDowngrade ? "?allow_downgrade=true" : ""), content);
        return ((int)response.StatusCode, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone());
    }

    private static async Task<string> ServedModel(HttpClient client)
    {
        var (status, body) = await client.PostJson("/v1/chat/completions", new { max_tokens = 3, temperature = 0, messages = new[] { new { role = "user", content = "hi" } } });
        Assert.Equal(200, status);
        return body.GetProperty("model").GetString()!;
    }

    private static async Task<string> FieldData(HttpClient client) => await client.GetStringAsync("/v1/field-data?after=0&limit=10000");

    [Fact]
    public async Task A_signed_bundle_installs_and_the_new_model_answers_and_the_field_log_is_untouched()
    {
        using var device = new BundleDevice();
        await using var app = await StartAgent(device);
        using var client = device.Client();
        Assert.Equal("v1", await ServedModel(client));
        Assert.Equal("v1", await ServedModel(client));
        string before = await FieldData(client);

        var (status, body) = await Install(client, device.Bundle("2.0.0", "v2"));
        Assert.Equal(200, status);
        Assert.Equal("installed", body.GetProperty("outcome").GetString());
        Assert.Equal("a", body.GetProperty("slot").GetString());
        Assert.Equal("v2", await ServedModel(client));
        string after = await FieldData(client);
        Assert.StartsWith(before, after); // every record from before, byte for byte, then the new one
        Assert.Equal(3, after.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);

        // A second install goes to the other slot.
        (status, body) = await Install(client, device.Bundle("2.1.0", "v3"));
        Assert.Equal("installed", body.GetProperty("outcome").GetString());
        Assert.Equal("b", body.GetProperty("slot").GetString());
        Assert.Equal("v3", await ServedModel(client));
        string metrics = await client.GetStringAsync("/metrics");
        Assert.Contains("edgetune_bundle_installs_total{outcome=\"installed\"} 2", metrics);
        Assert.Contains("edgetune_bundle_active{slot=\"b\",version=\"2.1.0\",confirmed=\"1\"} 1", metrics);
    }

    [Fact]
    public async Task A_bundle_whose_canary_fails_rolls_back_and_the_old_model_answers()
    {
        // A canary of some 900 characters: it fits a 2048-token context, not a 256-token one (llama.cpp's smallest).
        using var device = new BundleDevice(canary: string.Join(' ', Enumerable.Range(0, 150).Select(i => $"w{i}")));
        await using var app = await StartAgent(device);
        using var client = device.Client();
        Assert.Equal("installed", (await Install(client, device.Bundle("1.0.0", "good", context: 2048))).Body.GetProperty("outcome").GetString());
        await ServedModel(client);
        string before = await FieldData(client);

        // The model loads; the canary does not fit its context, so the bundle is not healthy.
        var (status, body) = await Install(client, device.Bundle("2.0.0", "cramped", context: 256));
        Assert.Equal(422, status);
        Assert.Equal("rolled_back", body.GetProperty("outcome").GetString());
        Assert.Equal("health_check_failed", body.GetProperty("code").GetString());
        Assert.Contains("the canary prompt has", body.GetProperty("reason").GetString());
        Assert.Equal("good", await ServedModel(client));
        Assert.StartsWith(before, await FieldData(client));
        string metrics = await client.GetStringAsync("/metrics");
        Assert.Contains("edgetune_bundle_installs_total{outcome=\"rolled_back\"} 1", metrics);
        Assert.Contains("edgetune_bundle_last_install{outcome=\"rolled_back\",code=\"health_check_failed\",reason=\"the canary prompt has", metrics);
        Assert.Contains("edgetune_bundle_active{slot=\"a\",version=\"1.0.0\",confirmed=\"1\"} 1", metrics);
    }

    [Fact]
    public async Task A_model_that_does_not_load_rolls_back_to_the_configured_model()
    {
        using var device = new BundleDevice();
        await using var app = await StartAgent(device);
        using var client = device.Client();
        // Signed and hashed correctly, but not a GGUF: only loading it shows the problem.
        var (status, body) = await Install(client, device.Bundle("2.0.0", "broken", modelBytes: new byte[4096]));
        Assert.Equal(422, status);
        Assert.Equal("rolled_back", body.GetProperty("outcome").GetString());
        Assert.Equal("model_load_failed", body.GetProperty("code").GetString());
        Assert.StartsWith("the model did not load", body.GetProperty("reason").GetString());
        Assert.Equal("v1", await ServedModel(client));
        Assert.Null(new SlotStore(device.StateDir).Active);
    }

    [Fact]
    public async Task Refusals_name_their_reason_and_switch_nothing()
    {
        using var device = new BundleDevice();
        await using var app = await StartAgent(device);
        using var client = device.Client();
        Assert.Equal(200, (await Install(client, device.Bundle("2.0.0", "v2"))).Status);

        async Task Refused(string bundle, string code, string message, bool allowDowngrade = false)
        {
            var (status, body) = await Install(client, bundle, allowDowngrade);
            Assert.Equal(422, status);
            Assert.Equal("refused", body.GetProperty("outcome").GetString());
            Assert.Equal(code, body.GetProperty("code").GetString());
            Assert.Contains(message, body.GetProperty("reason").GetString());
            Assert.Equal("v2", await ServedModel(client));
            Assert.Equal("a", new SlotStore(device.StateDir).Active);
        }

        await Refused(device.Bundle("3.0.0", "other", board: "jetson-xavier-nx"), "wrong_board", "built for board 'jetson-xavier-nx', this device is 'test-board'");
        await Refused(device.Bundle("1.0.0", "old"), "downgrade", "version 1.0.0 is older than the installed 2.0.0");
        await Refused(device.Bundle("3.0.0", "unsigned", sign: false), "unsigned", "the bundle is not signed");
        using (var stranger = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256))
            await Refused(device.Bundle("3.0.0", "stranger", signer: stranger), "untrusted", "which is not trusted");

        string tampered = device.Bundle("3.0.0", "tampered");
        byte[] bytes = File.ReadAllBytes(tampered);
        bytes[^2048] ^= 0x40; // inside the model's tensor data
        File.WriteAllBytes(tampered, bytes);
        await Refused(tampered, "tampered", "does not match the manifest");

        string oversize = device.Bundle("3.0.0", "padded");
        File.AppendAllText(oversize, new string('\0', 1 << 16));
        await Refused(oversize, "oversize", "larger than its manifest accounts for");

        // The same downgrade, asked for on purpose.
        var (okStatus, okBody) = await Install(client, device.Bundle("1.0.0", "old"), allowDowngrade: true);
        Assert.Equal(200, okStatus);
        Assert.Equal("old", await ServedModel(client));
        Assert.Equal("b", okBody.GetProperty("slot").GetString());
    }

    [Fact]
    public async Task The_admin_endpoint_needs_the_token()
    {
        using var device = new BundleDevice();
        await using var app = await StartAgent(device);
        using var anonymous = new HttpClient { BaseAddress = device.Client().BaseAddress };
        using var content = new StreamContent(File.OpenRead(device.Bundle("2.0.0", "v2")));
        using var response = await anonymous.PostAsync("/v1/admin/bundles", content);
        Assert.Equal(401, (int)response.StatusCode);
        Assert.Null(new SlotStore(device.StateDir).Active);
    }

    [Fact]
    public void Boot_counting_starts_the_previous_slot_after_the_agent_died_boot_attempts_times()
    {
        using var device = new BundleDevice(bootAttempts: 2);
        var store = new SlotStore(device.StateDir);
        // Slot a is good (1.0.0); slot b (2.0.0) was switched to and never confirmed: the state an install leaves when the agent dies after the switch.
        Unpack(device, store, "a", device.Bundle("1.0.0", "good"));
        Unpack(device, store, "b", device.Bundle("2.0.0", "new"));
        store.Write(new SlotState { Good = "a", Attempts = 1 });
        store.Switch("b");

        var log = new List<string>();
        Assert.Equal("new", BundleBoot.Load(device.ConfigPath, log.Add).Model.Name); // second start on b, died again
        Assert.Equal(2, store.Read().Attempts);
        Assert.Equal("good", BundleBoot.Load(device.ConfigPath, log.Add).Model.Name); // third start: back to a
        Assert.Equal("a", store.Active);
        Assert.False(store.Pending);
        Assert.Equal("rolled_back", store.Read().LastOutcome);
        Assert.Contains(log, l => l.Contains("the agent stopped 2 times on slot b before its health check confirmed it", StringComparison.Ordinal));
    }

    internal static void Unpack(BundleDevice device, SlotStore store, string slot, string bundle)
    {
        string folder = store.SlotPath(slot);
        Directory.CreateDirectory(folder);
        using var reader = EdgeTune.Bundles.BundleReader.Open(bundle);
        reader.ExtractTo(folder);
        File.WriteAllBytes(Path.Combine(folder, "manifest.json"), reader.ManifestBytes);
        _ = device;
    }

    [Fact]
    public void Slot_configuration_takes_model_settings_only_and_resolves_paths_in_the_slot()
    {
        using var device = new BundleDevice();
        var store = new SlotStore(device.StateDir);
        Unpack(device, store, "a", device.Bundle("1.0.0", "slotted", context: 128));
        var config = SlotConfig.Apply(AgentConfig.Load(device.ConfigPath), store.SlotPath("a"));
        Assert.Equal("slotted", config.Model.Name);
        Assert.Equal(128, config.Model.Context);
        Assert.Equal(Path.Combine(store.SlotPath("a"), "model", "model.gguf"), config.Model.Path);
        Assert.Equal(TinyAgentModel.Token, config.Server.ApiToken); // the device's token, not the author's
        Assert.Equal(device.FieldLog, config.FieldLog.Path);
    }

    [Fact]
    public async Task Two_agents_in_one_process_install_at_the_same_time()
    {
        using var first = new BundleDevice();
        using var second = new BundleDevice();
        // Both installs reach the model load before either goes on: with one lock for the whole process, the second
        // would have been refused as busy while the first held it.
        using var bothArrived = new CountdownEvent(2);
        using var firstServer = new MeetingSlotServer(bothArrived);
        using var secondServer = new MeetingSlotServer(bothArrived);
        Task<InstallResult> Install(BundleDevice device, ISlotServer server)
        {
            var config = AgentConfig.Load(device.ConfigPath);
            var installer = new BundleInstaller(config, server, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, new BundleStatus(new SlotStore(config.Bundles.StateDir)));
            string bundle = device.Bundle("2.0.0", "v2");
            return Task.Run(() => installer.InstallAsync(bundle, allowDowngrade: false, CancellationToken.None));
        }
        var results = await Task.WhenAll(Install(first, firstServer), Install(second, secondServer));
        Assert.All(results, r => Assert.True(r.Ok, $"{r.Outcome} ({r.Code}): {r.Reason}"));
        Assert.Equal("a", new SlotStore(first.StateDir).Active);
        Assert.Equal("a", new SlotStore(second.StateDir).Active);
    }

    /// <summary>Loads the slot's model itself once every install has arrived here (or after 30 s, so the old behaviour fails rather than hangs).</summary>
    private sealed class MeetingSlotServer(CountdownEvent arrivals) : ISlotServer, IDisposable
    {
        private readonly OfflineSlotServer _inner = new(c => Serving.ModelHost.Open(c.Model));

        public async Task<EdgeTune.Inference.IInferenceModel> ServeAsync(AgentConfig config, CancellationToken cancellationToken)
        {
            if (!arrivals.IsSet) arrivals.Signal();
            await Task.Run(() => arrivals.Wait(TimeSpan.FromSeconds(30), cancellationToken), cancellationToken);
            return await _inner.ServeAsync(config, cancellationToken);
        }

        public Task<EdgeTune.Inference.GenerationResult> ExclusiveAsync(Func<Task<EdgeTune.Inference.GenerationResult>> generate, CancellationToken cancellationToken) =>
            _inner.ExclusiveAsync(generate, cancellationToken);

        public void Dispose() => _inner.Dispose();
    }
}
