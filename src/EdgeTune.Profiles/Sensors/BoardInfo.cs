using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace EdgeTune.Profiles.Sensors;

/// <summary>The board's identity from the device tree: /proc/device-tree/compatible (NUL-separated) and model.</summary>
public sealed record DeviceTree(IReadOnlyList<string> Compatible, string? Model)
{
    public static DeviceTree Read(SystemRoot root)
    {
        var bytes = root.ReadBytes("/proc/device-tree/compatible");
        var compatible = bytes is null
            ? []
            : Encoding.ASCII.GetString(bytes).Split('\0', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
        return new DeviceTree(compatible, root.ReadText("/proc/device-tree/model"));
    }

    public bool IsPresent => Compatible.Count > 0;

    /// <summary>
    /// Whether a profile id ("nvidia,p3767-0005") names this board. A compatible entry may join several
    /// parts with '+' ("nvidia,p3768-0000+p3767-0005") and a part may carry a suffix ("p3767-0005-super").
    /// </summary>
    public bool Matches(string id)
    {
        int comma = id.IndexOf(',', StringComparison.Ordinal);
        if (comma < 0) return false;
        string vendor = id[..comma], part = id[(comma + 1)..];
        foreach (var entry in Compatible)
        {
            int c = entry.IndexOf(',', StringComparison.Ordinal);
            if (c < 0 || !string.Equals(entry[..c], vendor, StringComparison.OrdinalIgnoreCase)) continue;
            foreach (var p in entry[(c + 1)..].Split('+'))
                if (string.Equals(p, part, StringComparison.OrdinalIgnoreCase) || p.StartsWith(part + "-", StringComparison.OrdinalIgnoreCase))
                    return true;
        }
        return false;
    }
}

/// <summary>
/// nvpmodel's power modes as the board defines them: /etc/nvpmodel.conf declares
/// <c>&lt; POWER_MODEL ID=2 NAME=MAXN_SUPER &gt;</c> and <c>&lt; PM_CONFIG DEFAULT=2 &gt;</c>; /var/lib/nvpmodel/status
/// holds the active one as <c>pmode:0002</c>. The ids differ between modules and JetPack releases, which is
/// why profiles name modes and the ids are read here.
/// </summary>
public sealed partial record NvpModel(IReadOnlyDictionary<int, string> Modes, int? DefaultId, int? ActiveId)
{
    public static NvpModel? Read(SystemRoot root)
    {
        var conf = root.ReadText("/etc/nvpmodel.conf");
        if (conf is null) return null;
        var modes = new SortedDictionary<int, string>();
        foreach (Match m in ModeLine().Matches(conf)) modes.TryAdd(int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), m.Groups[2].Value);
        int? defaultId = DefaultLine().Match(conf) is { Success: true } d ? int.Parse(d.Groups[1].Value, CultureInfo.InvariantCulture) : null;
        int? active = root.ReadText("/var/lib/nvpmodel/status") is { } status && StatusLine().Match(status) is { Success: true } s
            ? int.Parse(s.Groups[1].Value, CultureInfo.InvariantCulture)
            : null;
        return new NvpModel(modes, defaultId, active);
    }

    /// <summary>The active mode's name: the saved status, else the configured default (nvpmodel's own rule).</summary>
    public string? ActiveName => (ActiveId ?? DefaultId) is { } id && Modes.TryGetValue(id, out var name) ? name : null;

    public bool Defines(string name) => Modes.Values.Any(v => string.Equals(v, name, StringComparison.OrdinalIgnoreCase));

    [GeneratedRegex(@"<\s*POWER_MODEL\s+ID\s*=\s*(\d+)\s+NAME\s*=\s*([^\s>]+)", RegexOptions.IgnoreCase)]
    private static partial Regex ModeLine();

    [GeneratedRegex(@"<\s*PM_CONFIG\s+DEFAULT\s*=\s*(\d+)", RegexOptions.IgnoreCase)]
    private static partial Regex DefaultLine();

    [GeneratedRegex(@"pmode\s*:\s*(\d+)", RegexOptions.IgnoreCase)]
    private static partial Regex StatusLine();
}

/// <summary>System memory from /proc/meminfo (kB there, bytes here).</summary>
public sealed record MemInfo(long TotalBytes, long AvailableBytes)
{
    public static MemInfo? Read(SystemRoot root)
    {
        var text = root.ReadText("/proc/meminfo");
        if (text is null) return null;
        long total = -1, available = -1;
        foreach (var line in text.Split('\n'))
        {
            var parts = line.Split(':', 2);
            if (parts.Length != 2) continue;
            var number = parts[1].Trim().Split(' ')[0];
            if (!long.TryParse(number, NumberStyles.Integer, CultureInfo.InvariantCulture, out long kb)) continue;
            if (parts[0] == "MemTotal") total = kb * 1024;
            else if (parts[0] == "MemAvailable") available = kb * 1024;
        }
        return total < 0 ? null : new MemInfo(total, available < 0 ? total : available);
    }
}
