using System.Globalization;

namespace EdgeTune.Core;

/// <summary>What a benchmark prints about the machine it ran on: the CPU's name and the load average (Linux /proc).</summary>
public static class MachineFacts
{
    public static string CpuName()
    {
        try
        {
            return File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown CPU";
        }
        catch (IOException) { return "unknown CPU"; }
        catch (UnauthorizedAccessException) { return "unknown CPU"; }
    }

    /// <summary>The 1-, 5- and 15-minute load averages as /proc/loadavg writes them ("1.20 0.95 0.80"), or "?".</summary>
    public static string LoadAverages()
    {
        try { return string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (IOException) { return "?"; }
        catch (UnauthorizedAccessException) { return "?"; }
    }

    /// <summary>The 1-minute load average, NaN where /proc/loadavg is missing.</summary>
    public static double LoadAverage() =>
        double.TryParse(LoadAverages().Split(' ')[0], NumberStyles.Float, CultureInfo.InvariantCulture, out double load) ? load : double.NaN;
}
