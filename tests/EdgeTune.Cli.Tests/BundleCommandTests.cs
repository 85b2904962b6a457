using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;
using EdgeTune.Agent;
using EdgeTune.Agent.Bundles;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Testing;
using Microsoft.AspNetCore.Builder;

namespace EdgeTune.Cli.Tests;

/// <summary>A tiny GGUF with a ChatML template, an author's agent.toml and a signing key: what 'bundle create' is given.</summary>
internal sealed class BundleInputs : IDisposable
{
    public TempDir Dir { get; } = new();
    public string Model => Dir.File("tiny.gguf");
    public string Author => Dir.File("author.toml");
    public string Key => Dir.File("release.key");
    public string Public => Dir.File("release.pub");

    public BundleInputs()
    {
        var config = new TinyLlamaConfig { Embedding = 64, Heads = 4, KvHeads = 2, FeedForward = 128, Layers = 2, ContextLength = 256, Seed = 7 };
        var vocabulary = TinyLlama.Metadata(config).Where(kv => kv.Key.StartsWith("tokenizer.", StringComparison.Ordinal)).ToList();
        vocabulary.Add(new("tokenizer.chat_template", GgufValue.String(
            "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")));
        TinyLlama.WriteGguf(Model, config, vocabulary: vocabulary);
        File.WriteAllText(Author, "[server]\napi_token = \"author-secret-0123456789\"\n[model]\npath = \"tiny.gguf\"\nname = \"shipped\"\ncontext = 256\nthreads = 2\ndefault_max_tokens = 8\n");
        Assert.Equal(0, CliRunner.Run("bundle", "keygen", "--out", Dir.File("release")).ExitCode);
    }

    public string Create(string version, string profile = "x86-64-generic", string? name = null)
    {
        string output = Dir.File($"{name ?? "b"}-{version}.etb");
        var r = CliRunner.Run("bundle", "create", "--model", Model, "--config", Author, "--profile", profile, "--version", version, "--key", Key, "--out", output);
        Assert.True(r.ExitCode == 0, r.Stderr);
        return output;
    }

    public void Dispose() => Dir.Dispose();
}

public sealed class BundleCommandTests
{
    [Fact]
    public void Keygen_create_sign_verify_inspect_as_a_user_would()
    {
        using var inputs = new BundleInputs();
        string bundle = inputs.Dir.File("b.etb");
        var created = CliRunner.RunProcess("bundle", "create", "--model", inputs.Model, "--config", inputs.Author, "--profile", "jetson-orin-nano-8gb", "--version", "1.2.0", "--out", bundle);
        Assert.Equal(0, created.ExitCode);
        Assert.Contains("version 1.2.0 for jetson-orin-nano-8gb", created.Stdout);
        Assert.Contains("unsigned", created.Stdout);

        var unsigned = CliRunner.Run("bundle", "verify", bundle, "--trust", inputs.Public);
        Assert.Equal(1, unsigned.ExitCode);
        Assert.Contains("the bundle is not signed", unsigned.Stderr);

        Assert.Equal(0, CliRunner.Run("bundle", "sign", bundle, "--key", inputs.Key).ExitCode);
        var verified = CliRunner.Run("bundle", "verify", bundle, "--trust", inputs.Dir.Path); // a folder of *.pub
        Assert.Equal(0, verified.ExitCode);
        Assert.StartsWith("ok: ", verified.Stdout);

        var inspect = CliRunner.Run("bundle", "inspect", bundle, "--json");
        Assert.Equal(0, inspect.ExitCode);
        var json = JsonDocument.Parse(inspect.Stdout).RootElement;
        var manifest = json.GetProperty("manifest");
        Assert.Equal("jetson-orin-nano-8gb", manifest.GetProperty("compatible").GetString());
        Assert.Equal("model/tiny.gguf", manifest.GetProperty("model").GetString());
        Assert.Equal(EdgeTune.Bundles.BundleKeys.LoadPublic(inputs.Public).Id, json.GetProperty("signature").GetProperty("key_id").GetString());
        Assert.Contains(manifest.GetProperty("files").EnumerateArray(), f => f.GetProperty("path").GetString() == "agent.toml");

        // The private key and the author's token never travel.
        string text = File.ReadAllText(bundle);
        Assert.DoesNotContain("PRIVATE KEY", text);
        Assert.DoesNotContain("author-secret", text);
        var table = CliRunner.Run("bundle", "inspect", bundle);
        Assert.Equal(0, table.ExitCode);
        Assert.Contains("compatible   jetson-orin-nano-8gb", table.Stdout);
        Assert.Contains("model/tiny.gguf", table.Stdout);
    }

    [Fact]
    public void Bad_input_is_one_line_and_exit_1()
    {
        using var inputs = new BundleInputs();
        var missing = CliRunner.Run("bundle", "create", "--model", inputs.Dir.File("nope.gguf"), "--config", inputs.Author, "--profile", "x86-64-generic", "--version", "1.0.0", "--out", inputs.Dir.File("x.etb"));
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("nope.gguf: no such model file or folder", missing.Stderr);
        Assert.False(File.Exists(inputs.Dir.File("x.etb")));

        var version = CliRunner.Run("bundle", "create", "--model", inputs.Model, "--config", inputs.Author, "--profile", "x86-64-generic", "--version", "latest", "--out", inputs.Dir.File("x.etb"));
        Assert.Equal(1, version.ExitCode);
        Assert.Contains("'latest' is not a version", version.Stderr);

        File.WriteAllText(inputs.Dir.File("junk.etb"), "not a tar");
        var junk = CliRunner.Run("bundle", "inspect", inputs.Dir.File("junk.etb"));
        Assert.Equal(1, junk.ExitCode);
        Assert.Single(junk.Stderr.Trim().Split('\n'));

        Assert.Equal(1, CliRunner.Run("bundle", "sign", inputs.Create("1.0.0"), "--key", inputs.Public).ExitCode);
        Assert.Equal(2, CliRunner.Run("bundle", "create", "--model", inputs.Model).ExitCode);
        Assert.Equal(1, CliRunner.Run("bundle", "keygen", "--out", inputs.Dir.File("release")).ExitCode); // never overwrites a key
    }
}

/// <summary>A real OpenSSH server on a loopback port with a throw-away host key and user key; skips where sshd is absent.</summary>
public sealed class SshdFactAttribute : FactAttribute
{
    public static readonly string? Sshd = new[] { "/usr/sbin/sshd", "/usr/bin/sshd" }.FirstOrDefault(File.Exists);

    public SshdFactAttribute()
    {
        if (Sshd is null || !File.Exists("/usr/bin/ssh-keygen")) Skip = "OpenSSH's sshd is not installed (Debian: apt-get install openssh-server), so deploy over SSH was not tried";
    }
}

internal sealed class SshServer : IDisposable
{
    private readonly Process _process;
    public TempDir Dir { get; } = new();
    public int Port { get; }
    public string UserKey => Dir.File("user_key");
    public string KnownHosts => Dir.File("known_hosts");
    public string User => Environment.UserName;

    public SshServer()
    {
        Keygen(Dir.File("host_key"));
        Keygen(UserKey);
        File.Copy(UserKey + ".pub", Dir.File("authorized_keys"));
        Port = FreePort();
        var hostKey = File.ReadAllText(Dir.File("host_key.pub")).Split(' ');
        File.WriteAllText(KnownHosts, $"[127.0.0.1]:{Port} {hostKey[0]} {hostKey[1]}\n");
        File.WriteAllText(Dir.File("sshd_config"), $"""
            Port {Port}
            ListenAddress 127.0.0.1
            HostKey {Dir.File("host_key")}
            PidFile {Dir.File("sshd.pid")}
            AuthorizedKeysFile {Dir.File("authorized_keys")}
            PubkeyAuthentication yes
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            PermitRootLogin prohibit-password
            StrictModes no
            UsePAM no
            Subsystem sftp internal-sftp
            LogLevel ERROR
            """);
        Directory.CreateDirectory("/run/sshd"); // the privilege-separation directory sshd insists on
        var info = new ProcessStartInfo(SshdFactAttribute.Sshd!) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in new[] { "-D", "-e", "-f", Dir.File("sshd_config") }) info.ArgumentList.Add(a);
        _process = Process.Start(info)!;
        _process.BeginErrorReadLine();
        _process.BeginOutputReadLine();
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            try { using var c = new TcpClient("127.0.0.1", Port); break; }
            catch (SocketException) when (deadline.Elapsed < TimeSpan.FromSeconds(20) && !_process.HasExited) { Thread.Sleep(50); }
        }
    }

    private static void Keygen(string path)
    {
        using var p = Process.Start(new ProcessStartInfo("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", path]) { RedirectStandardOutput = true })!;
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public void Dispose()
    {
        if (!_process.HasExited) _process.Kill();
        _process.Dispose();
        Dir.Dispose();
    }
}

/// <summary>edgetune deploy to an agent started in a temporary root, over a real sshd and over the admin endpoint.</summary>
public sealed class DeployCommandTests
{
    private sealed class Device : IAsyncDisposable
    {
        public TempDir Dir { get; } = new();
        public int Port { get; } = SshServer.FreePort();
        public string Config => Dir.File("agent.toml");
        public WebApplication App { get; private set; } = null!;
        public HttpClient Client { get; private set; } = null!;

        public async Task Start(BundleInputs inputs)
        {
            Directory.CreateDirectory(Dir.File("trusted"));
            File.Copy(inputs.Public, Dir.File("trusted/release.pub"));
            File.Copy(inputs.Model, Dir.File("factory.gguf"));
            File.WriteAllText(Config, $"""
                [server]
                listen = "http://127.0.0.1:{Port}"
                api_token = "device-token-0123456789"
                log_level = "Warning"
                [model]
                path = "factory.gguf"
                name = "factory"
                context = 256
                threads = 2
                [bundles]
                trust = "trusted"
                state_dir = "state"
                board = "x86-64-generic"
                """);
            File.WriteAllText(Dir.File("token"), "device-token-0123456789\n");
            App = AgentApp.Build(BundleBoot.Load(Config, _ => { }));
            await App.StartAsync();
            Client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{Port}"), Timeout = TimeSpan.FromSeconds(60) };
            Client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "device-token-0123456789");
            for (int i = 0; i < 600; i++)
            {
                try { if ((await Client.GetAsync("/health")).IsSuccessStatusCode) break; }
                catch (HttpRequestException) { }
                await Task.Delay(50);
            }
        }

        public async Task<string> Served()
        {
            using var response = await Client.PostAsJsonAsync("/v1/chat/completions", new { max_tokens = 2, messages = new[] { new { role = "user", content = "hi" } } });
            return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("model").GetString()!;
        }

        public async ValueTask DisposeAsync()
        {
            Client?.Dispose();
            if (App is not null) { await App.StopAsync(); await App.DisposeAsync(); }
            Dir.Dispose();
        }
    }

    private static string RemoteAgent =>
        $"{Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "/usr/bin/dotnet"} {Path.Combine(AppContext.BaseDirectory, "edgetune-agent.dll")}";

    [SshdFact]
    public async Task Deploy_over_ssh_installs_and_the_new_model_answers()
    {
        using var inputs = new BundleInputs();
        using var sshd = new SshServer();
        await using var device = new Device();
        await device.Start(inputs);
        Assert.Equal("factory", await device.Served());
        string bundle = inputs.Create("2.0.0");

        var r = CliRunner.Run("deploy", bundle, "--to", $"ssh://{sshd.User}@127.0.0.1:{sshd.Port}", "--identity", sshd.UserKey, "--known-hosts", sshd.KnownHosts,
            "--remote-agent", RemoteAgent, "--remote-config", device.Config, "--remote-dir", sshd.Dir.Path);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.Equal($"ssh://{sshd.User}@127.0.0.1:{sshd.Port}: installed 2.0.0 in slot a", r.Stdout.Trim());
        Assert.Equal("shipped", await device.Served());
        Assert.Empty(Directory.GetFiles(sshd.Dir.Path, "*.etb")); // the copy was removed

        // A host whose key is not in known_hosts is not trusted.
        File.WriteAllText(sshd.KnownHosts, "");
        var stranger = CliRunner.Run("deploy", bundle, "--to", $"ssh://{sshd.User}@127.0.0.1:{sshd.Port}", "--identity", sshd.UserKey, "--known-hosts", sshd.KnownHosts,
            "--remote-agent", RemoteAgent, "--remote-config", device.Config);
        Assert.Equal(1, stranger.ExitCode);
        Assert.Contains("is not in", stranger.Stdout);
    }

    [Fact]
    public async Task Deploy_over_the_admin_endpoint_reports_one_line_per_device()
    {
        using var inputs = new BundleInputs();
        await using var device = new Device();
        await device.Start(inputs);
        string good = inputs.Create("2.0.0");
        string wrongBoard = inputs.Create("3.0.0", profile: "jetson-orin-nano-8gb", name: "jetson");
        string to = $"http://127.0.0.1:{device.Port}";

        var ok = CliRunner.Run("deploy", good, "--to", to, "--token-file", device.Dir.File("token"));
        Assert.True(ok.ExitCode == 0, ok.Stdout + ok.Stderr);
        Assert.Equal($"{to}: installed 2.0.0 in slot a", ok.Stdout.Trim());
        Assert.Equal("shipped", await device.Served());

        var refused = CliRunner.Run("deploy", wrongBoard, "--to", to, "--to", $"http://127.0.0.1:{SshServer.FreePort()}", "--token-file", device.Dir.File("token"));
        Assert.Equal(1, refused.ExitCode);
        var lines = refused.Stdout.Trim().Split('\n');
        Assert.Equal(2, lines.Length);
        Assert.StartsWith($"{to}: refused (wrong_board): ", lines[0]);
        Assert.Contains("failed: ", lines[1]); // nothing listens there
        Assert.Equal("shipped", await device.Served());

        File.WriteAllText(device.Dir.File("bad-token"), "wrong");
        var unauthorised = CliRunner.Run("deploy", good, "--to", to, "--token-file", device.Dir.File("bad-token"));
        Assert.Equal(1, unauthorised.ExitCode);
        Assert.Contains("HTTP 401", unauthorised.Stdout);
    }
}
