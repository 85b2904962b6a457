using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using EdgeTune.Agent;
using EdgeTune.Agent.Config;
using EdgeTune.Agent.Tests;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Inference;
using EdgeTune.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

/// <summary>The benchmark commands' options: <c>--name VALUE</c> pairs and bare flags.</summary>
internal sealed class BenchArgs(string[] args)
{
    public string Text(string name, string fallback)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
    }

    public string? Text(string name) => Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;

    public int Int(string name, int fallback) => int.Parse(Text(name, fallback.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);

    public bool Flag(string name) => args.Contains(name);
}

/// <summary>What the benchmark's agent serves and how ([server] and [model] of its agent.toml).</summary>
internal sealed record BenchAgentSettings(string Model, int Context, int Threads, int Parallel)
{
    public string Name { get; init; } = "bench";
    public bool FieldLog { get; init; } = true;
    public int? QueueCapacity { get; init; }
    public string LogLevel { get; init; } = "Warning";

    /// <summary>Lines added to [model] (default_max_tokens, ...).</summary>
    public string ModelExtra { get; init; } = "";
}

/// <summary>
/// The agent in this process on a loopback port, as every benchmark command starts it: one agent.toml written here,
/// started, ready (GET /health 200), a client with the token; C concurrent clients through <see cref="AgentLoad"/>.
/// </summary>
internal sealed class BenchAgent : IAsyncDisposable
{
    public const string Token = "bench-token-0123456789";

    private readonly string _name;

    private BenchAgent(WebApplication app, Uri address, HttpClient client, string name)
    {
        _name = name;
        App = app;
        Address = address;
        Client = client;
    }

    public WebApplication App { get; }
    public Uri Address { get; }

    /// <summary>Authorised with <see cref="Token"/>.</summary>
    public HttpClient Client { get; }

    public static string WriteConfig(string folder, BenchAgentSettings s)
    {
        string path = Path.Combine(folder, $"agent-{Guid.NewGuid():N}.toml");
        File.WriteAllText(path, $"""
            [server]
            listen = "http://127.0.0.1:0"
            api_token = "{Token}"
            log_level = "{s.LogLevel}"
            parallel = {s.Parallel}
            {(s.QueueCapacity is { } capacity ? $"queue_capacity = {capacity}" : "")}
            [model]
            path = "{s.Model}"
            name = "{s.Name}"
            context = {s.Context}
            batch = {s.Context}
            threads = {s.Threads}
            {s.ModelExtra}
            [field_log]
            enabled = {(s.FieldLog ? "true" : "false")}
            path = "field-{Guid.NewGuid():N}.db"
            [telemetry]
            enabled = false
            """);
        return path;
    }

    /// <param name="factory">How the model is opened (a benchmark wraps it to time or count); the agent's own by default.</param>
    public static async Task<BenchAgent> StartAsync(string folder, BenchAgentSettings settings, Func<AgentConfig, IInferenceModel>? factory = null)
    {
        var app = AgentApp.Build(AgentConfig.Load(WriteConfig(folder, settings)), factory);
        await app.StartAsync();
        var address = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
        var client = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromMinutes(10) };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Token);
        var agent = new BenchAgent(app, address, client, settings.Name);
        try
        {
            while (true)
            {
                using var health = await client.GetAsync("/health");
                if (health.IsSuccessStatusCode) return agent;
                if (JsonDocument.Parse(await health.Content.ReadAsStringAsync()).RootElement.GetProperty("status").GetString() == "error")
                    throw new InvalidOperationException($"{settings.Model}: the agent could not load the model (its log says why)");
                await Task.Delay(50);
            }
        }
        catch
        {
            await agent.DisposeAsync();
            throw;
        }
    }

    /// <summary>One greedy chat completion: the answer and its completion tokens.</summary>
    public async Task<(string Text, int Tokens)> ChatAsync(string prompt, int maxTokens)
    {
        using var response = await Client.PostAsJsonAsync("/v1/chat/completions", new { model = _name, max_tokens = maxTokens, temperature = 0, messages = new[] { new { role = "user", content = prompt } } });
        response.EnsureSuccessStatusCode();
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        return (body.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!,
            body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    /// <summary><paramref name="clients"/> clients at once, each sending <paramref name="perClient"/> requests one after another.</summary>
    public Task<AgentLoad.Result> RunClientsAsync(int clients, int perClient, int maxTokens, Func<int, int, string>? prompt = null, float temperature = 0.7f) =>
        AgentLoad.RunAsync(Address, Token, clients, perClient, maxTokens, App.Services.GetRequiredService<EdgeTune.Agent.Serving.RequestQueue>() is var queue ? () => queue.Depth : null,
            prompt, temperature, _name);

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
    }
}

/// <summary>The benchmark's model: a GGUF given with <c>--model PATH</c>, or the 65 MB F32 synthetic llama written here; and small helpers.</summary>
internal static class BenchModel
{
    public static readonly TinyLlamaConfig Config = new() { Embedding = 512, Heads = 8, KvHeads = 4, FeedForward = 1408, Layers = 4, ContextLength = 512, ExtraTokens = 4000, Seed = 5 };

    /// <summary>The model's path and a line describing it.</summary>
    public static (string Path, string Description) Resolve(BenchArgs args, TempDir dir)
    {
        if (args.Text("--model") is { } given)
        {
            if (!File.Exists(given)) throw new FileNotFoundException($"--model {given}: no such file");
            return (Path.GetFullPath(given), $"{Path.GetFileName(given)} ({new FileInfo(given).Length / 1e6:0} MB, given with --model)");
        }
        string model = dir.File("bench.gguf");
        TinyLlama.WriteGguf(model, Config);
        return (model, $"{new FileInfo(model).Length / 1e6:0} MB F32 llama (512 wide, 4 layers), synthetic");
    }

    public static string Machine() =>
        $"machine: {Environment.ProcessorCount} cores, {EdgeTune.Core.MachineFacts.CpuName()}, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, load average {LoadAverage()}";

    public static double Median(IEnumerable<double> values)
    {
        var v = values.Order().ToArray();
        return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
    }

    public static string LoadAverage() => EdgeTune.Core.MachineFacts.LoadAverages();
}
