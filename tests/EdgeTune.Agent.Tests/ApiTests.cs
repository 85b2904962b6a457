using System.ClientModel;
using System.Net.Http.Headers;
using System.Text.Json;
using OpenAI;
using OpenAI.Chat;

namespace EdgeTune.Agent.Tests;

public sealed class ApiTests(AgentFixture agent) : IClassFixture<AgentFixture>
{
    private static object Chat(string text, int maxTokens = 8, object? extra = null) => new Dictionary<string, object?>
    {
        ["model"] = "tiny",
        ["messages"] = new[] { new { role = "user", content = text } },
        ["max_tokens"] = maxTokens,
        ["temperature"] = 0,
    };

    [Fact]
    public async Task Health_and_models()
    {
        using var health = await agent.Anonymous.GetAsync("/health");
        Assert.Equal(200, (int)health.StatusCode);
        using var models = await agent.Client.GetAsync("/v1/models");
        var body = JsonDocument.Parse(await models.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("list", body.GetProperty("object").GetString());
        Assert.Equal("tiny", body.GetProperty("data")[0].GetProperty("id").GetString());
    }

    [Fact]
    public async Task Chat_plain_and_streaming_give_the_same_greedy_answer()
    {
        var (status, body) = await agent.Client.PostJson("/v1/chat/completions", Chat("hello world"));
        Assert.Equal(200, status);
        Assert.StartsWith("chatcmpl-", body.GetProperty("id").GetString());
        Assert.Equal("chat.completion", body.GetProperty("object").GetString());
        var choice = body.GetProperty("choices")[0];
        Assert.Equal("assistant", choice.GetProperty("message").GetProperty("role").GetString());
        string content = choice.GetProperty("message").GetProperty("content").GetString()!;
        var usage = body.GetProperty("usage");
        Assert.True(usage.GetProperty("prompt_tokens").GetInt32() > 5);
        int completionTokens = usage.GetProperty("completion_tokens").GetInt32();
        Assert.InRange(completionTokens, 1, 8);
        Assert.NotEqual("", content);

        var events = await agent.Client.PostSse("/v1/chat/completions", new Dictionary<string, object?>
        {
            ["model"] = "tiny", ["messages"] = new[] { new { role = "user", content = "hello world" } }, ["max_tokens"] = 8, ["temperature"] = 0, ["stream"] = true,
        });
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e).RootElement).ToList();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", c.GetProperty("object").GetString()));
        string streamed = string.Concat(chunks.Select(c => c.GetProperty("choices")[0].GetProperty("delta").TryGetProperty("content", out var t) ? t.GetString() : ""));
        Assert.Equal(content, streamed);
        Assert.Equal(choice.GetProperty("finish_reason").GetString(), chunks[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task Completions_plain_and_streaming()
    {
        var request = new Dictionary<string, object?> { ["model"] = "tiny", ["prompt"] = "the device", ["max_tokens"] = 6, ["temperature"] = 0.8, ["seed"] = 42, ["top_p"] = 0.9 };
        var (status, body) = await agent.Client.PostJson("/v1/completions", request);
        Assert.Equal(200, status);
        Assert.Equal("text_completion", body.GetProperty("object").GetString());
        string text = body.GetProperty("choices")[0].GetProperty("text").GetString()!;
        // The same seed gives the same sample.
        var (_, again) = await agent.Client.PostJson("/v1/completions", request);
        Assert.Equal(text, again.GetProperty("choices")[0].GetProperty("text").GetString());

        request["stream"] = true;
        var events = await agent.Client.PostSse("/v1/completions", request);
        Assert.Equal("[DONE]", events[^1]);
        string streamed = string.Concat(events[..^1].Select(e => JsonDocument.Parse(e).RootElement.GetProperty("choices")[0].GetProperty("text").GetString()));
        Assert.Equal(text, streamed);
    }

    [Fact]
    public async Task Stop_sequence_cuts_the_answer()
    {
        var (_, body) = await agent.Client.PostJson("/v1/completions", new { model = "tiny", prompt = "hello", max_tokens = 12, temperature = 0 });
        string full = body.GetProperty("choices")[0].GetProperty("text").GetString()!;
        Assert.True(full.Length >= 3, $"answer too short for the test: '{full}'");
        string stop = full.Substring(full.Length / 2, 2);
        int at = full.IndexOf(stop, StringComparison.Ordinal);
        var (_, cut) = await agent.Client.PostJson("/v1/completions", new { model = "tiny", prompt = "hello", max_tokens = 12, temperature = 0, stop = new[] { stop } });
        var choice = cut.GetProperty("choices")[0];
        Assert.Equal(full[..at], choice.GetProperty("text").GetString());
        Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task Official_OpenAI_client_plain_and_streaming()
    {
        var client = new ChatClient("tiny", new ApiKeyCredential(TinyAgentModel.Token), new OpenAIClientOptions { Endpoint = new Uri(agent.BaseAddress, "/v1") });
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 8, Temperature = 0 };
        ChatCompletion completion = await client.CompleteChatAsync([new UserChatMessage("hello")], options);
        Assert.Equal(ChatMessageRole.Assistant, completion.Role);
        string text = completion.Content[0].Text;
        Assert.NotEqual("", text);
        Assert.True(completion.Usage.OutputTokenCount > 0);

        var streamed = new System.Text.StringBuilder();
        await foreach (var update in client.CompleteChatStreamingAsync([new UserChatMessage("hello")], options))
            foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
        Assert.Equal(text, streamed.ToString());
    }

    [Fact]
    public async Task Unauthorized_without_the_token()
    {
        var (status, body) = await agent.Anonymous.PostJson("/v1/chat/completions", Chat("hello"));
        Assert.Equal(401, status);
        Http.AssertOpenAiError(body, "invalid_api_key");
        using var wrong = new HttpClient { BaseAddress = agent.BaseAddress };
        wrong.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "nope");
        using var models = await wrong.GetAsync("/v1/models");
        Assert.Equal(401, (int)models.StatusCode);
    }

    [Fact]
    public async Task Bad_requests_are_400_in_OpenAIs_shape()
    {
        var (s1, b1) = await agent.Client.PostRaw("/v1/chat/completions", "{\"model\": \"tiny\", \"messages\": [");
        Assert.Equal(400, s1);
        Http.AssertOpenAiError(b1, "invalid_json");

        var (s2, b2) = await agent.Client.PostJson("/v1/chat/completions", new { model = "gpt-9", messages = new[] { new { role = "user", content = "hi" } } });
        Assert.Equal(400, s2);
        Http.AssertOpenAiError(b2, "model_not_found");

        var (s3, b3) = await agent.Client.PostJson("/v1/chat/completions", new { model = "tiny", messages = new[] { new { role = "user", content = "hi" } }, max_tokens = -5 });
        Assert.Equal(400, s3);
        Http.AssertOpenAiError(b3, "invalid_value");
        Assert.Equal("max_tokens", b3.GetProperty("error").GetProperty("param").GetString());

        // Invalid UTF-8 is malformed JSON.
        using var content = new ByteArrayContent([(byte)'{', (byte)'"', 0xC3, 0x28, (byte)'"', (byte)':', (byte)'1', (byte)'}']);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var response = await agent.Client.PostAsync("/v1/chat/completions", content);
        Assert.Equal(400, (int)response.StatusCode);

        // Invalid UTF-8 inside a string (the parser reads strings lazily): 400, not an exception in the handler.
        foreach (var (path, prefix) in new[] { ("/v1/chat/completions", "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\""), ("/v1/feedback", "{\"completion_id\":\"") })
        {
            using var lazy = new ByteArrayContent([.. System.Text.Encoding.ASCII.GetBytes(prefix), 0xB0, .. "\"}]}"u8.ToArray()[..(path == "/v1/feedback" ? 2 : 4)]]);
            lazy.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            using var refused = await agent.Client.PostAsync(path, lazy);
            Assert.Equal(400, (int)refused.StatusCode);
            Http.AssertOpenAiError(JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement, "invalid_json");
        }

        // A prompt longer than the context.
        var (s4, b4) = await agent.Client.PostJson("/v1/completions", new { model = "tiny", prompt = new string('x', 2000) });
        Assert.Equal(400, s4);
        Http.AssertOpenAiError(b4, "context_length_exceeded");

        // The service is still up.
        var (ok, _) = await agent.Client.PostJson("/v1/chat/completions", Chat("hello", 2));
        Assert.Equal(200, ok);
    }
}
