using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using EdgeTune.Agent.Serving;
using Microsoft.Extensions.DependencyInjection;

namespace EdgeTune.Agent.Tests;

/// <summary>
/// [server] parallel: concurrent requests are decoded together by llama.cpp (one sequence each), and each client
/// gets what it would get alone, plain or streaming, with the active adapter, one field record per answer.
/// </summary>
public sealed class BatchedServingTests
{
    private static readonly string[] Prompts = ["hello", "the device", "world of hello", "model", "is the world", "hello world", "device model", "the"];

    private static object Request(int i, bool stream) => new
    {
        model = "tiny", max_tokens = 24 + 9 * i, temperature = 0, stream,
        messages = new[] { new { role = "user", content = Prompts[i] } },
    };

    private static async Task<string> Plain(HttpClient client, int i)
    {
        var (status, body) = await client.PostJson("/v1/chat/completions", Request(i, stream: false));
        Assert.True(status == 200, body.ToString());
        return body.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
    }

    private static async Task<string> Streamed(HttpClient client, int i)
    {
        var events = await client.PostSse("/v1/chat/completions", Request(i, stream: true));
        Assert.Equal("[DONE]", events[^1]);
        var text = new StringBuilder();
        foreach (var e in events.SkipLast(1))
            if (JsonDocument.Parse(e).RootElement.GetProperty("choices")[0].GetProperty("delta").TryGetProperty("content", out var c)) text.Append(c.GetString());
        return text.ToString();
    }

    /// <summary>The answers one at a time: an agent with [server] parallel = 1, one request after another.</summary>
    private static async Task<string[]> OneAtATime()
    {
        var agent = new AgentFixture(8, null, withAdapter: true, serverExtra: "parallel = 1");
        await agent.InitializeAsync();
        try
        {
            Assert.Equal(1, agent.App.Services.GetRequiredService<RequestQueue>().Parallel);
            var answers = new string[Prompts.Length];
            for (int i = 0; i < answers.Length; i++) answers[i] = await Plain(agent.Client, i);
            return answers;
        }
        finally
        {
            await agent.DisposeAsync();
        }
    }

    [Fact]
    public async Task Concurrent_requests_decode_together_and_get_the_answers_they_get_one_at_a_time()
    {
        string[] alone = await OneAtATime();
        Assert.True(alone.Distinct().Count() > 4, "the prompts should not all give one answer");

        GatedRuntime? gated = null;
        var agent = new AgentFixture(8, c => gated = new GatedRuntime(ModelHost.Open(c.Model, 4)), withAdapter: true);
        await agent.InitializeAsync();
        try
        {
            var queue = agent.App.Services.GetRequiredService<RequestQueue>();
            Assert.Equal(4, queue.Parallel); // the model's parallelism, taken by the queue when it loads
            // Half plain, half streaming; the first four are held until all four are in, so they start together.
            var answers = Enumerable.Range(0, Prompts.Length).Select(i => i % 2 == 0 ? Plain(agent.Client, i) : Streamed(agent.Client, i)).ToArray();
            for (int i = 0; i < 4; i++) Assert.True(await gated!.Entered.WaitAsync(TimeSpan.FromSeconds(20)));
            for (int i = 0; i < 400 && queue.Depth < 4; i++) await Task.Delay(25);
            Assert.Equal(4, queue.Active);
            Assert.Equal(4, queue.Depth);
            gated!.Gate.Set();

            Assert.Equal(alone, await Task.WhenAll(answers));
            var model = (EdgeTune.Inference.InferenceModel)gated.Inner;
            Assert.True(model.PeakSequencesPerPass >= 3, $"at most {model.PeakSequencesPerPass} sequences were decoded together");

            // One record per answer, each naming the adapter that answered.
            var records = await agent.Client.DrainFieldData();
            Assert.Equal(Prompts.Length, records.Count);
            Assert.Equal(alone.Order(StringComparer.Ordinal), records.Select(r => r.Messages[^1].Content).Order(StringComparer.Ordinal));
            Assert.All(records, r => Assert.Equal("support", r.Metadata.Adapter));
            Assert.Equal(Prompts.Order(StringComparer.Ordinal), records.Select(r => r.Messages.Single(m => m.Role == "user").Content).Order(StringComparer.Ordinal));
        }
        finally
        {
            gated?.Gate.Set();
            await agent.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_client_that_goes_away_mid_stream_ends_only_its_own_sequence()
    {
        string[] alone = await OneAtATime();
        // The leaver's pieces are held 40 ms each (and with them every pass), so its 200 tokens outlast its hanging up.
        GatedRuntime? gated = null;
        var agent = new AgentFixture(8, c => gated = new GatedRuntime(ModelHost.Open(c.Model, c.Server.Parallel)) { PieceDelayMs = s => s.MaxTokens == 200 ? 40 : 0 }, withAdapter: true);
        await agent.InitializeAsync();
        gated!.Gate.Set();
        try
        {
            // Alone, the leaver's prompt runs long (197 tokens before its end; 199 is not held back), so its generation outlasts its hanging up.
            var (probe, full) = await agent.Client.PostJson("/v1/chat/completions", new { model = "tiny", max_tokens = 199, temperature = 0, messages = new[] { new { role = "user", content = "leaving" } } });
            Assert.Equal(200, probe);
            Assert.InRange(full.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), 150, 199);

            // The leaver asks for the longest answer the context allows on a raw socket, reads two events and closes it
            // with a reset (HttpClient might keep the connection to drain it).
            var leaver = Task.Run(async () =>
            {
                using var tcp = new System.Net.Sockets.TcpClient();
                await tcp.ConnectAsync(agent.BaseAddress.Host, agent.BaseAddress.Port);
                var stream = tcp.GetStream();
                string body = JsonSerializer.Serialize(new { model = "tiny", max_tokens = 200, temperature = 0, stream = true, messages = new[] { new { role = "user", content = "leaving" } } });
                string head = $"POST /v1/chat/completions HTTP/1.1\r\nHost: {agent.BaseAddress.Authority}\r\nAuthorization: Bearer {TinyAgentModel.Token}\r\n" +
                    $"Content-Type: application/json\r\nContent-Length: {Encoding.UTF8.GetByteCount(body)}\r\n\r\n";
                await stream.WriteAsync(Encoding.UTF8.GetBytes(head + body));
                using var reader = new StreamReader(stream, Encoding.UTF8, leaveOpen: true);
                for (int events = 0; events < 2;)
                    if ((await reader.ReadLineAsync())?.StartsWith("data: ", StringComparison.Ordinal) == true) events++;
                tcp.Client.LingerState = new System.Net.Sockets.LingerOption(true, 0);
                tcp.Close();
            });
            var others = Enumerable.Range(0, 3).Select(i => i % 2 == 0 ? Plain(agent.Client, i) : Streamed(agent.Client, i)).ToArray();
            await leaver;
            Assert.Equal(alone.Take(3), await Task.WhenAll(others));

            // The leaver's slot is free again and serves as before; the leaver left no record.
            Assert.Equal(alone[3], await Plain(agent.Client, 3));
            var queue = agent.App.Services.GetRequiredService<RequestQueue>();
            for (int i = 0; i < 400 && queue.Busy; i++) await Task.Delay(25);
            Assert.False(queue.Busy);
            var records = await agent.Client.DrainFieldData();
            Assert.Equal(5, records.Count); // the probe, three others, the one after
            Assert.Single(records, r => r.Messages.Any(m => m.Content == "leaving"));
        }
        finally
        {
            await agent.DisposeAsync();
        }
    }

    [Fact]
    public async Task Sixty_four_concurrent_clients_are_queued_not_refused_with_the_default_configuration()
    {
        var agent = new AgentFixture(queueCapacity: null, null);
        await agent.InitializeAsync();
        try
        {
            var queue = agent.App.Services.GetRequiredService<RequestQueue>();
            Assert.Equal(64, queue.Capacity);
            var result = await AgentLoad.RunAsync(agent.BaseAddress, TinyAgentModel.Token, 64, 2, 4, () => queue.Depth);
            Assert.True(result.Unexpected.Count == 0, string.Join("\n", result.Unexpected.Take(5)));
            Assert.Equal(0, result.Rejected);
            Assert.Equal(128, result.Answered.Count);
            var logged = (await agent.Client.DrainFieldData()).Select(e => e.Metadata.Id).ToList();
            Assert.Equal(result.Answered.Order(StringComparer.Ordinal), logged.Order(StringComparer.Ordinal));
        }
        finally
        {
            await agent.DisposeAsync();
        }
    }
}
