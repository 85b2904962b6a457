using EdgeTune.Testing;
using EdgeTune.Testing.Fuzz;

namespace EdgeTune.Profiles.Tests;

/// <summary>
/// A seeded slice of the profile fuzz (Testing/Fuzz; the full 10,000 and more: `EdgeTune.Benchmarks fuzz --format
/// profile`): a mutated profile loads or is refused with one line naming the file, line and column; nothing else.
/// </summary>
public class ProfileFuzzTests
{
    [Fact]
    public void Mutated_profiles_load_or_are_refused_with_the_place()
    {
        using var dir = new TempDir();
        var report = FuzzRunner.Run(FuzzTargets.Profile(), count: 300, seed: 2027, dir.Path);
        Assert.True(report.Failures.Count == 0, string.Join("\n", report.Failures));
        Assert.True(report.Accepted > 1 && report.Refused > report.Count / 4, report.Summary);
    }
}
