using System.Text.Json;
using EdgeTune.Formats.FieldData;

namespace EdgeTune.Agent.Tests;

public sealed class FieldLogTests(AgentFixture agent) : IClassFixture<AgentFixture>
{
    private Task<(List<FieldExample> Examples, long Next)> Export(long after, int limit = 1000) => agent.Client.FieldData(after, limit);

    [Fact]
    public async Task Completions_and_feedback_are_logged_and_exported_once_with_corrections_as_targets()
    {
        long start = 0;
        while ((await Export(start, 10_000)) is { Examples.Count: > 0 } page) start = page.Next;
        var ids = new List<string>();
        for (int i = 0; i < 3; i++)
        {
            var (status, body) = await agent.Client.PostJson("/v1/chat/completions", new
            {
                model = "tiny", max_tokens = 4, temperature = 0,
                messages = new[] { new { role = "system", content = "be brief" }, new { role = "user", content = $"question {i}" } },
            });
            Assert.Equal(200, status);
            ids.Add(body.GetProperty("id").GetString()!);
        }
        // A per-request opt-out is not logged.
        var (optStatus, optBody) = await agent.Client.PostJson("/v1/completions", new { model = "tiny", prompt = "private", max_tokens = 2, store = false });
        Assert.Equal(200, optStatus);

        var (fs, fb) = await agent.Client.PostJson("/v1/feedback", new { completion_id = ids[1], rating = -1, corrected = "the right answer" });
        Assert.Equal(200, fs);
        var (rs, _) = await agent.Client.PostJson("/v1/feedback", new { completion_id = ids[2], rating = 1 });
        Assert.Equal(200, rs);
        var (missing, mb) = await agent.Client.PostJson("/v1/feedback", new { completion_id = "chatcmpl-nope", rating = 1 });
        Assert.Equal(404, missing);
        Http.AssertOpenAiError(mb, "completion_not_found");

        var (page1, cursor1) = await Export(start, 2);
        var (page2, cursor2) = await Export(cursor1, 1000);
        var (page3, cursor3) = await Export(cursor2, 1000);
        Assert.Empty(page3);
        Assert.Equal(cursor2, cursor3);
        var all = page1.Concat(page2).ToList();
        Assert.Equal(ids, all.Select(e => e.Metadata.Id).Where(ids.Contains).ToList());
        Assert.Equal(all.Count, all.Select(e => e.Metadata.Id).Distinct().Count());
        Assert.DoesNotContain(all, e => e.Messages.Any(m => m.Content == "private"));

        var first = all.Single(e => e.Metadata.Id == ids[0]);
        Assert.Equal(["system", "user", "assistant"], first.Messages.Select(m => m.Role));
        Assert.Equal("question 0", first.Messages[1].Content);
        Assert.Equal("test-device", first.Metadata.DeviceId);
        Assert.Equal("tiny", first.Metadata.Model);
        Assert.Equal("chat", first.Metadata.Kind);
        Assert.Null(first.Metadata.Feedback);
        Assert.True(first.Metadata.CompletionTokens is > 0 and <= 4);
        Assert.Equal(4, first.Metadata.Sampling!["max_tokens"].GetInt32());

        var corrected = all.Single(e => e.Metadata.Id == ids[1]);
        Assert.Equal("the right answer", corrected.Messages[^1].Content);
        Assert.Equal(-1, corrected.Metadata.Feedback!.Rating);
        Assert.NotNull(corrected.Metadata.ModelOutput);

        var rated = all.Single(e => e.Metadata.Id == ids[2]);
        Assert.Equal(1, rated.Metadata.Feedback!.Rating);
        Assert.Null(rated.Metadata.ModelOutput);

        // Streaming completions are logged too.
        var events = await agent.Client.PostSse("/v1/chat/completions", new { model = "tiny", stream = true, max_tokens = 3, messages = new[] { new { role = "user", content = "streamed" } } });
        string id = JsonDocument.Parse(events[0]).RootElement.GetProperty("id").GetString()!;
        var (page4, _) = await Export(cursor3);
        Assert.Equal(id, Assert.Single(page4).Metadata.Id);
    }

    [Fact]
    public async Task Bad_cursor_bad_limit_and_bad_feedback_are_400()
    {
        foreach (var query in new[] { "after=-3", "after=abc", "after=1&after=2", "limit=0", "limit=10001", "limit=1e3" })
        {
            using var response = await agent.Client.GetAsync($"/v1/field-data?{query}");
            Assert.True(400 == (int)response.StatusCode, query);
            Http.AssertOpenAiError(System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement, "invalid_value");
        }
        var (status, body) = await agent.Client.PostJson("/v1/feedback", new { completion_id = "x" });
        Assert.Equal(400, status);
        Http.AssertOpenAiError(body);
        foreach (var ack in new[] { "{}", "{\"through\": -1}", "{\"through\": \"5\"}", "{\"through\": 1.5}", "[]" })
        {
            var (s, b) = await agent.Client.PostRaw("/v1/field-data/ack", ack);
            Assert.True(400 == s, ack);
            Http.AssertOpenAiError(b, "invalid_value");
        }
    }
}
