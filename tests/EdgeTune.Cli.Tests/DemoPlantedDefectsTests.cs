using EdgeTune.Cli.Demo;
using EdgeTune.Data;
using EdgeTune.Data.Synthetic;
using EdgeTune.Testing;

namespace EdgeTune.Cli.Tests;

/// <summary>The demo's "planted defects found" line: a defect counts only when the check names it by its own kind on its line.</summary>
public class DemoPlantedDefectsTests
{
    [Fact]
    public void A_finding_of_another_kind_on_the_line_does_not_count()
    {
        PlantedDefect[] planted = [new("duplicate", 10), new("pii", 20), new("conflict", 30)];
        DataFinding[] findings =
        [
            new("duplicate", Severity.Warning, "t.jsonl", 10, "same as line 3"),  // its own kind: found
            new("format", Severity.Warning, "t.jsonl", 20, "prose answer"),       // another kind on the pii line: not found
            new("conflict", Severity.Info, "t.jsonl", 30, "informational only"), // info does not count
            new("conflict", Severity.Error, "t.jsonl", 31, "the next line"),     // its kind, wrong line
        ];
        Assert.Equal(1, DemoWorld.PlantedFound(planted, findings));
    }

    [Fact]
    public void The_check_finds_every_defect_the_demo_plants_by_its_kind()
    {
        using var dir = new TempDir();
        string file = dir.File("tickets.jsonl");
        var planted = SupportTickets.Write(file, 900, seed: 2026, plantDefects: true);
        Assert.Equal(["conflict", "duplicate", "empty-answer", "format", "malformed", "near-duplicate", "over-length", "pii"],
            planted.Select(p => p.Kind).Distinct().Order(StringComparer.Ordinal));
        // Words stand in for tokens: the over-length ticket repeats one ticket 60 times.
        var checker = new DataChecker(new CheckOptions { TokenCount = e => e.Messages.Sum(m => m.Content.Split(' ').Length), MaxTokens = 400 });
        foreach (var item in DatasetReader.Read(file)) checker.Add(item);
        var findings = checker.Finish().Findings;

        var missed = planted.Where(p => DemoWorld.PlantedFound([p], findings) == 0)
            .Select(p => $"{p.Kind} at line {p.Line} (found there: {string.Join(", ", findings.Where(f => f.Line == p.Line).Select(f => f.Kind).DefaultIfEmpty("nothing"))})");
        Assert.Empty(missed);
    }
}
