using System.CommandLine;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using EdgeTune.Agent.Bundles;
using EdgeTune.Core;
using Renci.SshNet;
using Renci.SshNet.Common;

namespace EdgeTune.Cli.Commands;

/// <summary>
/// <c>edgetune deploy B.etb --to ssh://user@host[:port] | https://host:port …</c>: installs a bundle on devices. Over
/// SSH it copies the bundle (SFTP), runs <c>edgetune-agent install</c> there and reads its one-line result; over
/// HTTPS it posts the bundle to the agent's admin endpoint. One line per device; exit 0 only if every device installed.
/// </summary>
internal static class DeployCommand
{
    public static Command Create(CliConsole console)
    {
        var bundle = new Argument<string>("bundle") { Description = "The signed .etb to install" };
        var to = new Option<string[]>("--to") { Description = "A device: ssh://user@host[:port] or https://host:port (http:// for a loopback test agent); repeat for several", Required = true };
        var identity = new Option<string?>("--identity") { Description = "SSH private key for ssh:// devices (default: ~/.ssh/id_ed25519, then ~/.ssh/id_rsa)" };
        var knownHosts = new Option<string?>("--known-hosts") { Description = "OpenSSH known_hosts file the devices' host keys must be in (default: ~/.ssh/known_hosts)" };
        var tokenFile = new Option<string?>("--token-file") { Description = "File holding the agent's admin token, for https:// devices" };
        var remoteAgent = new Option<string>("--remote-agent") { Description = "The install command on ssh:// devices", DefaultValueFactory = _ => "edgetune-agent" };
        var remoteConfig = new Option<string>("--remote-config") { Description = "The agent configuration on ssh:// devices", DefaultValueFactory = _ => "/etc/edgetune/agent.toml" };
        var remoteDir = new Option<string>("--remote-dir") { Description = "Where the bundle is copied on ssh:// devices (removed afterwards)", DefaultValueFactory = _ => "/tmp" };
        var allowDowngrade = new Option<bool>("--allow-downgrade") { Description = "Install even if the device runs a newer version" };
        var command = new Command("deploy", "Install a signed bundle on devices over SSH or the agent's HTTPS admin endpoint; one line per device.\n\n" +
            "Example: edgetune deploy tuned.etb --to ssh://ops@10.0.0.21 --to ssh://ops@10.0.0.22:2222 --identity ~/.ssh/fleet\n" +
            "         edgetune deploy tuned.etb --to https://10.0.0.23:8443 --token-file admin.token")
        { bundle, to, identity, knownHosts, tokenFile, remoteAgent, remoteConfig, remoteDir, allowDowngrade };
        command.SetAction(async (parse, ct) =>
        {
            string path = parse.GetValue(bundle)!;
            if (!File.Exists(path)) throw new EdgeTuneException($"{path}: no such bundle file");
            var targets = parse.GetValue(to)!.Select(t => Uri.TryCreate(t, UriKind.Absolute, out var u) && u.Scheme is "ssh" or "https" or "http" && u.Host.Length > 0 ? u
                : throw new EdgeTuneException($"--to {t}: expected ssh://user@host[:port] or https://host:port")).ToList();
            if (targets.Any(u => u.Scheme != "ssh") && parse.GetValue(tokenFile) is null) throw new EdgeTuneException("--token-file is required for https:// devices");
            int failed = 0;
            foreach (var target in targets)
            {
                string line;
                try
                {
                    var result = target.Scheme == "ssh"
                        ? OverSsh(path, target, parse.GetValue(identity), parse.GetValue(knownHosts), parse.GetValue(remoteAgent)!, parse.GetValue(remoteConfig)!, parse.GetValue(remoteDir)!, parse.GetValue(allowDowngrade))
                        : await OverHttps(path, target, parse.GetValue(tokenFile)!, parse.GetValue(allowDowngrade), ct);
                    line = BundleEndpoints.Line(result);
                    if (!result.Ok) failed++;
                }
                catch (Exception e) when (e is EdgeTuneException or SshException or System.Net.Sockets.SocketException or HttpRequestException or IOException or TimeoutException)
                {
                    line = $"failed: {e.Message.ReplaceLineEndings(" ")}";
                    failed++;
                }
                console.Out.WriteLine($"{Display(target)}: {line}");
            }
            if (failed > 0) console.Error.WriteLine($"edgetune: {failed} of {targets.Count} devices did not install {path}");
            return failed == 0 ? CliApp.Success : CliApp.Failure;
        });
        return command;
    }

    private static string Display(Uri u) => $"{u.Scheme}://{(u.UserInfo.Length > 0 ? u.UserInfo + "@" : "")}{u.Host}{(u.IsDefaultPort ? "" : ":" + u.Port)}";

    private static InstallResult OverSsh(string bundle, Uri target, string? identity, string? knownHosts, string agent, string config, string dir, bool allowDowngrade)
    {
        string user = target.UserInfo.Length > 0 ? Uri.UnescapeDataString(target.UserInfo) : Environment.UserName;
        int port = target.Port > 0 ? target.Port : 22;
        string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        string keyPath = identity ?? new[] { ".ssh/id_ed25519", ".ssh/id_ecdsa", ".ssh/id_rsa" }.Select(p => Path.Combine(home, p)).FirstOrDefault(File.Exists)
            ?? throw new EdgeTuneException("no SSH key: pass --identity KEY");
        if (!File.Exists(keyPath)) throw new EdgeTuneException($"{keyPath}: no such SSH key");
        string hostsFile = knownHosts ?? Path.Combine(home, ".ssh", "known_hosts");
        using var key = new PrivateKeyFile(keyPath);
        var info = new ConnectionInfo(target.Host, port, user, new PrivateKeyAuthenticationMethod(user, key)) { Timeout = TimeSpan.FromSeconds(20) };
        string? hostKeyProblem = null;
        void CheckHostKey(object? sender, HostKeyEventArgs e)
        {
            e.CanTrust = KnownHosts.Contains(hostsFile, target.Host, port, e.HostKey);
            if (!e.CanTrust)
                hostKeyProblem = $"the host key of {target.Host}:{port} ({e.HostKeyName} SHA256:{e.FingerPrintSHA256}) is not in {hostsFile}; check it, then: ssh-keyscan -p {port} {target.Host} >> {hostsFile}";
        }
        string remote = $"{dir.TrimEnd('/')}/edgetune-{Guid.NewGuid():N}.etb";
        try
        {
            using (var sftp = new SftpClient(info))
            {
                sftp.HostKeyReceived += CheckHostKey;
                sftp.Connect();
                using var input = File.OpenRead(bundle);
                sftp.UploadFile(input, remote);
            }
            using var ssh = new SshClient(info);
            ssh.HostKeyReceived += CheckHostKey;
            ssh.Connect();
            try
            {
                using var run = ssh.RunCommand($"{agent} install {Quote(remote)} --config {Quote(config)}{(allowDowngrade ? " --allow-downgrade" : "")}");
                // The agent prints its one-line result on stdout when installed, on stderr otherwise.
                static string Last(string text) => text.Split('\n').LastOrDefault(l => l.Trim().Length > 0)?.Trim() ?? "";
                if (run.ExitStatus == 0) return ParseInstalled(Last(run.Result));
                string last = Last(run.Error);
                return new InstallResult(InstallResult.Refused, null, null, last.Length > 0 ? last : $"the remote install exited {run.ExitStatus}", "remote_failed");
            }
            finally
            {
                ssh.RunCommand($"rm -f {Quote(remote)}").Dispose();
            }
        }
        catch (SshConnectionException) when (hostKeyProblem is not null) { throw new EdgeTuneException(hostKeyProblem); }
        catch (SshAuthenticationException e) { throw new EdgeTuneException($"{user}@{target.Host}:{port}: authentication with {keyPath} failed ({e.Message})"); }
    }

    /// <summary>"installed 1.2.0 in slot b" (the agent's line) → the result it describes.</summary>
    private static InstallResult ParseInstalled(string line)
    {
        var words = line.Split(' ');
        bool known = words.Length == 5 && words[0] == "installed";
        return new InstallResult(InstallResult.Installed, known ? words[1] : null, known ? words[4] : null, null, null);
    }

    private static async Task<InstallResult> OverHttps(string bundle, Uri target, string tokenFile, bool allowDowngrade, CancellationToken ct)
    {
        if (!File.Exists(tokenFile)) throw new EdgeTuneException($"{tokenFile}: no such token file");
        string token = File.ReadAllText(tokenFile).Trim();
        if (token.Length == 0) throw new EdgeTuneException($"{tokenFile}: empty token file");
        using var client = new HttpClient { BaseAddress = target, Timeout = TimeSpan.FromMinutes(30) };
        await using var body = File.OpenRead(bundle);
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/admin/bundles" + (allowDowngrade ? "?allow_downgrade=true" : "")) { Content = new StreamContent(body) };
        request.Content.Headers.ContentLength = body.Length;
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var response = await client.SendAsync(request, ct);
        string text = await response.Content.ReadAsStringAsync(ct);
        return BundleEndpoints.Parse(text)
            ?? new InstallResult(InstallResult.Refused, null, null, $"HTTP {(int)response.StatusCode}: {(text.Length > 200 ? text[..200] : text).ReplaceLineEndings(" ")}", "http_error");
    }

    private static string Quote(string s) => "'" + s.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
}

/// <summary>OpenSSH known_hosts lookup: plain and hashed (|1|salt|hash) host names, [host]:port for other ports.</summary>
internal static class KnownHosts
{
    public static bool Contains(string file, string host, int port, byte[] keyBlob)
    {
        if (!File.Exists(file)) return false;
        string name = port == 22 ? host : $"[{host}]:{port}";
        foreach (var raw in File.ReadLines(file))
        {
            var line = raw.Trim();
            if (line.Length == 0 || line[0] == '#') continue;
            var fields = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (fields[0].StartsWith('@')) continue; // @revoked / @cert-authority: not plain trust
            if (fields.Length < 3) continue;
            byte[] blob;
            try { blob = Convert.FromBase64String(fields[2]); }
            catch (FormatException) { continue; }
            if (!blob.AsSpan().SequenceEqual(keyBlob)) continue;
            if (fields[0].Split(',').Any(pattern => Matches(pattern, name))) return true;
        }
        return false;
    }

    private static bool Matches(string pattern, string name)
    {
        if (!pattern.StartsWith("|1|", StringComparison.Ordinal)) return string.Equals(pattern, name, StringComparison.OrdinalIgnoreCase);
        var parts = pattern.Split('|');
        if (parts.Length != 4) return false;
        try
        {
#pragma warning disable CA5350 // OpenSSH's hashed known_hosts format is defined with HMAC-SHA1
            using var hmac = new HMACSHA1(Convert.FromBase64String(parts[2]));
#pragma warning restore CA5350
            return hmac.ComputeHash(Encoding.ASCII.GetBytes(name)).AsSpan().SequenceEqual(Convert.FromBase64String(parts[3]));
        }
        catch (FormatException) { return false; }
    }
}
