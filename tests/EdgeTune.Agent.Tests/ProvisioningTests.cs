using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text.RegularExpressions;
using EdgeTune.Testing;

namespace EdgeTune.Agent.Tests;

/// <summary>Runs only where systemd-analyze exists (Debian: apt-get install systemd).</summary>
public sealed class SystemdAnalyzeFactAttribute : FactAttribute
{
    public static readonly string? Binary = new[] { "/usr/bin/systemd-analyze", "/bin/systemd-analyze" }.FirstOrDefault(File.Exists);

    public SystemdAnalyzeFactAttribute()
    {
        if (Binary is null) Skip = "systemd-analyze is not installed (Debian: apt-get install systemd), so the unit was not verified";
    }
}

/// <summary>The shipped unit and configuration (device/EdgeTune.Agent/deploy), as firmware-tools/provision.sh installs them.</summary>
public sealed partial class ProvisioningTests
{
    private static string Deploy(string name)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "device", "EdgeTune.Agent", "deploy", name);
            if (File.Exists(candidate)) return candidate;
        }
        throw new FileNotFoundException($"device/EdgeTune.Agent/deploy/{name} not found above {AppContext.BaseDirectory}");
    }

    [SystemdAnalyzeFact]
    public void The_shipped_unit_passes_systemd_analyze_verify()
    {
        using var dir = new TempDir();
        // verify also checks that ExecStart's program exists; the agent is not installed here, so point it at one that is.
        string unit = File.ReadAllText(Deploy("edgetune-agent.service"));
        Assert.Matches(ExecStart(), unit);
        File.WriteAllText(dir.File("edgetune-agent.service"), ExecStart().Replace(unit, "ExecStart=/bin/true --config /etc/edgetune/agent.toml"));
        var info = new ProcessStartInfo(SystemdAnalyzeFactAttribute.Binary!) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in new[] { "verify", "--man=no", dir.File("edgetune-agent.service") }) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        string output = process.StandardError.ReadToEnd() + process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0 && output.Trim().Length == 0, $"systemd-analyze verify: exit {process.ExitCode}: {output}");
        foreach (var line in new[] { "Type=notify", "WatchdogSec=", "StateDirectory=edgetune", "ProtectSystem=strict", "User=edgetune" })
            Assert.Contains(line, unit);
    }

    /// <summary>
    /// The bug this fixes: field_log.path = "data/field.db" resolved next to the configuration, in /etc, which is
    /// read-only under ProtectSystem. Here the agent starts as the unit starts it (its --config path, $STATE_DIRECTORY
    /// as StateDirectory= sets it), with both mapped into a temporary root, and the field log lands in the state directory.
    /// </summary>
    [Fact]
    public async Task The_agent_started_with_the_units_paths_keeps_its_field_log_in_the_state_directory()
    {
        using var root = new TempDir();
        string unit = File.ReadAllText(Deploy("edgetune-agent.service"));
        string configPath = ExecStart().Match(unit).Groups["config"].Value;
        string stateDir = "/var/lib/" + Regex.Match(unit, @"^StateDirectory=(\S+)", RegexOptions.Multiline).Groups[1].Value;
        string Rooted(string absolute) => Path.Combine(root.Path, absolute.TrimStart('/'));

        int port = AgentProcess.FreePort();
        string config = File.ReadAllText(Deploy("agent.toml"))
            .Replace("127.0.0.1:8080", $"127.0.0.1:{port}", StringComparison.Ordinal)
            .Replace("\"/", $"\"{root.Path}/", StringComparison.Ordinal); // the configuration's absolute paths, under the root
        Directory.CreateDirectory(Path.GetDirectoryName(Rooted(configPath))!);
        File.WriteAllText(Rooted(configPath), config);
        Directory.CreateDirectory(Rooted(stateDir) + "/factory");
        TinyAgentModel.Write(Rooted(stateDir) + "/factory", "model.gguf");
        foreach (var scope in new[] { "chat", "fleet", "admin" }) // the sample's [[server.tokens]] files, as provisioning writes them
            File.WriteAllText(Rooted($"/etc/edgetune/{scope}.token"), $"{scope}-token-{Guid.NewGuid():N}\n");

        using var agent = new AgentChild(new Dictionary<string, string> { ["STATE_DIRECTORY"] = Rooted(stateDir), ["EDGETUNE_AGENT_TOKEN"] = TinyAgentModel.Token }, "--config", Rooted(configPath));
        using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(60) };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", TinyAgentModel.Token);
        await AgentFixture.WaitReady(client);
        var (status, _) = await client.PostJson("/v1/chat/completions", new { max_tokens = 2, messages = new[] { new { role = "user", content = "hi" } } });
        Assert.Equal(200, status);
        await agent.Kill();

        Assert.True(File.Exists(Path.Combine(Rooted(stateDir), "data", "field.db")), "the field log is not under the state directory");
        Assert.False(Directory.Exists(Path.Combine(Path.GetDirectoryName(Rooted(configPath))!, "data")), "the agent wrote next to its configuration (/etc)");
    }

    [GeneratedRegex(@"^ExecStart=\S+ --config (?<config>\S+)$", RegexOptions.Multiline)]
    private static partial Regex ExecStart();
}

/// <summary>SIGKILL of a command-line install at each point of the switch: the device serves afterwards.</summary>
public sealed class PowerLossTests
{
    [Theory]
    [InlineData("unpack", "v1")]     // half-unpacked inactive slot: the old one serves
    [InlineData("switch", "v1")]     // trial recorded, link not yet swapped: the old one serves
    [InlineData("switched", "v2")]   // link swapped, not confirmed: the new one serves, passes its health check, is marked good
    public async Task Sigkill_during_an_install_leaves_a_slot_that_serves_after_restart(string point, string served)
    {
        using var device = new BundleDevice();
        string bundle = device.Bundle("2.0.0", "v2");
        using (var install = new AgentChild(new Dictionary<string, string> { [EdgeTune.Agent.Bundles.BundleInstaller.PauseVariable] = point },
            "install", bundle, "--config", device.ConfigPath))
        {
            await install.WaitForLine($"paused at {point}");
            await install.Kill();
        }

        using var agent = new AgentChild(null, "--config", device.ConfigPath);
        using var client = device.Client();
        await AgentFixture.WaitReady(client);
        var (status, body) = await client.PostJson("/v1/chat/completions", new { max_tokens = 2, messages = new[] { new { role = "user", content = "hi" } } });
        Assert.Equal(200, status);
        Assert.Equal(served, body.GetProperty("model").GetString());

        var store = new EdgeTune.Agent.Bundles.SlotStore(device.StateDir);
        if (served == "v2")
        {
            for (int i = 0; i < 600 && store.Pending; i++) await Task.Delay(100); // the post-restart health check
            Assert.False(store.Pending);
            Assert.Equal("a", store.Read().Good);
        }
        await agent.Kill();

        // And the next install completes normally.
        var (code, output) = AgentProcess.Run("install", device.Bundle("3.0.0", "v3"), "--config", device.ConfigPath);
        Assert.True(code == 0, output);
        Assert.Contains("installed 3.0.0", output);
    }
}
