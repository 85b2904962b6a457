using System.Net.Http.Json;
using EdgeTune.Agent.Serving;
using Microsoft.Extensions.DependencyInjection;

namespace EdgeTune.Agent.Tests;

/// <summary>An adapter switch queues behind admitted requests; /health answers from one snapshot while the model unloads.</summary>
public sealed class SwitchAndUnloadTests
{
    private static async Task<string> Completion(HttpClient client)
    {
        var (status, body) = await client.PostJson("/v1/completions", new { model = "tiny", prompt = "hello world", max_tokens = 8, temperature = 0 });
        Assert.Equal(200, status);
        return body.GetProperty("choices")[0].GetProperty("text").GetString()!;
    }

    [Fact]
    public async Task An_adapter_switch_waits_for_admitted_requests_and_the_record_names_the_adapter_that_answered()
    {
        GatedRuntime? gated = null;
        // Four requests decode together (parallel = 4): the adapter is the context's, so the switch waits for all.
        var agent = new AgentFixture(8, c => gated = new GatedRuntime(ModelHost.Open(c.Model, 4)), withAdapter: true);
        await agent.InitializeAsync();
        try
        {
            gated!.Gate.Set();
            string withAdapter = await Completion(agent.Client); // "support" is active after loading
            gated.Gate.Reset();
            Assert.True(gated.Entered.Wait(0));                  // that request's pass through the gate

            var queue = agent.App.Services.GetRequiredService<RequestQueue>();
            Assert.Equal(4, queue.Parallel);
            var held = new[] { Completion(agent.Client), Completion(agent.Client) }; // admitted under "support", held before generating
            Assert.True(await gated.Entered.WaitAsync(TimeSpan.FromSeconds(20)));
            Assert.True(await gated.Entered.WaitAsync(TimeSpan.FromSeconds(20)));
            var switchOff = agent.Client.PostAsJsonAsync("/v1/adapters/active", new Dictionary<string, object?> { ["adapter"] = null });
            for (int i = 0; i < 400 && queue.Depth < 1; i++) await Task.Delay(25);
            var after = Completion(agent.Client);                // arrives after the switch: waits behind it though slots are free
            for (int i = 0; i < 400 && queue.Depth < 2; i++) await Task.Delay(25);
            Assert.Equal(2, queue.Depth);                        // the switch waits for the held requests, the later one for the switch
            Assert.Equal(2, queue.Active);
            Assert.False(switchOff.IsCompleted);
            Assert.Equal("support", gated.ActiveAdapter);

            gated.Gate.Set();
            Assert.Equal([withAdapter, withAdapter], await Task.WhenAll(held)); // answered with the adapter they were admitted under
            using (var switched = await switchOff) Assert.Equal(200, (int)switched.StatusCode);
            string bareAfter = await after;
            Assert.Null(gated.ActiveAdapter);
            string bare = await Completion(agent.Client);
            Assert.NotEqual(withAdapter, bare);
            Assert.Equal(bare, bareAfter);

            using var export = await agent.Client.GetAsync("/v1/field-data?after=0");
            var records = (await export.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Select(l => EdgeTune.Formats.FieldData.FieldExample.FromJsonLine(l)!).ToList();
            Assert.Equal(["support", "support", "support", null, null], records.Select(r => r.Metadata.Adapter));
            Assert.Equal([withAdapter, withAdapter, withAdapter, bare, bare], records.Select(r => r.Messages[^1].Content));
        }
        finally
        {
            gated?.Gate.Set();
            await agent.DisposeAsync();
        }
    }

    [Fact]
    public async Task Health_answers_stopping_while_the_model_unloads()
    {
        GatedRuntime? gated = null;
        var agent = new AgentFixture(8, c => gated = new GatedRuntime(ModelHost.Open(c.Model)));
        await agent.InitializeAsync();
        Task? stopping = null;
        try
        {
            gated!.Gate.Set();
            gated.DisposeGate.Reset();
            var host = agent.App.Services.GetRequiredService<ModelHost>();
            using (var ok = await agent.Anonymous.GetAsync("/health")) Assert.Equal(200, (int)ok.StatusCode);

            stopping = Task.Run(() => host.StopAsync(CancellationToken.None)); // unloads; Dispose is held at the gate
            Assert.True(await gated.Disposing.WaitAsync(TimeSpan.FromSeconds(20)));
            var answers = await Task.WhenAll(Enumerable.Range(0, 16).Select(async _ =>
            {
                using var response = await agent.Anonymous.GetAsync("/health");
                return ((int)response.StatusCode, await response.Content.ReadAsStringAsync());
            }));
            foreach (var (status, body) in answers)
            {
                Assert.Equal(503, status);
                Assert.Contains("\"status\":\"stopping\"", body, StringComparison.Ordinal);
            }
            var (chat, error) = await agent.Client.PostJson("/v1/completions", new { prompt = "hello", max_tokens = 2 });
            Assert.Equal(503, chat);
            Http.AssertOpenAiError(error, "model_not_ready");
        }
        finally
        {
            gated?.DisposeGate.Set();
            if (stopping is not null) await stopping;
            await agent.DisposeAsync();
        }
    }
}
