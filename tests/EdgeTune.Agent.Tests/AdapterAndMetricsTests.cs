using System.Text.Json;

namespace EdgeTune.Agent.Tests;

public sealed class AdapterAndMetricsTests
{
    private static async Task<string> Greedy(AgentFixture agent)
    {
        var (status, body) = await agent.Client.PostJson("/v1/completions", new { model = "tiny", prompt = "hello world", max_tokens = 8, temperature = 0 });
        Assert.Equal(200, status);
        return body.GetProperty("choices")[0].GetProperty("text").GetString()!;
    }

    [Fact]
    public async Task Adapter_switch_changes_the_output_without_a_reload()
    {
        var agent = new AgentFixture(8, null, withAdapter: true);
        await agent.InitializeAsync();
        try
        {
            var runtime = agent.App.Services.GetService(typeof(EdgeTune.Agent.Serving.ModelHost)) as EdgeTune.Agent.Serving.ModelHost;
            var loaded = runtime!.Runtime;
            using var list = await agent.Client.GetAsync("/v1/adapters");
            var adapters = JsonDocument.Parse(await list.Content.ReadAsStringAsync()).RootElement;
            Assert.Equal("support", adapters.GetProperty("active").GetString());
            Assert.Equal("support", adapters.GetProperty("data")[0].GetProperty("id").GetString());

            string withAdapter = await Greedy(agent);
            var (s1, off) = await agent.Client.PostJson("/v1/adapters/active", new Dictionary<string, object?> { ["adapter"] = null });
            Assert.Equal(200, s1);
            Assert.Equal(JsonValueKind.Null, off.GetProperty("active").ValueKind);
            string bare = await Greedy(agent);
            Assert.NotEqual(withAdapter, bare);

            var (s2, _) = await agent.Client.PostJson("/v1/adapters/active", new { adapter = "support" });
            Assert.Equal(200, s2);
            Assert.Equal(withAdapter, await Greedy(agent));
            Assert.Same(loaded, runtime.Runtime); // the same loaded base throughout

            var (s3, bad) = await agent.Client.PostJson("/v1/adapters/active", new { adapter = "nope" });
            Assert.Equal(400, s3);
            Http.AssertOpenAiError(bad, "adapter_not_found");

            // The field log says which adapter answered.
            using var export = await agent.Client.GetAsync("/v1/field-data?after=0");
            var adaptersUsed = (await export.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Select(l => EdgeTune.Formats.FieldData.FieldExample.FromJsonLine(l)!.Metadata.Adapter).ToList();
            Assert.Equal(["support", null, "support"], adaptersUsed);
        }
        finally
        {
            await agent.DisposeAsync();
        }
    }

    [Fact]
    public async Task Metrics_in_Prometheus_text()
    {
        var agent = new AgentFixture();
        await agent.InitializeAsync();
        try
        {
            await Greedy(agent);
            using var anonymous = await agent.Anonymous.GetAsync("/metrics");
            Assert.Equal(401, (int)anonymous.StatusCode);
            using var response = await agent.Client.GetAsync("/metrics");
            Assert.Equal(200, (int)response.StatusCode);
            Assert.StartsWith("text/plain", response.Content.Headers.ContentType!.ToString());
            string text = await response.Content.ReadAsStringAsync();
            Assert.Contains("edgetune_requests_total{path=\"/v1/completions\",status=\"200\"} 1\n", text, StringComparison.Ordinal);
            Assert.Contains("edgetune_completion_duration_seconds_count 1\n", text, StringComparison.Ordinal);
            Assert.Contains("# TYPE edgetune_time_to_first_token_seconds histogram", text, StringComparison.Ordinal);
            Assert.Contains("edgetune_queue_depth 0\n", text, StringComparison.Ordinal);
            Assert.Contains("edgetune_field_log_records 1\n", text, StringComparison.Ordinal);
            Assert.Matches(@"edgetune_field_log_bytes [1-9]\d*\n", text);
            Assert.Matches(@"edgetune_tokens_per_second [0-9.E+]+\n", text);
        }
        finally
        {
            await agent.DisposeAsync();
        }
    }
}
