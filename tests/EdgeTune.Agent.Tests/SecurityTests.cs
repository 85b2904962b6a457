using System.Net.Http.Headers;
using System.Text.Json;
using EdgeTune.Agent.Config;
using EdgeTune.Testing;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

namespace EdgeTune.Agent.Tests;

public sealed class SecurityTests
{
    private const string ChatToken = "chat-only-token-0123456789";
    private const string FleetToken = "fleet-only-token-0123456789";
    private const string AdminToken = "admin-only-token-0123456789";

    private static HttpClient As(AgentFixture agent, string token)
    {
        var client = new HttpClient { BaseAddress = agent.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return client;
    }

    private static async Task<int> Status(HttpClient client, string method, string path, object? body = null)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), path);
        if (body is not null) request.Content = System.Net.Http.Json.JsonContent.Create(body);
        using var response = await client.SendAsync(request);
        if ((int)response.StatusCode == 403)
            Http.AssertOpenAiError(JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement, "insufficient_scope");
        return (int)response.StatusCode;
    }

    [Fact]
    public async Task Each_scope_opens_its_endpoints_and_api_token_opens_all()
    {
        var agent = new AgentFixture(8, null, withAdapter: true, serverExtra: $"""
            [[server.tokens]]
            token = "{ChatToken}"
            scopes = ["chat"]
            [[server.tokens]]
            token_file = "fleet.token"
            scopes = ["fleet"]
            [[server.tokens]]
            token = "{AdminToken}"
            scopes = ["admin"]
            """);
        File.WriteAllText(Path.Combine(agent.Folder, "fleet.token"), FleetToken + "\n");
        await agent.InitializeAsync();
        try
        {
            using var chat = As(agent, ChatToken);
            using var fleet = As(agent, FleetToken);
            using var admin = As(agent, AdminToken);
            var completion = new { model = "tiny", max_tokens = 1, messages = new[] { new { role = "user", content = "hi" } } };
            var feedback = new { completion_id = "chatcmpl-none", rating = 1 };
            var ack = new { through = 0 };
            var adapter = new { adapter = "support" };
            // (method, path, body, which of chat/fleet/admin may call it)
            var table = new (string Method, string Path, object? Body, bool Chat, bool Fleet, bool Admin)[]
            {
                ("POST", "/v1/chat/completions", completion, true, false, false),
                ("GET", "/v1/models", null, true, false, false),
                ("POST", "/v1/feedback", feedback, true, false, false),
                ("GET", "/v1/adapters", null, true, false, true),
                ("GET", "/v1/field-data", null, false, true, false),
                ("POST", "/v1/field-data/ack", ack, false, true, false),
                ("GET", "/metrics", null, false, true, true),
                ("POST", "/v1/adapters/active", adapter, false, false, true),
            };
            foreach (var (method, path, body, chatOk, fleetOk, adminOk) in table)
            {
                foreach (var (client, allowed, name) in new[] { (chat, chatOk, "chat"), (fleet, fleetOk, "fleet"), (admin, adminOk, "admin"), (agent.Client, true, "api_token") })
                {
                    int status = await Status(client, method, path, body);
                    if (allowed) Assert.True(status is 200 or 404, $"{name} {method} {path}: {status}");
                    else Assert.True(status == 403, $"{name} {method} {path}: {status}, expected 403");
                }
                Assert.Equal(401, await Status(agent.Anonymous, method, path, body));
            }
            // An unknown path is 404 to any valid token, 401 without one.
            Assert.Equal(404, await Status(chat, "GET", "/v1/nothing"));
            Assert.Equal(401, await Status(agent.Anonymous, "GET", "/v1/nothing"));
        }
        finally
        {
            await agent.DisposeAsync();
        }
    }

    [Theory]
    [InlineData("api_token = \"change-me\"", @"agent\.toml:\d+:\d+: server\.api_token: 'change-me' is a placeholder")]
    [InlineData("api_token = \"short-token\"", @"agent\.toml:\d+:\d+: server\.api_token: the token is 11 characters; at least 16")]
    [InlineData("[[server.tokens]]\ntoken = \"CHANGE_ME\"\nscopes = [\"chat\"]", @"agent\.toml:\d+:\d+: server\.tokens\[1\]\.token: 'CHANGE_ME' is a placeholder")]
    [InlineData("[[server.tokens]]\ntoken = \"a-long-enough-token-1\"\nscopes = [\"root\"]", @"agent\.toml:\d+:\d+: server\.tokens\[1\]\.scopes: expected one of chat, fleet, admin, found the string ""root""")]
    [InlineData("[[server.tokens]]\ntoken = \"a-long-enough-token-1\"\ntoken_file = \"t\"\nscopes = [\"chat\"]", @"agent\.toml:\d+:\d+: server\.tokens\[1\]: give exactly one of token and token_file")]
    [InlineData("[[server.tokens]]\ntoken = \"a-long-enough-token-1\"", @"agent\.toml:\d+:\d+: server\.tokens\[1\]\.scopes: expected a non-empty array")]
    [InlineData("[[server.tokens]]\ntoken_file = \"absent.token\"\nscopes = [\"fleet\"]", @"agent\.toml:\d+:\d+: server\.tokens\[1\]\.token_file: no such file: .*absent\.token")]
    public void Weak_or_malformed_tokens_are_refused_at_start_with_their_place(string server, string expected)
    {
        using var dir = new TempDir();
        string model = TinyAgentModel.Write(dir.Path);
        string path = TinyAgentModel.WriteConfig(dir.Path, model);
        string text = File.ReadAllText(path).Replace($"api_token = \"{TinyAgentModel.Token}\"\n", "", StringComparison.Ordinal);
        // Keys go into [server]; [[server.tokens]] entries after it (before [model]).
        File.WriteAllText(path, server.StartsWith("[[", StringComparison.Ordinal) ? text.Replace("[model]", server + "\n\n[model]", StringComparison.Ordinal) : text.Replace("[server]\n", "[server]\n" + server + "\n", StringComparison.Ordinal));
        var (code, output) = AgentProcess.Run("--config", path);
        Assert.Equal(1, code);
        Assert.Single(output.Trim().Split('\n'));
        Assert.Matches(expected, output);
    }

    [Fact]
    public void A_folder_given_to_the_llama_cpp_runtime_is_named_with_the_runtime_that_serves_folders()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir.File("model-onnx"));
        string path = TinyAgentModel.WriteConfig(dir.Path, dir.File("model-onnx"));
        var e = Assert.Throws<AgentConfigException>(() => AgentConfig.Load(path));
        Assert.Matches(@"agent\.toml:\d+:\d+: model\.path: .*model-onnx is a folder, not a GGUF file; .* model\.runtime = ""onnx""", e.Message);
    }

    [Fact]
    public void Plain_http_beyond_loopback_is_refused_unless_allowed()
    {
        using var dir = new TempDir();
        foreach (var listen in new[] { "http://0.0.0.0:8080", "http://192.168.1.20:8080", "http://[::]:8080", "http://jetson.local:8080" })
        {
            string path = TinyAgentModel.WriteConfig(dir.Path, "m.gguf", listen: listen);
            var e = Assert.Throws<AgentConfigException>(() => AgentConfig.Load(path, checkFiles: false));
            Assert.Matches(@"agent\.toml:\d+:\d+: server\.listen: '.*' is reachable beyond this machine over plain HTTP", e.Message);
            File.WriteAllText(path, File.ReadAllText(path).Replace("[server]\n", "[server]\nallow_plain_http = true\n", StringComparison.Ordinal));
            Assert.True(AgentConfig.Load(path, checkFiles: false).Server.AllowPlainHttp);
        }
        foreach (var listen in new[] { "http://127.0.0.1:0", "http://localhost:8080", "http://[::1]:8080", "http://127.0.0.2:8080" })
            Assert.False(AgentConfig.Load(TinyAgentModel.WriteConfig(dir.Path, "m.gguf", listen: listen), checkFiles: false).Server.AllowPlainHttp);
    }

    [Fact]
    public void A_configuration_built_in_code_gets_the_same_checks()
    {
        var config = new AgentConfig
        {
            File = "in-code",
            Server = new ServerConfig { ApiToken = "change-me" },
            Model = new ModelConfig { Path = "m.gguf" },
        };
        var e = Assert.Throws<AgentConfigException>(() => AgentApp.Build(config));
        Assert.Equal("in-code: server.api_token: 'change-me' is a placeholder; generate a secret, e.g. `openssl rand -hex 24`", e.Message);
        e = Assert.Throws<AgentConfigException>(() => AgentApp.Build(config with { Server = new ServerConfig { ApiToken = TinyAgentModel.Token, Listen = "http://0.0.0.0:0" } }));
        Assert.Contains("server.listen:", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<AgentConfigException>(() => AgentApp.Build(config with { Server = new ServerConfig() }));
        Assert.Contains("server.api_token: no API token", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Health_says_error_without_the_path_or_the_exception_text()
    {
        using var dir = new TempDir();
        string secretPath = Path.Combine(dir.Path, "private-folder", "model.gguf");
        var config = AgentConfig.Load(TinyAgentModel.WriteConfig(dir.Path, secretPath), checkFiles: false);
        var app = AgentApp.Build(config, c => throw new InvalidOperationException($"cannot read {c.Model.Path}: corrupt tensor table"));
        await app.StartAsync();
        try
        {
            var address = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
            using var client = new HttpClient { BaseAddress = address };
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", TinyAgentModel.Token);
            string body = "";
            for (int i = 0; i < 400; i++)
            {
                using var health = await client.GetAsync("/health");
                body = await health.Content.ReadAsStringAsync();
                if (body.Contains("error", StringComparison.Ordinal)) { Assert.Equal(503, (int)health.StatusCode); break; }
                await Task.Delay(25);
            }
            Assert.Equal("{\"status\":\"error\"}", body);
            var (status, completion) = await client.PostJson("/v1/completions", new { prompt = "hi" });
            Assert.Equal(503, status);
            Assert.DoesNotContain("private-folder", completion.ToString(), StringComparison.Ordinal);
            Assert.DoesNotContain("corrupt", completion.ToString(), StringComparison.Ordinal);
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }
}
