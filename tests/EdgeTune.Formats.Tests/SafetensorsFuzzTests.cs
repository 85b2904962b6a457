using EdgeTune.Testing;
using EdgeTune.Testing.Fuzz;

namespace EdgeTune.Formats.Tests;

public class SafetensorsFuzzTests
{
    /// <summary>
    /// A seeded slice of the safetensors fuzz (Testing/Fuzz; the full 10,000 and more: `EdgeTune.Benchmarks fuzz
    /// --format safetensors`): mutated JSON headers and header lengths open, with every accessor inside the file, or
    /// fail with a FileFormatException naming the file; no other exception, no hang, no allocation sized by a header.
    /// </summary>
    [Fact]
    public void Mutated_headers_open_or_fail_with_FileFormatException_only()
    {
        using var dir = new TempDir();
        var report = FuzzRunner.Run(FuzzTargets.Safetensors(), count: 400, seed: 20240611, dir.Path);
        Assert.True(report.Failures.Count == 0, string.Join("\n", report.Failures));
        Assert.True(report.Accepted > 1 && report.Refused > report.Count / 3, report.Summary);
    }
}
