using EdgeTune.Testing;

namespace EdgeTune.Profiles.Tests;

/// <summary>A minimal valid profile, written line by line so tests can name the exact line and column of a change.</summary>
internal static class TestProfiles
{
    // Line numbers are part of the tests' expectations: keep the layout.
    public static readonly string[] Minimal =
    [
        "schema = 1",                                                                                           // 1
        "name = \"NAME\"",                                                                                      // 2
        "display_name = \"Test board\"",                                                                        // 3
        "",                                                                                                     // 4
        "[identity]",                                                                                           // 5
        "vendor = \"Test\"",                                                                                    // 6
        "soc = \"Test SoC\"",                                                                                   // 7
        "architecture = \"aarch64\"",                                                                           // 8
        "device_tree_ids = [\"test,board-1\"]",                                                                 // 9
        "",                                                                                                     // 10
        "[cpu]",                                                                                                // 11
        "model = \"Cortex-A78AE\"",                                                                             // 12
        "cores = { value = 6, source = \"https://example.com/datasheet\" }",                                    // 13
        "isa = { value = \"armv8.2-a\", source = \"https://example.com/datasheet\" }",                          // 14
        "",                                                                                                     // 15
        "[memory]",                                                                                             // 16
        "total = { value = 8, unit = \"GB\", source = \"https://example.com/datasheet\" }",                     // 17
        "usable_for_model = { value = 6, unit = \"GB\", source = \"estimate: the OS keeps 2 GB\" }",            // 18
        "bandwidth = { value = 68, unit = \"GB/s\", source = \"https://example.com/datasheet\" }",              // 19
        "",                                                                                                     // 20
        "[runtimes]",                                                                                           // 21
        "llama_cpp_cpu = true",                                                                                 // 22
    ];

    public static string Text(string name, Func<string[], IEnumerable<string>>? edit = null) =>
        string.Join('\n', (edit ?? (l => l))(Minimal.Select(l => l.Replace("NAME", name, StringComparison.Ordinal)).ToArray())) + "\n";

    /// <summary>Writes NAME.toml into the folder and returns its path.</summary>
    public static string Write(TempDir dir, string name, Func<string[], IEnumerable<string>>? edit = null)
    {
        string path = dir.File(name + ".toml");
        File.WriteAllText(path, Text(name, edit));
        return path;
    }

    public static string WriteRaw(TempDir dir, string name, string text)
    {
        string path = dir.File(name + ".toml");
        File.WriteAllText(path, text);
        return path;
    }

    /// <summary>Replace line <paramref name="number"/> (1-based).</summary>
    public static Func<string[], IEnumerable<string>> Line(int number, string text) => lines =>
    {
        var copy = lines.ToArray();
        copy[number - 1] = text;
        return copy;
    };

    public static Func<string[], IEnumerable<string>> Remove(params int[] numbers) => lines =>
        lines.Where((_, i) => !numbers.Contains(i + 1)).ToArray();

    public static Func<string[], IEnumerable<string>> Append(params string[] extra) => lines => lines.Concat(extra).ToArray();

    public static ProfileLoader Loader(TempDir dir) => new(new ProfileCatalog([dir.Path]));

    /// <summary>The repository root (the folder holding EdgeTune.sln).</summary>
    public static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "EdgeTune.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("EdgeTune.sln not found above " + AppContext.BaseDirectory);
    }

    public static string ShippedProfiles => Path.Combine(RepoRoot(), "profiles");
}
