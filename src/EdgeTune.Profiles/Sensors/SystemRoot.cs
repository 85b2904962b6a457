using System.Globalization;

namespace EdgeTune.Profiles.Sensors;

/// <summary>
/// The board's /sys, /proc and /etc, read under a configurable root: "/" on a board, a folder tree in tests
/// (or a copy of a board's files). Every read is forgiving: a missing or unreadable file is null, because
/// sensors that are absent are normal (a development machine has none of them).
/// </summary>
public sealed class SystemRoot(string root)
{
    public static readonly SystemRoot Host = new("/");

    public string Root { get; } = root;

    /// <summary>An absolute board path ("/sys/class/thermal") under the root.</summary>
    public string Map(string absolute) => Root == "/" ? absolute : Path.Combine(Root, absolute.TrimStart('/'));

    public bool Exists(string absolute) => File.Exists(Map(absolute)) || Directory.Exists(Map(absolute));

    /// <summary>Text of a sysfs or procfs file, trimmed of whitespace and the NULs device-tree strings end with.</summary>
    public string? ReadText(string absolute)
    {
        try
        {
            return File.ReadAllText(Map(absolute)).Trim().TrimEnd('\0').Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return null;
        }
    }

    public byte[]? ReadBytes(string absolute)
    {
        try
        {
            return File.ReadAllBytes(Map(absolute));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return null;
        }
    }

    public long? ReadLong(string absolute) =>
        ReadText(absolute) is { } text && long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out long value) ? value : null;

    /// <summary>Sub-folders of a board folder, as board paths, in a stable order (links to folders included).</summary>
    public IReadOnlyList<string> Folders(string absolute, string pattern = "*")
    {
        string mapped = Map(absolute);
        if (!Directory.Exists(mapped)) return [];
        try
        {
            return Directory.EnumerateDirectories(mapped, pattern)
                .Select(d => absolute.TrimEnd('/') + "/" + Path.GetFileName(d))
                .Order(NaturalOrder.Instance)
                .ToList();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return [];
        }
    }

    public IReadOnlyList<string> Files(string absolute, string pattern)
    {
        string mapped = Map(absolute);
        if (!Directory.Exists(mapped)) return [];
        try
        {
            return Directory.EnumerateFiles(mapped, pattern)
                .Select(f => absolute.TrimEnd('/') + "/" + Path.GetFileName(f))
                .Order(NaturalOrder.Instance)
                .ToList();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return [];
        }
    }

    public override string ToString() => Root;

    /// <summary>thermal_zone2 before thermal_zone10.</summary>
    private sealed class NaturalOrder : IComparer<string>
    {
        public static readonly NaturalOrder Instance = new();

        public int Compare(string? x, string? y)
        {
            if (x is null || y is null) return string.CompareOrdinal(x, y);
            int i = 0, j = 0;
            while (i < x.Length && j < y.Length)
            {
                if (char.IsAsciiDigit(x[i]) && char.IsAsciiDigit(y[j]))
                {
                    int si = i, sj = j;
                    while (i < x.Length && char.IsAsciiDigit(x[i])) i++;
                    while (j < y.Length && char.IsAsciiDigit(y[j])) j++;
                    string a = x[si..i].TrimStart('0'), b = y[sj..j].TrimStart('0');
                    int c = a.Length != b.Length ? a.Length.CompareTo(b.Length) : string.CompareOrdinal(a, b);
                    if (c != 0) return c;
                }
                else
                {
                    int c = x[i].CompareTo(y[j]);
                    if (c != 0) return c;
                    i++;
                    j++;
                }
            }
            return (x.Length - i).CompareTo(y.Length - j);
        }
    }
}
