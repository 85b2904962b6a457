using EdgeTune.Agent.FieldLog;
using EdgeTune.Formats.FieldData;
using EdgeTune.Testing;

namespace EdgeTune.Agent.Tests;

public sealed class FieldLogPolicyTests
{
    private static CompletionRecord Record(int i) => new($"id-{i}", DateTimeOffset.UtcNow, "dev", "chat", "tiny", null,
        [new FieldMessage("user", $"q{i}")], $"a{i}", new Dictionary<string, object?> { ["max_tokens"] = 4 }, 10, 1, 5, 4, "length");

    [Fact]
    public void Row_cap_evicts_only_exported_records_without_feedback_oldest_first()
    {
        using var dir = new TempDir();
        var messages = new List<string>();
        using var store = new FieldLogStore(dir.File("f.db"), maxRecords: 5, messages.Add);
        for (int i = 1; i <= 5; i++) store.Add(Record(i));
        Assert.True(store.AddFeedback("id-1", 1, null, null));
        store.Add(Record(6));
        // Nothing exported yet: over the cap, but nothing may go.
        Assert.Equal(6, store.Count);
        Assert.Contains(messages, m => m.Contains("not yet exported", StringComparison.Ordinal));
        Assert.Equal(6, store.Unexported);

        var (first, cursor) = store.Export(0, 3);   // a consumer reads 1..3
        Assert.Equal(3, first.Count);
        var (rest, _) = store.Export(cursor, 100);   // passing cursor 3 back acknowledges 1..3
        Assert.Equal(3, rest.Count);
        Assert.Equal(3, store.Unexported);
        store.Add(Record(7));
        // 7 rows, cap 5: evict 2 oldest exported without feedback: id-2 and id-3 (id-1 has feedback).
        Assert.Equal(5, store.Count);
        Assert.Equal(2, store.Evicted);
        var (all, _) = store.Export(0, 100);
        // In revision order: id-1's feedback gave it a later revision than id-5.
        Assert.Equal(["id-4", "id-5", "id-1", "id-6", "id-7"], all.Select(e => e.Metadata.Id));
        Assert.Contains(messages, m => m.Contains("evicted the 2 oldest", StringComparison.Ordinal));
    }

    [Fact]
    public void Feedback_after_export_sends_the_record_again_with_its_feedback()
    {
        using var dir = new TempDir();
        using var store = new FieldLogStore(dir.File("f.db"));
        store.Add(Record(1));
        store.Add(Record(2));
        var (first, cursor) = store.Export(0, 100);
        Assert.Equal(2, first.Count);
        Assert.True(store.AddFeedback("id-1", null, "better", null));
        var (again, next) = store.Export(cursor, 100);
        var example = Assert.Single(again);
        Assert.Equal("id-1", example.Metadata.Id);
        Assert.Equal("better", example.Messages[^1].Content);
        Assert.Empty(store.Export(next, 100).Examples);
    }

    [Fact]
    public void Redaction_rules()
    {
        var r = new Redactor(["email", "phone", @"order #\d+"], "[redacted]");
        Assert.Equal("mail [redacted] or call [redacted] about [redacted].",
            r.Apply("mail ann.lee@example.com or call +1 (555) 123-4567 about order #8812."));
    }

    [Fact]
    public async Task Redaction_and_opt_out_apply_before_anything_is_stored()
    {
        var agent = new AgentFixture(8, null, extra: "redact = [\"email\"]\nredact_replacement = \"<pii>\"");
        await agent.InitializeAsync();
        try
        {
            var (status, body) = await agent.Client.PostJson("/v1/chat/completions", new { model = "tiny", max_tokens = 2, messages = new[] { new { role = "user", content = "I am bob@corp.example" } } });
            Assert.Equal(200, status);
            string id = body.GetProperty("id").GetString()!;
            var (fs, _) = await agent.Client.PostJson("/v1/feedback", new { completion_id = id, corrected = "write to bob@corp.example" });
            Assert.Equal(200, fs);
            using var export = await agent.Client.GetAsync("/v1/field-data?after=0");
            string text = await export.Content.ReadAsStringAsync();
            Assert.DoesNotContain("bob@corp.example", text, StringComparison.Ordinal);
            var example = FieldExample.FromJsonLine(text.Trim())!;
            Assert.Equal("I am <pii>", example.Messages[0].Content);
            Assert.Equal("write to <pii>", example.Messages[^1].Content);
        }
        finally
        {
            await agent.DisposeAsync();
        }
    }

    [Fact]
    public void Bad_redaction_pattern_is_refused_at_its_place()
    {
        using var dir = new TempDir();
        string config = TinyAgentModel.WriteConfig(dir.Path, "m.gguf", extra: "redact = [\"email\", \"(unclosed\"]");
        var e = Assert.Throws<EdgeTune.Agent.Config.AgentConfigException>(() => EdgeTune.Agent.Config.AgentConfig.Load(config, checkFiles: false));
        Assert.Matches(@"agent\.toml:\d+:\d+: field_log\.redact: '\(unclosed' is not a valid regular expression", e.Message);
    }
}
