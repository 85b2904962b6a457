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
}
