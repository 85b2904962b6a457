namespace EdgeTune.Profiles;

/// <summary>
/// Where profiles are found by name: a list of folders holding <c>NAME.toml</c>, searched in order. The
/// default list is <c>$EDGETUNE_PROFILES</c> (folders separated by the path separator), <c>./profiles</c>,
/// and the <c>profiles</c> folder shipped next to the program.
/// </summary>
public sealed class ProfileCatalog(IEnumerable<string> directories)
{
    public const string EnvironmentVariable = "EDGETUNE_PROFILES";

    public IReadOnlyList<string> Directories { get; } = directories.Where(d => !string.IsNullOrWhiteSpace(d)).Distinct().ToList();

    public static ProfileCatalog Default()
    {
        var dirs = new List<string>();
        if (Environment.GetEnvironmentVariable(EnvironmentVariable) is { Length: > 0 } env)
            dirs.AddRange(env.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        dirs.Add(Path.Combine(Directory.GetCurrentDirectory(), "profiles"));
        dirs.Add(Path.Combine(AppContext.BaseDirectory, "profiles"));
        return new ProfileCatalog(dirs);
    }

    /// <summary>
    /// A profile argument as users write it: a path to a .toml file, or a profile name looked up in the
    /// catalogue folders. Null when nothing matches.
    /// </summary>
    public string? Resolve(string nameOrPath)
    {
        if (File.Exists(nameOrPath)) return nameOrPath;
        if (nameOrPath.EndsWith(".toml", StringComparison.OrdinalIgnoreCase) || nameOrPath.Contains('/') || nameOrPath.Contains('\\'))
            return null;
        foreach (var dir in Directories)
        {
            string candidate = Path.Combine(dir, nameOrPath + ".toml");
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }

    /// <summary>The profiles the catalogue holds, one per name (the first folder that has a name wins).</summary>
    public IReadOnlyList<string> List()
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var files = new List<string>();
        foreach (var dir in Directories.Where(Directory.Exists))
            foreach (var file in Directory.EnumerateFiles(dir, "*.toml").Order(StringComparer.Ordinal))
                if (seen.Add(Path.GetFileNameWithoutExtension(file))) files.Add(file);
        return files;
    }

    public string DescribeSearch(string name) =>
        $"looked for {name}.toml in {string.Join(", ", Directories)}";
}
