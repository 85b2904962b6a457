using EdgeTune.Testing;
using EdgeTune.Testing.Fuzz;

namespace EdgeTune.Recipes.Tests;

/// <summary>
/// A seeded slice of the recipe fuzz (Testing/Fuzz; the full 10,000 and more: `EdgeTune.Benchmarks fuzz --format
/// recipe`): a mutated recipe loads or is refused with one line naming the file, line and column; nothing else.
/// </summary>
public class RecipeFuzzTests
{
    [Fact]
    public void Mutated_recipes_load_or_are_refused_with_the_place()
    {
        using var dir = new TempDir();
        var report = FuzzRunner.Run(FuzzTargets.Recipe(), count: 300, seed: 2026, dir.Path);
        Assert.True(report.Failures.Count == 0, string.Join("\n", report.Failures));
        Assert.True(report.Accepted > 1 && report.Refused > report.Count / 4, report.Summary);
    }
}
