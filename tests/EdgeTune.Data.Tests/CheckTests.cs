using EdgeTune.Testing;

namespace EdgeTune.Data.Tests;

public class CheckTests
{
    private static CheckReport Check(string file, CheckOptions? options = null)
    {
        var checker = new DataChecker(options);
        foreach (var item in DatasetReader.Read(file)) checker.Add(item);
        return checker.Finish();
    }

    [Fact]
    public void Clean_file_reports_nothing()
    {
        using var dir = new TempDir();
        string file = dir.File("clean.jsonl");
        File.WriteAllLines(file, Rows.Clean(150));
        var report = Check(file);
        Assert.Empty(report.Findings);
        Assert.Equal(150L, report.Summary["examples"]);
    }

    [Fact]
    public void Every_planted_problem_is_reported_with_its_line()
    {
        using var dir = new TempDir();
        string file = dir.File("planted.jsonl");
        var rows = Rows.Clean(150);
        var r = new Random(9);
        string longInstruction = Rows.Sentence(r, 30);
        var planted = new (int Line, string Kind, string Row)[]
        {
            (151, "duplicate", rows[4]),
            (152, "", Rows.Alpaca(longInstruction, "Fine.")), // the first of the pair: not itself a finding
            (153, "near-duplicate", Rows.Alpaca(longInstruction[..^1] + " apple.", "Fine.")),
            (154, "conflict", Rows.Alpaca(System.Text.Json.JsonDocument.Parse(rows[7]).RootElement.GetProperty("instruction").GetString()!, "Something else entirely.")),
            (155, "empty-answer", Rows.Alpaca("Say nothing at all now.", "   ")),
            (156, "malformed", "{\"instruction\": \"broken\","),
            (157, "format", Rows.Alpaca("Lower case answer please.", "lower case answer here.")),
            (158, "format", Rows.Alpaca("Trailing space answer please.", "Ends with a space. ")),
            (159, "pii", Rows.Alpaca("Who to mail?", "Write to jane.doe@example.com today.")),
            (160, "pii", Rows.Alpaca("Which card?", "Use 4111 1111 1111 1111 for the test.")),
            (161, "pii", Rows.Alpaca("Which number?", "Call +44 20 7946 0958 after noon.")),
        };
        rows.AddRange(planted.Select(p => p.Row));
        File.WriteAllLines(file, rows);

        var report = Check(file);
        foreach (var p in planted.Where(p => p.Kind.Length > 0))
            Assert.Contains(report.Findings, f => f.Line == p.Line && f.Kind == p.Kind);
        // Nothing else: the clean rows stay clean, and line 152 is the first of its pair.
        Assert.All(report.Findings, f => Assert.Contains(planted, p => p.Line == f.Line && p.Kind == f.Kind));
        Assert.DoesNotContain(report.Findings, f => f.Line == 152);
        Assert.True(report.Errors > 0);
    }

    [Fact]
    public void Json_answers_among_json_and_other_key_sets_are_format_findings()
    {
        using var dir = new TempDir();
        string file = dir.File("json.jsonl");
        var r = new Random(3);
        var rows = Enumerable.Range(0, 120).Select(i => Rows.Alpaca(Rows.Sentence(r, 10), $"{{\"intent\": \"{Rows.Words(r, 1)}\", \"slots\": {i}}}")).ToList();
        rows.Add(Rows.Alpaca("Prose instead?", "Sorry, I cannot."));
        rows.Add(Rows.Alpaca("Other keys?", "{\"intent\": \"x\", \"extra\": 1}"));
        File.WriteAllLines(file, rows);
        var findings = Check(file).Findings;
        Assert.Equal([121L, 122], findings.Select(f => f.Line));
        Assert.All(findings, f => Assert.Equal("format", f.Kind));
    }

    [Fact]
    public void Labels_out_of_balance_and_small_size_are_dataset_findings()
    {
        using var dir = new TempDir();
        string file = dir.File("labels.jsonl");
        var r = new Random(5);
        File.WriteAllLines(file, Enumerable.Range(0, 60).Select(i =>
            System.Text.Json.JsonSerializer.Serialize(new { prompt = Rows.Sentence(r, 10), completion = Rows.Sentence(r, 6), label = i < 55 ? "ok" : "refund" })));
        var report = Check(file);
        Assert.Contains(report.Findings, f => f.Kind == "label-balance" && f.Line == 0 && f.Message.Contains("'refund' has 5"));
        Assert.Contains(report.Findings, f => f.Kind == "size");
    }

    [Fact]
    public void Over_length_examples_are_reported()
    {
        using var dir = new TempDir();
        string file = dir.File("long.jsonl");
        var rows = Rows.Clean(120);
        rows.Add(Rows.Alpaca(Rows.Sentence(new Random(2), 200), "Short."));
        File.WriteAllLines(file, rows);
        var report = Check(file, new CheckOptions { TokenCount = e => e.Messages.Sum(m => m.Content.Length) / 4, MaxTokens = 100 });
        Assert.Equal(121L, Assert.Single(report.Findings).Line);
    }

    [Theory]
    [InlineData("4111111111111111", true)]
    [InlineData("4111111111111112", false)]
    public void Luhn(string digits, bool valid) => Assert.Equal(valid, DataChecker.Luhn(digits));
}
