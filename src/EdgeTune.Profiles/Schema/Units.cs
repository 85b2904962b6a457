using System.Globalization;

namespace EdgeTune.Profiles.Schema;

/// <summary>What a figure measures; each has a canonical unit the profile model stores values in.</summary>
public enum Dimension
{
    /// <summary>A whole number without a unit (cores).</summary>
    Count,
    /// <summary>Bytes (canonical B).</summary>
    Bytes,
    /// <summary>Bytes per second (canonical B/s).</summary>
    Bandwidth,
    /// <summary>Watts.</summary>
    Power,
    /// <summary>Seconds.</summary>
    Time,
    /// <summary>Hertz.</summary>
    Frequency,
    /// <summary>Tokens per second.</summary>
    TokenRate,
    /// <summary>Integer operations per second (TOPS).</summary>
    IntegerOps,
    /// <summary>Floating-point operations per second (TFLOPS).</summary>
    FloatOps,
    /// <summary>Degrees Celsius.</summary>
    Temperature,
}

/// <summary>The units a profile may write for each dimension, and their factors to the canonical unit.</summary>
public static class Units
{
    private static readonly Dictionary<Dimension, (string Unit, double Factor)[]> Table = new()
    {
        [Dimension.Count] = [],
        [Dimension.Bytes] = [("B", 1), ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12), ("KiB", 1024.0), ("MiB", 1024.0 * 1024), ("GiB", 1024.0 * 1024 * 1024), ("TiB", 1024.0 * 1024 * 1024 * 1024)],
        [Dimension.Bandwidth] = [("MB/s", 1e6), ("GB/s", 1e9), ("TB/s", 1e12), ("MiB/s", 1024.0 * 1024), ("GiB/s", 1024.0 * 1024 * 1024)],
        [Dimension.Power] = [("mW", 1e-3), ("W", 1)],
        [Dimension.Time] = [("us", 1e-6), ("ms", 1e-3), ("s", 1)],
        [Dimension.Frequency] = [("Hz", 1), ("kHz", 1e3), ("MHz", 1e6), ("GHz", 1e9)],
        [Dimension.TokenRate] = [("tokens/s", 1)],
        [Dimension.IntegerOps] = [("GOPS", 1e9), ("TOPS", 1e12)],
        [Dimension.FloatOps] = [("GFLOPS", 1e9), ("TFLOPS", 1e12)],
        [Dimension.Temperature] = [("C", 1), ("°C", 1)],
    };

    public static bool HasUnits(Dimension d) => Table[d].Length > 0;

    public static IEnumerable<string> Names(Dimension d) => Table[d].Select(u => u.Unit).Where(u => u != "°C");

    public static bool TryFactor(Dimension d, string unit, out double factor)
    {
        foreach (var (u, f) in Table[d])
        {
            if (u == unit)
            {
                factor = f;
                return true;
            }
        }
        factor = 0;
        return false;
    }

    /// <summary>The dimension a unit belongs to, when the unit was written for the wrong kind of figure.</summary>
    public static Dimension? DimensionOf(string unit)
    {
        foreach (var (d, units) in Table)
            if (units.Any(u => u.Unit == unit)) return d;
        return null;
    }

    public static string Describe(Dimension d) => d switch
    {
        Dimension.Count => "count",
        Dimension.Bytes => "memory size",
        Dimension.Bandwidth => "bandwidth",
        Dimension.Power => "power",
        Dimension.Time => "time",
        Dimension.Frequency => "frequency",
        Dimension.TokenRate => "token rate",
        Dimension.IntegerOps => "integer throughput",
        Dimension.FloatOps => "floating-point throughput",
        Dimension.Temperature => "temperature",
        _ => d.ToString(),
    };

    /// <summary>A canonical value written for people: 8 GB, 68 GB/s, 15 W, 1.5 GHz, 250 ms.</summary>
    public static string Format(Dimension d, double canonical) => d switch
    {
        Dimension.Count => canonical.ToString("0", CultureInfo.InvariantCulture),
        Dimension.Bytes => FormatBytes(canonical),
        Dimension.Bandwidth => Number(canonical / 1e9) + " GB/s",
        Dimension.Power => Number(canonical) + " W",
        Dimension.Time => canonical < 1 ? Number(canonical * 1e3) + " ms" : Number(canonical) + " s",
        Dimension.Frequency => canonical >= 1e9 ? Number(canonical / 1e9) + " GHz" : Number(canonical / 1e6) + " MHz",
        Dimension.TokenRate => Number(canonical) + " tokens/s",
        Dimension.IntegerOps => Number(canonical / 1e12) + " TOPS",
        Dimension.FloatOps => Number(canonical / 1e12) + " TFLOPS",
        Dimension.Temperature => Number(canonical) + " °C",
        _ => Number(canonical),
    };

    public static string FormatBytes(double bytes)
    {
        double a = Math.Abs(bytes);
        if (a >= 1e9) return Number(bytes / 1e9) + " GB";
        if (a >= 1e6) return Number(bytes / 1e6) + " MB";
        if (a >= 1e3) return Number(bytes / 1e3) + " KB";
        return bytes.ToString("0", CultureInfo.InvariantCulture) + " B";
    }

    private static string Number(double v)
    {
        double a = Math.Abs(v);
        string format = a >= 100 ? "0.#" : a >= 10 ? "0.##" : "0.###";
        return v.ToString(format, CultureInfo.InvariantCulture);
    }
}
