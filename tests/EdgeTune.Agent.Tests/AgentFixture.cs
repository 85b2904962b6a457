using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using EdgeTune.Agent;
using EdgeTune.Agent.Config;
using EdgeTune.Agent.Serving;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

namespace EdgeTune.Agent.Tests;

/// <summary>Tiny models and configurations for the agent's tests.</summary>
public static class TinyAgentModel
{
    public const string Token = "test-token-with-every-scope";

    // ChatML, which llama.cpp's template detection recognises from the Jinja text.
    public const string ChatMl =
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}" +
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    public static readonly TinyLlamaConfig Config = new() { Embedding = 64, Heads = 4, KvHeads = 2, FeedForward = 128, Layers = 2, ContextLength = 256, Seed = 7 };

    /// <summary>Writes a tiny llama GGUF carrying a ChatML chat template.</summary>
    public static string Write(string folder, string name = "tiny.gguf")
    {
        string path = Path.Combine(folder, name);
        var vocabulary = TinyLlama.Metadata(Config).Where(kv => kv.Key.StartsWith("tokenizer.", StringComparison.Ordinal)).ToList();
        vocabulary.Add(new("tokenizer.chat_template", GgufValue.String(ChatMl)));
        TinyLlama.WriteGguf(path, Config, vocabulary: vocabulary);
        return path;
    }

    /// <summary>A strong GGUF LoRA adapter on ffn_down of every layer (convert_lora_to_gguf.py's layout), so greedy output changes.</summary>
    public static void WriteLora(string path, int rank = 4)
    {
        var writer = new GgufWriter();
        writer.Metadata.Set("general.architecture", GgufValue.String("llama"));
        writer.Metadata.Set("general.type", GgufValue.String("adapter"));
        writer.Metadata.Set("adapter.type", GgufValue.String("lora"));
        writer.Metadata.Set("adapter.lora.alpha", GgufValue.F32(rank));
        var rng = new Random(11);
        for (int layer = 0; layer < Config.Layers; layer++)
        {
            foreach (var (suffix, shape) in new[] { ("lora_a", new long[] { Config.FeedForward, rank }), ("lora_b", new long[] { rank, Config.Embedding }) })
            {
                var values = new float[shape[0] * shape[1]];
                for (int i = 0; i < values.Length; i++) values[i] = (float)(rng.NextDouble() - 0.5) * 2f;
                var data = new byte[values.Length * 4];
                Buffer.BlockCopy(values, 0, data, 0, data.Length);
                writer.AddTensor($"blk.{layer}.ffn_down.weight.{suffix}", EdgeTune.Core.GgmlType.F32, shape, data);
            }
        }
        writer.Write(path);
    }

    /// <param name="extra">Lines added to [field_log] (or later sections).</param>
    /// <param name="serverExtra">Lines added to [server] (or [[server.tokens]] entries after it).</param>
    /// <param name="queueCapacity">server.queue_capacity; null leaves it out (the default).</param>
    public static string WriteConfig(string folder, string modelPath, string listen = "http://127.0.0.1:0", int? queueCapacity = 8, string extra = "", string adapters = "", string serverExtra = "")
    {
        string path = Path.Combine(folder, "agent.toml");
        File.WriteAllText(path, $"""
            [server]
            listen = "{listen}"
            api_token = "{Token}"
            {(queueCapacity is { } capacity ? $"queue_capacity = {capacity}" : "")}
            request_timeout_seconds = 60
            log_level = "Warning"
            {serverExtra}

            [model]
            path = "{modelPath}"
            name = "tiny"
            adapters = [{adapters}]
            context = 256
            threads = 2
            default_max_tokens = 16

            [field_log]
            path = "field.db"
            device_id = "test-device"
            {extra}
            """);
        return path;
    }
}

/// <summary>The real agent, in process, on a loopback port, serving a tiny GGUF built here.</summary>
public sealed class AgentFixture : IAsyncLifetime
{
    private readonly TempDir _dir = new();
    private readonly int? _queueCapacity;
    private readonly Func<AgentConfig, IInferenceModel>? _factory;

    private readonly bool _withAdapter;

    public AgentFixture() : this(8, null) { }

    private readonly string _extra = "";

    private readonly Func<System.Device.Gpio.GpioController>? _gpio;

    private readonly string _serverExtra = "";

    internal AgentFixture(int? queueCapacity, Func<AgentConfig, IInferenceModel>? factory, bool withAdapter = false, string extra = "", Func<System.Device.Gpio.GpioController>? gpio = null, string serverExtra = "")
    {
        _serverExtra = serverExtra;
        _gpio = gpio;
        _extra = extra;
        _queueCapacity = queueCapacity;
        _factory = factory;
        _withAdapter = withAdapter;
    }

    public WebApplication App { get; private set; } = null!;
    public Uri BaseAddress { get; private set; } = null!;
    public HttpClient Client { get; private set; } = null!;
    public HttpClient Anonymous { get; private set; } = null!;
    public string Folder => _dir.Path;

    public async Task InitializeAsync()
    {
        string model = TinyAgentModel.Write(_dir.Path);
        string adapters = "";
        if (_withAdapter)
        {
            TinyAgentModel.WriteLora(Path.Combine(_dir.Path, "support.gguf"));
            adapters = "\"support.gguf\"";
        }
        var config = AgentConfig.Load(TinyAgentModel.WriteConfig(_dir.Path, model, queueCapacity: _queueCapacity, adapters: adapters, extra: _extra, serverExtra: _serverExtra));
        App = AgentApp.Build(config, _factory, _gpio);
        await App.StartAsync();
        var address = App.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        BaseAddress = new Uri(address);
        Anonymous = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        Client = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        Client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", TinyAgentModel.Token);
        await WaitReady(Anonymous);
    }

    public static async Task WaitReady(HttpClient client)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            try
            {
                using var response = await client.GetAsync("/health");
                if (response.IsSuccessStatusCode) return;
            }
            catch (HttpRequestException) { }
            if (DateTime.UtcNow > deadline) throw new TimeoutException("the agent did not become ready");
            await Task.Delay(50);
        }
    }

    public async Task DisposeAsync()
    {
        Client?.Dispose();
        Anonymous?.Dispose();
        if (App is not null)
        {
            await App.StopAsync();
            await App.DisposeAsync();
        }
        _dir.Dispose();
    }
}

internal static class Http
{
    public static async Task<(int Status, JsonElement Body)> PostJson(this HttpClient client, string path, object body)
    {
        using var response = await client.PostAsJsonAsync(path, body);
        string text = await response.Content.ReadAsStringAsync();
        return ((int)response.StatusCode, JsonDocument.Parse(text).RootElement.Clone());
    }

    public static async Task<(int Status, JsonElement Body)> PostRaw(this HttpClient client, string path, string body)
    {
        using var content = new StringContent(body, System.Text.Encoding.UTF8, "application/json");
        using var response = await client.PostAsync(path, content);
        return ((int)response.StatusCode, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone());
    }

    /// <summary>The data payloads of an SSE response, up to and including [DONE].</summary>
    public static async Task<List<string>> PostSse(this HttpClient client, string path, object body)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = JsonContent.Create(body) };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var events = new List<string>();
        while (await reader.ReadLineAsync() is { } line)
            if (line.StartsWith("data: ", StringComparison.Ordinal)) events.Add(line["data: ".Length..]);
        return events;
    }

    /// <summary>One page of GET /v1/field-data: its examples and the EdgeTune-Next-Cursor header.</summary>
    public static async Task<(List<EdgeTune.Formats.FieldData.FieldExample> Examples, long Next)> FieldData(this HttpClient client, long after, int? limit = null)
    {
        using var response = await client.GetAsync($"/v1/field-data?after={after}" + (limit is { } l ? $"&limit={l}" : ""));
        Assert.Equal(200, (int)response.StatusCode);
        long next = long.Parse(response.Headers.GetValues("EdgeTune-Next-Cursor").Single(), System.Globalization.CultureInfo.InvariantCulture);
        string text = await response.Content.ReadAsStringAsync();
        var examples = text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => EdgeTune.Formats.FieldData.FieldExample.FromJsonLine(l)!).ToList();
        Assert.Equal(int.Parse(response.Headers.GetValues("EdgeTune-Count").Single(), System.Globalization.CultureInfo.InvariantCulture), examples.Count);
        return (examples, next);
    }

    /// <summary>Every field record from cursor 0, page by page, each page acknowledged as a consumer would.</summary>
    public static async Task<List<EdgeTune.Formats.FieldData.FieldExample>> DrainFieldData(this HttpClient client, int limit = 1000)
    {
        var all = new List<EdgeTune.Formats.FieldData.FieldExample>();
        long cursor = 0;
        while (true)
        {
            var (page, next) = await client.FieldData(cursor, limit);
            if (page.Count == 0) return all;
            all.AddRange(page);
            var (status, body) = await client.PostJson("/v1/field-data/ack", new { through = next });
            Assert.True(status == 200, body.ToString());
            cursor = next;
        }
    }

    public static void AssertOpenAiError(JsonElement body, string? code = null)
    {
        var error = body.GetProperty("error");
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
        Assert.False(string.IsNullOrEmpty(error.GetProperty("type").GetString()));
        Assert.True(error.TryGetProperty("code", out var c));
        if (code is not null) Assert.Equal(code, c.GetString());
    }
}
