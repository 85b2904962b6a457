using EdgeTune.Agent.FieldLog;
using EdgeTune.Formats.FieldData;
using EdgeTune.Testing;

namespace EdgeTune.Agent.Tests;

public sealed class FieldLogPolicyTests
{
    private static CompletionRecord Record(int i) => new($"id-{i}", DateTimeOffset.UtcNow, "dev", "chat", "tiny", null,
        [new FieldMessage("user", $"q{i}")], $"a{i}", new Dictionary<string, object?> { ["max_tokens"] = 4 }, 10, 1, 5, 4, "length");

    [Fact]
    public void Row_cap_evicts_only_acknowledged_records_unrated_first_and_refuses_when_none_is()
    {
        using var dir = new TempDir();
        var messages = new List<string>();
        using var store = new FieldLogStore(dir.File("f.db"), maxRecords: 5, messages.Add);
        for (int i = 1; i <= 5; i++) Assert.NotNull(store.Add(Record(i)));
        Assert.True(store.AddFeedback("id-1", 1, null, null));
        // At the cap with nothing acknowledged: the new record is refused, counted and logged; nothing is dropped.
        Assert.Null(store.Add(Record(6)));
        Assert.Equal(5, store.Count);
        Assert.Equal(1, store.Refused);
        Assert.Equal(0, store.Evicted);
        Assert.Contains(messages, m => m.Contains("field log full", StringComparison.Ordinal));
        Assert.Equal(5, store.Unexported);

        var (first, cursor) = store.Export(0, 3);   // a consumer reads revisions 2..4 (id-1's feedback moved it to 6)
        Assert.Equal(["id-2", "id-3", "id-4"], first.Select(e => e.Metadata.Id));
        Assert.Equal(4, cursor);
        Assert.Null(store.Add(Record(7)));          // reading acknowledged nothing
        Assert.Equal(4, store.Acknowledge(cursor));  // the consumer stored them
        Assert.Equal(2, store.Unexported);
        Assert.NotNull(store.Add(Record(8)));       // room made by evicting id-2, the oldest acknowledged
        Assert.Equal(5, store.Count);
        Assert.Equal(1, store.Evicted);
        Assert.Contains(messages, m => m.Contains("accepts records again", StringComparison.Ordinal));
        var (rest, next) = store.Export(cursor, 100);
        Assert.Equal(["id-5", "id-1", "id-8"], rest.Select(e => e.Metadata.Id)); // id-1's feedback gave it a later revision
        store.Acknowledge(next);
        // Everything acknowledged: unrated records go first, oldest first; id-1 (rated) stays while others remain.
        for (int i = 9; i <= 12; i++) Assert.NotNull(store.Add(Record(i)));
        var (all, _) = store.Export(0, 100);
        Assert.Equal(["id-1", "id-9", "id-10", "id-11", "id-12"], all.Select(e => e.Metadata.Id));
        Assert.Equal(5, store.Evicted);
    }

    [Fact]
    public void Reading_from_any_cursor_acknowledges_nothing_and_only_handed_out_cursors_are_accepted()
    {
        using var dir = new TempDir();
        using var store = new FieldLogStore(dir.File("f.db"), maxRecords: 3);
        for (int i = 1; i <= 3; i++) store.Add(Record(i));
        // A reader that jumps ahead (the old GET ?after=N acknowledged everything up to N) hands out nothing.
        var (skipped, skippedNext) = store.Export(2, 10);
        Assert.Equal("id-3", Assert.Single(skipped).Metadata.Id);
        Assert.Equal(3, skippedNext);
        Assert.Equal(0, store.Issued);
        var e = Assert.Throws<FieldLogException>(() => store.Acknowledge(3));
        Assert.Contains("cursor 3 was not handed out", e.Message, StringComparison.Ordinal);
        Assert.Throws<FieldLogException>(() => store.Acknowledge(1_000));
        Assert.Null(store.Add(Record(4)));        // nothing acknowledged, so nothing unexported was evicted
        using (var page = store.OpenPage(0, 10)) Assert.Equal(["id-1", "id-2", "id-3"], page.Read().Select(x => x.Metadata.Id));

        // Page by page from 0: each end cursor is handed out; any cursor up to it is accepted, an older one changes nothing.
        var (_, c1) = store.Export(0, 2);
        Assert.Equal(2, store.Issued);
        Assert.Throws<FieldLogException>(() => store.Acknowledge(3));
        Assert.Equal(1, store.Acknowledge(1));
        Assert.Equal(2, store.Acknowledge(c1));
        Assert.Equal(2, store.Acknowledge(1));
        var (_, c2) = store.Export(c1, 2);
        Assert.Equal(3, store.Acknowledge(c2));
        Assert.Equal(0, store.Unexported);
    }

    [Fact]
    public void Revisions_are_never_reused_after_eviction_or_restart()
    {
        using var dir = new TempDir();
        var revisions = new List<long>();
        for (int restart = 0; restart < 2; restart++)
        {
            using var store = new FieldLogStore(dir.File("f.db"), maxRecords: 1);
            for (int i = 0; i < 3; i++)
            {
                // Acknowledge everything so the single slot is free: the newest record is evicted each time.
                var (_, next) = store.Export(store.Acknowledged, 10);
                store.Acknowledge(next);
                revisions.Add(store.Add(Record(restart * 10 + i))!.Value);
                Assert.Equal(1, store.Count);
            }
        }
        Assert.Equal([1, 2, 3, 4, 5, 6], revisions);
    }

    [Fact]
    public async Task A_page_is_a_snapshot_read_without_the_store_lock()
    {
        using var dir = new TempDir();
        using var store = new FieldLogStore(dir.File("f.db"));
        for (int i = 1; i <= 5; i++) store.Add(Record(i));
        using var page = store.OpenPage(0, 100);
        Assert.Equal(5, page.Count);
        using var reading = page.Read().GetEnumerator();
        Assert.True(reading.MoveNext());
        // Mid-page, another thread commits a completion and a feedback (they would wait forever if the page held the lock).
        var writer = Task.Run(() => { store.Add(Record(6)); store.AddFeedback("id-2", -1, "fixed", null); });
        Assert.True(await Task.WhenAny(writer, Task.Delay(TimeSpan.FromSeconds(60))) == writer, "a write waited for an open export page");
        await writer;
        var ids = new List<string> { reading.Current.Metadata.Id };
        while (reading.MoveNext()) ids.Add(reading.Current.Metadata.Id);
        Assert.Equal(["id-1", "id-2", "id-3", "id-4", "id-5"], ids); // the page's snapshot: no id-6, id-2 as it was
        Assert.Equal(5, page.Next);
        var (after, _) = store.Export(page.Next, 100);
        Assert.Equal(["id-6", "id-2"], after.Select(e => e.Metadata.Id));
    }

    [Fact]
    public void The_store_refuses_a_database_that_cannot_keep_its_durability_settings()
    {
        // An in-memory database has no WAL: journal_mode reads back "memory", and the store refuses to start.
        var e = Assert.Throws<FieldLogException>(() => new FieldLogStore(":memory:"));
        Assert.Contains("needs journal_mode=WAL but SQLite runs it as 'memory'", e.Message, StringComparison.Ordinal);
        // So does a file opened through SQLite's VFS without shared memory (WAL cannot run there).
        using var dir = new TempDir();
        var e2 = Assert.Throws<FieldLogException>(() => new FieldLogStore("file:" + dir.File("f.db") + "?vfs=unix-none"));
        Assert.Contains("needs journal_mode=WAL", e2.Message, StringComparison.Ordinal);
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

    [Theory]
    // Payment cards: redacted only when the Luhn digit holds, grouped or not, wherever they sit.
    [InlineData("card 4111 1111 1111 1111 expires", "card [x] expires")]
    [InlineData("card 4111-1111-1111-1111.", "card [x].")]
    [InlineData("pay with 5500005555555559 now", "pay with [x] now")]
    [InlineData("amex 3782 822463 10005", "amex [x]")]
    [InlineData("ref 12 4111 1111 1111 1111 2024", "ref 12 [x] 2024")]
    [InlineData("order 4111 1111 1111 1112 shipped", "order 4111 1111 1111 1112 shipped")]
    [InlineData("tracking 1234567890123456", "tracking 1234567890123456")]
    // IBANs: redacted only when mod-97 holds; words after one are kept.
    [InlineData("IBAN DE89 3704 0044 0532 0130 00 OK", "IBAN [x] OK")]
    [InlineData("to GB82WEST12345698765432 please", "to [x] please")]
    [InlineData("to gb82 west 1234 5698 7654 32", "to [x]")]
    [InlineData("not DE89 3704 0044 0532 0130 02", "not DE89 3704 0044 0532 0130 02")]
    // Phone numbers: international, trunk-0 or grouped, 8 to 15 digits; dates, versions and bare order numbers stay.
    [InlineData("call +49 30 1234567 today", "call [x] today")]
    [InlineData("call 030 12345678", "call [x]")]
    [InlineData("call (555) 123-4567", "call [x]")]
    [InlineData("call 0044 20 7946 0958", "call [x]")]
    [InlineData("since 2024-01-15 and 15.01.2024", "since 2024-01-15 and 15.01.2024")]
    [InlineData("version 1.2.3, ticket 5551234567, room 12-34", "version 1.2.3, ticket 5551234567, room 12-34")]
    // E-mail.
    [InlineData("from ann.lee+support@mail.example.co.uk:", "from [x]:")]
    public void Default_rules_redact_checked_pii_and_keep_look_alikes(string text, string expected) =>
        Assert.Equal(expected, new Redactor(Redactor.DefaultRules, "[x]").Apply(text));

    [Fact]
    public void Luhn_and_iban_checks()
    {
        Assert.True(Redactor.Luhn("4111 1111 1111 1111"));
        Assert.False(Redactor.Luhn("4111 1111 1111 1112"));
        Assert.False(Redactor.Luhn("0000 0000 0000")); // 12 digits: too short for a card
        Assert.True(Redactor.Iban("DE89370400440532013000"));
        Assert.True(Redactor.Iban("NL91 ABNA 0417 1643 00"));
        Assert.False(Redactor.Iban("NL91 ABNA 0417 1643 01"));
        Assert.False(Redactor.Iban("DE89"));
    }

    [Fact]
    public async Task Redaction_is_on_by_default_and_an_empty_list_turns_it_off()
    {
        const string text = "I am bob@corp.example, card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, phone +49 30 1234567";
        foreach (var (extra, redacted) in new[] { ("", true), ("redact = []", false) })
        {
            var agent = new AgentFixture(8, null, extra: extra);
            await agent.InitializeAsync();
            try
            {
                var (status, body) = await agent.Client.PostJson("/v1/chat/completions", new { model = "tiny", max_tokens = 2, messages = new[] { new { role = "user", content = text } } });
                Assert.Equal(200, status);
                var (fs, _) = await agent.Client.PostJson("/v1/feedback", new { completion_id = body.GetProperty("id").GetString(), corrected = "mail bob@corp.example", comment = "call 030 12345678" });
                Assert.Equal(200, fs);
                var example = Assert.Single((await agent.Client.FieldData(0)).Examples);
                if (redacted)
                {
                    Assert.Equal("I am [redacted], card [redacted], IBAN [redacted], phone [redacted]", example.Messages[0].Content);
                    Assert.Equal("mail [redacted]", example.Messages[^1].Content);
                    Assert.Equal("call [redacted]", example.Metadata.Feedback!.Comment);
                }
                else
                {
                    Assert.Equal(text, example.Messages[0].Content);
                    Assert.Equal("mail bob@corp.example", example.Messages[^1].Content);
                }
            }
            finally
            {
                await agent.DisposeAsync();
            }
        }
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
