using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using EdgeTune.Agent.Bundles;
using EdgeTune.Bundles;
using EdgeTune.Testing;

namespace EdgeTune.Agent.Tests;

/// <summary>
/// A device in a temporary folder: a signing key it trusts, a state directory for its slots, a configuration whose
/// own model is tiny "v1", and signed bundles of other tiny models built the way 'edgetune bundle create' builds them.
/// </summary>
public sealed class BundleDevice : IDisposable
{
    public const string Board = "test-board";
    public TempDir Dir { get; } = new();
    public ECDsa Key { get; } = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    public string StateDir => Dir.File("state");
    public string ConfigPath { get; }
    public int Port { get; }

    public BundleDevice(int bootAttempts = 3, string canary = "Reply with OK.")
    {
        File.WriteAllText(Dir.File("trusted.pub"), Key.ExportSubjectPublicKeyInfoPem());
        Directory.CreateDirectory(Dir.File("factory"));
        string model = TinyAgentModel.Write(Dir.File("factory"));
        Port = AgentProcess.FreePort();
        ConfigPath = TinyAgentModel.WriteConfig(Dir.Path, model, $"http://127.0.0.1:{Port}", extra: $"""

            [bundles]
            trust = "trusted.pub"
            state_dir = "state"
            board = "{Board}"
            boot_attempts = {bootAttempts}
            canary_prompt = "{canary}"
            health_timeout_seconds = 120
            """);
        File.WriteAllText(ConfigPath, File.ReadAllText(ConfigPath).Replace("name = \"tiny\"", "name = \"v1\"", StringComparison.Ordinal));
    }

    public string FieldLog => Path.Combine(StateDir, "field.db");

    /// <summary>A signed bundle serving a tiny model named <paramref name="name"/>; <paramref name="modelBytes"/> replaces the GGUF (a broken model).</summary>
    public string Bundle(string version, string name, string board = Board, int context = 256, byte[]? modelBytes = null, ECDsa? signer = null, bool sign = true)
    {
        string src = Dir.File($"src-{version}-{name}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(src);
        string model = TinyAgentModel.Write(src, "model.gguf");
        if (modelBytes is not null) File.WriteAllBytes(model, modelBytes);
        string author = Path.Combine(src, "author.toml");
        File.WriteAllText(author, $"[server]\napi_token = \"author\"\n[model]\npath = \"model.gguf\"\nname = \"{name}\"\ncontext = {context}\nthreads = 2\ndefault_max_tokens = 16\n");
        File.WriteAllText(Path.Combine(src, "agent.toml"), SlotConfig.FromAuthorConfig(author, "model/model.gguf", []));
        string bundle = Dir.File($"{name}-{version}-{Guid.NewGuid():N}.etb");
        BundleWriter.Create(bundle, new BundleDraft { Version = version, Compatible = board, MinAgentVersion = "0.1.0", Model = "model/model.gguf", Config = "agent.toml" },
            [new BundleSource("agent.toml", Path.Combine(src, "agent.toml")), new BundleSource("model/model.gguf", model)], sign ? signer ?? Key : null);
        return bundle;
    }

    public HttpClient Client()
    {
        var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{Port}"), Timeout = TimeSpan.FromSeconds(120) };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", TinyAgentModel.Token);
        return client;
    }

    public void Dispose()
    {
        Key.Dispose();
        Dir.Dispose();
    }
}

/// <summary>The agent as a child process with its stderr lines collected, for SIGKILL at chosen points.</summary>
internal sealed class AgentChild : IDisposable
{
    private readonly Process _process;
    public ConcurrentQueue<string> Lines { get; } = new();

    public AgentChild(IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(AgentProcess.Dll);
        foreach (var a in args) info.ArgumentList.Add(a);
        foreach (var (k, v) in environment ?? new Dictionary<string, string>()) info.Environment[k] = v;
        _process = Process.Start(info)!;
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) Lines.Enqueue(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) Lines.Enqueue(e.Data); };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public async Task WaitForLine(string text)
    {
        var deadline = Stopwatch.StartNew();
        while (!Lines.Any(l => l.Contains(text, StringComparison.Ordinal)))
        {
            if (_process.HasExited) throw new InvalidOperationException($"the agent exited ({_process.ExitCode}) before '{text}': {string.Join(" | ", Lines)}");
            if (deadline.Elapsed > TimeSpan.FromSeconds(120)) throw new TimeoutException($"no '{text}': {string.Join(" | ", Lines)}");
            await Task.Delay(20);
        }
    }

    public async Task<int> WaitForExit()
    {
        await _process.WaitForExitAsync();
        return _process.ExitCode;
    }

    /// <summary>SIGKILL: no handler runs, nothing is flushed; as a power cut is to the process.</summary>
    public async Task Kill()
    {
        _process.Kill();
        await _process.WaitForExitAsync();
    }

    public void Dispose()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        _process.Dispose();
    }
}
