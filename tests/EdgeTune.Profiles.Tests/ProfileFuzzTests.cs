using EdgeTune.Testing;
using EdgeTune.Profiles.Toml;
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

    [Fact]
    public void Arrays_nested_past_the_parser_limit_are_a_syntax_error_with_the_place()
    {
        using var dir = new TempDir();
        string path = dir.File("deep.toml");
        File.WriteAllText(path, "schema = 1\nname = " + new string('[', 100) + "\n");
        var e = Assert.Throws<ProfileException>(() => new ProfileLoader(new ProfileCatalog([dir.Path])).Load(path));
        Assert.StartsWith(path + ":", e.Message);
        Assert.Contains("syntax", e.Message);
    }
}
