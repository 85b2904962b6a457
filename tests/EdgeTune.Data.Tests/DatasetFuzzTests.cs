using EdgeTune.Testing;
using EdgeTune.Testing.Fuzz;

namespace EdgeTune.Data.Tests;

/// <summary>
/// Seeded slices of the dataset fuzz (Testing/Fuzz; the full 10,000 and more: `EdgeTune.Benchmarks fuzz --format
/// jsonl|csv`): `data check` on a mutated file reports bad rows as findings naming the file and the line, throws
/// nothing else, does not hang and allocates nothing sized by the input's claims.
/// </summary>
public class DatasetFuzzTests
{
    [Theory]
    [InlineData("jsonl", 31)]
    [InlineData("csv", 32)]
    public void Mutated_files_are_checked_with_findings_naming_the_line(string format, ulong seed)
    {
        using var dir = new TempDir();
        var report = FuzzRunner.Run(FuzzTargets.Get(format), count: 300, seed, dir.Path);
        Assert.True(report.Failures.Count == 0, string.Join("\n", report.Failures));
        Assert.True(report.Accepted > 1 && report.Refused > report.Count / 4, report.Summary);
    }

    // ---- what the fuzz found, kept as regressions ----

    [Fact]
    public void An_unpaired_surrogate_escape_in_a_name_is_a_malformed_row_not_a_crash()
    {
        using var dir = new TempDir();
        string jsonl = dir.File("rows.jsonl");
        File.WriteAllText(jsonl, """
            {"messages": [{"role": "user", "cont\ud800": "hi"}, {"role": "assistant", "content": "hello"}]}
            {"prompt": "a", "completion": "b"}
            """);
        var items = DatasetReader.Read(jsonl).ToList();
        Assert.Equal(2, items.Count);
        Assert.Equal("malformed", items[0].Finding!.Kind);
        Assert.Equal(1, items[0].Finding!.Line);
        Assert.Contains("surrogate", items[0].Finding!.Message);
        Assert.NotNull(items[1].Example);

        string array = dir.File("rows.json");
        File.WriteAllText(array, """[{"prompt\udc00": "a", "completion": "b"}, {"prompt": "c", "completion": "d"}]""");
        items = DatasetReader.Read(array).ToList();
        Assert.Equal("malformed", items[0].Finding!.Kind);
        Assert.NotNull(items[1].Example);
    }

    [Fact]
    public void A_csv_header_with_a_line_break_in_a_name_gives_a_one_line_finding()
    {
        using var dir = new TempDir();
        string csv = dir.File("rows.csv");
        File.WriteAllText(csv, "\"in\nstruction\",output\na,b\n");
        var finding = Assert.Single(DatasetReader.Read(csv)).Finding!;
        Assert.Equal("unreadable", finding.Kind);
        Assert.DoesNotContain('\n', finding.Message);
        Assert.Contains("in\\u000astruction", finding.Message);
    }

    [Fact]
    public void An_empty_file_is_named_by_the_size_finding()
    {
        using var dir = new TempDir();
        string empty = dir.File("empty.jsonl");
        File.WriteAllText(empty, "\n\n");
        var checker = new DataChecker();
        checker.AddFile(empty);
        foreach (var item in DatasetReader.Read(empty)) checker.Add(item);
        var size = Assert.Single(checker.Finish().Findings);
        Assert.Equal("size", size.Kind);
        Assert.Equal(empty, size.File);
    }
}
