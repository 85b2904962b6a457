using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;
using EdgeTune.Agent.Api;
using EdgeTune.Formats.FieldData;
using EdgeTune.Testing;

namespace EdgeTune.Agent.Tests;

/// <summary>The agent as its own process (edgetune-agent.dll next to the tests), for kill -9 and the export verb.</summary>
internal static class AgentProcess
{
    public static string Dll => Path.Combine(AppContext.BaseDirectory, "edgetune-agent.dll");

    public static Process Start(params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(Dll);
        foreach (var a in args) info.ArgumentList.Add(a);
        var process = Process.Start(info)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    public static (int ExitCode, string Output) Run(params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(Dll);
        foreach (var a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, stdout + stderr.Result);
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

public sealed class DurabilityTests
{
    [Fact]
    public async Task Sigkill_mid_burst_loses_no_answered_record()
    {
        using var dir = new TempDir();
        string model = TinyAgentModel.Write(dir.Path);
        int port = AgentProcess.FreePort();
        string config = TinyAgentModel.WriteConfig(dir.Path, model, $"http://127.0.0.1:{port}", queueCapacity: 256);
        using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(30) };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", TinyAgentModel.Token);

        var agent = AgentProcess.Start("--config", config);
        var answered = new ConcurrentBag<string>();
        try
        {
            await AgentFixture.WaitReady(client);
            using var stop = new CancellationTokenSource();
            int sent = 0;
            async Task Worker()
            {
                while (!stop.IsCancellationRequested && Interlocked.Increment(ref sent) <= 200)
                {
                    try
                    {
                        using var response = await client.PostAsJsonAsync("/v1/chat/completions",
                            new { model = "tiny", max_tokens = 3, temperature = 0, messages = new[] { new { role = "user", content = "burst" } } }, stop.Token);
                        if (response.StatusCode != HttpStatusCode.OK) continue;
                        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync(stop.Token)).RootElement;
                        answered.Add(body.GetProperty("id").GetString()!);
                    }
                    catch (Exception e) when (e is HttpRequestException or OperationCanceledException or IOException or JsonException)
                    {
                        // Requests in flight when the process dies fail; they were never acknowledged.
                    }
                }
            }
            var workers = Enumerable.Range(0, 6).Select(_ => Task.Run(Worker)).ToArray();
            var deadline = Stopwatch.StartNew();
            while (answered.Count < 40 && deadline.Elapsed < TimeSpan.FromSeconds(30)) await Task.Delay(5);
            agent.Kill(); // SIGKILL on Linux
            await agent.WaitForExitAsync();
            stop.Cancel();
            await Task.WhenAll(workers);
            Assert.True(answered.Count >= 40, $"only {answered.Count} answers before the kill");
            Assert.True(answered.Count < 200, "the burst of 200 finished before the kill; nothing was in flight");
        }
        finally
        {
            if (!agent.HasExited) agent.Kill();
            agent.Dispose();
        }

        // Offline export with the agent stopped.
        string file = Path.Combine(dir.Path, "export.jsonl");
        var (code, output) = AgentProcess.Run("export", "--config", config, "--after", "0", "--out", file);
        Assert.True(code == 0, output);
        var exported = File.ReadAllLines(file).Select(l => FieldExample.FromJsonLine(l)!.Metadata.Id).ToHashSet();
        Assert.Subset(exported, answered.ToHashSet());
        Assert.Contains($"next cursor: {exported.Count}", output, StringComparison.Ordinal);

        // Restarted, the agent exports the same records over HTTP; an export from the last cursor is empty.
        var restarted = AgentProcess.Start("--config", config);
        try
        {
            await AgentFixture.WaitReady(client);
            var (all, next) = await client.FieldData(0, 10_000);
            Assert.Equal(exported, all.Select(e => e.Metadata.Id).ToHashSet());
            Assert.Empty((await client.FieldData(next)).Examples);
        }
        finally
        {
            restarted.Kill();
            await restarted.WaitForExitAsync();
            restarted.Dispose();
        }
    }
}

public sealed class CommandLineTests
{
    [Fact]
    public void Unknown_key_is_refused_with_file_line_and_column()
    {
        using var dir = new TempDir();
        string model = TinyAgentModel.Write(dir.Path);
        string config = TinyAgentModel.WriteConfig(dir.Path, model);
        File.AppendAllText(config, "\nsampling_rate = 0.5\n");
        var (code, output) = AgentProcess.Run("--config", config);
        Assert.Equal(1, code);
        Assert.Matches(@"agent\.toml:\d+:1: field_log\.sampling_rate: unknown key", output);
    }

    [Fact]
    public void Missing_model_file_refuses_to_start_with_one_line()
    {
        using var dir = new TempDir();
        string config = TinyAgentModel.WriteConfig(dir.Path, Path.Combine(dir.Path, "absent.gguf"));
        var (code, output) = AgentProcess.Run("--config", config);
        Assert.Equal(1, code);
        Assert.Single(output.Trim().Split('\n'));
        Assert.Matches(@"agent\.toml:\d+:\d+: model\.path: no such file: .*absent\.gguf", output);
    }

    [Fact]
    public void Config_errors_name_the_place()
    {
        using var dir = new TempDir();
        string model = TinyAgentModel.Write(dir.Path);
        string config = TinyAgentModel.WriteConfig(dir.Path, model);
        File.WriteAllText(config, File.ReadAllText(config).Replace("context = 256", "context = \"big\""));
        var e = Assert.Throws<EdgeTune.Agent.Config.AgentConfigException>(() => EdgeTune.Agent.Config.AgentConfig.Load(config));
        Assert.Matches(@"agent\.toml:\d+:1: model\.context: expected an integer, found the string ""big""", e.Message);
        File.WriteAllText(config, "[model]\npath = \"x\"\n[extra]\n");
        e = Assert.Throws<EdgeTune.Agent.Config.AgentConfigException>(() => EdgeTune.Agent.Config.AgentConfig.Load(config, checkFiles: false));
        Assert.Contains("extra: unknown section", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_sample_config_is_valid()
    {
        string root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "EdgeTune.sln"))) root = Path.GetDirectoryName(root)!;
        var config = EdgeTune.Agent.Config.AgentConfig.Load(Path.Combine(root, "device/EdgeTune.Agent/deploy/agent.toml"), checkFiles: false);
        Assert.Equal("model", config.Model.Name);
        Assert.Equal(2048, config.Model.Context);
        Assert.Empty(config.Model.Adapters);
        Assert.Equal([Scope.Chat, Scope.Fleet, Scope.Admin], config.Server.Tokens.Select(t => t.Scopes));
        Assert.Equal(EdgeTune.Agent.FieldLog.Redactor.DefaultRules, config.FieldLog.Redact);
        Assert.Equal("jetson-orin-nano-8gb", config.Bundles.Board);
        Assert.Equal("/etc/edgetune/trusted", config.Bundles.Trust);
        Assert.Equal("/var/lib/edgetune/data/field.db", config.FieldLog.Path); // under the state directory, not /etc
    }

    [Fact]
    public void The_models_chat_template_is_applied()
    {
        using var dir = new TempDir();
        string model = TinyAgentModel.Write(dir.Path);
        var config = EdgeTune.Agent.Config.AgentConfig.Load(TinyAgentModel.WriteConfig(dir.Path, model));
        using var runtime = EdgeTune.Agent.Serving.ModelHost.Open(config.Model);
        string prompt = runtime.ApplyChatTemplate([new("system", "s"), new("user", "hi")]);
        Assert.Equal("<|im_start|>system\ns<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", prompt);
    }
}

public sealed class ExportCommandTests
{
    private static CompletionRecordFactory Records => new();

    internal sealed class CompletionRecordFactory
    {
        public EdgeTune.Agent.FieldLog.CompletionRecord this[int i] => new($"id-{i}", DateTimeOffset.UtcNow, "dev", "chat", "tiny", null,
            [new FieldMessage("user", $"q{i}")], $"a{i}", new Dictionary<string, object?> { ["max_tokens"] = 4 }, 10, 1, 5, 4, "length");
    }

    [Theory]
    [InlineData("export", "--after", "abc", "--out", "x.jsonl", "--after: 'abc' is not a whole number (0 or more)")]
    [InlineData("export", "--limit", "0", "--out", "x.jsonl", "--limit: '0' is not a whole number of at least 1")]
    [InlineData("export", "--after", "-1", "--out", "x.jsonl", "--after: '-1' is not a whole number (0 or more)")]
    [InlineData("ack", "--through", "1e3", "", "", "--through: '1e3' is not a whole number (0 or more)")]
    [InlineData("export", "--after", "1", "--bogus", "x", "unknown argument '--bogus'")]
    public void A_bad_number_or_argument_is_one_line_and_exit_2(string verb, string k1, string v1, string k2, string v2, string message)
    {
        using var dir = new TempDir();
        string config = TinyAgentModel.WriteConfig(dir.Path, "m.gguf");
        var args = new List<string> { verb, "--config", config, k1, v1 };
        if (k2.Length > 0) args.AddRange([k2, k2 == "--out" ? dir.File(v2) : v2]);
        var (code, output) = AgentProcess.Run([.. args]);
        Assert.Equal(2, code);
        Assert.Equal($"edgetune-agent: {message} (see edgetune-agent --help)", output.Trim());
    }

    [Fact]
    public void Help_describes_every_verb()
    {
        var (code, output) = AgentProcess.Run("--help");
        Assert.Equal(0, code);
        foreach (var verb in new[] { "edgetune-agent --config", "edgetune-agent export", "edgetune-agent ack" })
            Assert.Contains(verb, output, StringComparison.Ordinal);
    }

    [Fact]
    public void Offline_export_pages_into_a_whole_file_and_ack_takes_only_the_printed_cursor()
    {
        using var dir = new TempDir();
        string config = TinyAgentModel.WriteConfig(dir.Path, "m.gguf");
        using (var store = new EdgeTune.Agent.FieldLog.FieldLogStore(dir.File("field.db")))
            for (int i = 1; i <= 5; i++) store.Add(Records[i]);
        string file = dir.File("out.jsonl");

        var (code, output) = AgentProcess.Run("export", "--config", config, "--limit", "3", "--out", file);
        Assert.True(code == 0, output);
        Assert.Equal("3 records written to " + file + "; next cursor: 3", output.Trim());
        Assert.Equal(["id-1", "id-2", "id-3"], File.ReadAllLines(file).Select(l => FieldExample.FromJsonLine(l)!.Metadata.Id));
        Assert.Empty(Directory.GetFiles(dir.Path, "*.partial"));

        // Only a cursor an export printed (or one below it) is accepted.
        (code, output) = AgentProcess.Run("ack", "--config", config, "--through", "5");
        Assert.Equal(1, code);
        Assert.Contains("cursor 5 was not handed out by an export (the highest handed out is 3)", output, StringComparison.Ordinal);
        (code, output) = AgentProcess.Run("ack", "--config", config, "--through", "3");
        Assert.True(code == 0, output);
        Assert.Equal("acknowledged through cursor 3; 2 records not yet acknowledged", output.Trim());

        // Skipping ahead reads, but hands out nothing.
        (code, output) = AgentProcess.Run("export", "--config", config, "--after", "4", "--out", file);
        Assert.True(code == 0, output);
        Assert.Equal(["id-5"], File.ReadAllLines(file).Select(l => FieldExample.FromJsonLine(l)!.Metadata.Id));
        Assert.Equal(1, AgentProcess.Run("ack", "--config", config, "--through", "5").ExitCode);
        (code, output) = AgentProcess.Run("export", "--config", config, "--after", "3", "--out", file);
        Assert.Contains("2 records written", output, StringComparison.Ordinal);
        Assert.Equal(0, AgentProcess.Run("ack", "--config", config, "--through", "5").ExitCode);
    }
}
