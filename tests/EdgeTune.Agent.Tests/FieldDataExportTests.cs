using EdgeTune.Agent.FieldLog;
using EdgeTune.Formats.FieldData;
using Microsoft.Extensions.DependencyInjection;

namespace EdgeTune.Agent.Tests;

public sealed class FieldDataExportTests
{
    private static CompletionRecord Record(int i) => new($"rec-{i:D5}", DateTimeOffset.UtcNow, "dev", "chat", "tiny", null,
        [new FieldMessage("user", $"question {i} " + new string('q', 200))], $"answer {i}", new Dictionary<string, object?> { ["max_tokens"] = 4 }, 10, 1, 5, 4, "length");

    [Fact]
    public async Task Http_export_streams_bounded_pages_and_only_an_ack_moves_the_consumer()
    {
        var agent = new AgentFixture(8, null, extra: "max_records = 1500");
        await agent.InitializeAsync();
        try
        {
            var store = agent.App.Services.GetRequiredService<FieldLogStore>();
            for (int i = 0; i < 1500; i++) store.Add(Record(i));

            // The default page is 1000 records, sent as a stream (chunked, no length known in advance).
            using (var response = await agent.Client.GetAsync("/v1/field-data", HttpCompletionOption.ResponseHeadersRead))
            {
                Assert.True(response.Headers.TransferEncodingChunked);
                Assert.Null(response.Content.Headers.ContentLength);
                Assert.Equal("1000", response.Headers.GetValues("EdgeTune-Count").Single());
            }
            var (first, c1) = await agent.Client.FieldData(0);
            Assert.Equal(1000, first.Count);
            var (page, c2) = await agent.Client.FieldData(c1, 400);
            Assert.Equal(400, page.Count);
            var (last, c3) = await agent.Client.FieldData(c2, 10_000);
            Assert.Equal(100, last.Count);
            Assert.Equal(Enumerable.Range(0, 1500).Select(i => $"rec-{i:D5}"), first.Concat(page).Concat(last).Select(e => e.Metadata.Id));
            Assert.Empty((await agent.Client.FieldData(c3)).Examples);

            // Reading everything acknowledged nothing: the full log refuses the next record rather than drop one.
            var (status, _) = await agent.Client.PostJson("/v1/completions", new { model = "tiny", prompt = "one more", max_tokens = 1 });
            Assert.Equal(200, status);
            Assert.Equal(1500, store.Count);
            using (var metrics = await agent.Client.GetAsync("/metrics"))
            {
                string text = await metrics.Content.ReadAsStringAsync();
                Assert.Contains("edgetune_field_log_refused_total 1\n", text, StringComparison.Ordinal);
                Assert.Contains("edgetune_field_log_unexported 1500\n", text, StringComparison.Ordinal);
            }

            // A cursor never handed out is refused; the handed-out one is taken, and room is made from then on.
            var (bad, badBody) = await agent.Client.PostJson("/v1/field-data/ack", new { through = c3 + 1 });
            Assert.Equal(409, bad);
            Http.AssertOpenAiError(badBody, "cursor_not_issued");
            var (ok, ack) = await agent.Client.PostJson("/v1/field-data/ack", new { through = c2 });
            Assert.Equal(200, ok);
            Assert.Equal(c2, ack.GetProperty("acknowledged").GetInt64());
            Assert.Equal(100, ack.GetProperty("unexported").GetInt64());
            var (again, completion) = await agent.Client.PostJson("/v1/completions", new { model = "tiny", prompt = "one more", max_tokens = 1 });
            Assert.Equal(200, again);
            var (tail, _) = await agent.Client.FieldData(c3);
            Assert.Equal(completion.GetProperty("id").GetString(), Assert.Single(tail).Metadata.Id);
            Assert.Equal(1, store.Evicted);
        }
        finally
        {
            await agent.DisposeAsync();
        }
    }
}
