using System.Globalization;

namespace EdgeTune.Profiles.Sensors;

/// <summary>
/// Reads the board's sensors and the process's memory on a background thread at a fixed interval while a
/// benchmark runs, and once at start and stop, so even a short run has readings at both ends.
/// </summary>
public sealed class SensorSampler : IDisposable
{
    private readonly BoardSensors _sensors;
    private readonly TimeProvider _time;
    private readonly TimeSpan _interval;
    private readonly List<SensorReading> _readings = [];
    private readonly List<MemoryReading> _memory = [];
    private readonly Lock _lock = new();
    private readonly ManualResetEventSlim _stop = new(false);
    private Thread? _thread;

    public SensorSampler(BoardSensors sensors, TimeProvider time, TimeSpan interval)
    {
        _sensors = sensors;
        _time = time;
        _interval = interval;
    }

    public void Start()
    {
        if (_thread is not null) throw new InvalidOperationException("the sampler is already running");
        Sample();
        _thread = new Thread(Loop) { IsBackground = true, Name = "edgetune-sensors", Priority = ThreadPriority.AboveNormal };
        _thread.Start();
    }

    public SensorTrace Stop()
    {
        if (_thread is not null)
        {
            _stop.Set();
            _thread.Join();
            _thread = null;
        }
        Sample();
        lock (_lock) return new SensorTrace(_readings.ToList(), _memory.ToList(), _time.TimestampFrequency);
    }

    /// <summary>Readings taken so far (the one at start included).</summary>
    public int Count
    {
        get { lock (_lock) return _readings.Count; }
    }

    /// <summary>Why sampling stopped early, when a sensor read failed in a way the readers do not expect.</summary>
    public string? Failure { get; private set; }

    private void Loop()
    {
        try
        {
            while (!_stop.Wait(_interval)) Sample();
        }
        catch (Exception e)
        {
            // A background thread must not take the process down: the run goes on without further readings.
            Failure = $"sensor sampling stopped: {e.Message}";
        }
    }

    private void Sample()
    {
        long now = _time.GetTimestamp();
        var reading = _sensors.Read(now);
        var memory = new MemoryReading(now, ProcessMemory.ResidentBytes(), MemInfo.Read(SystemRoot.Host)?.AvailableBytes);
        lock (_lock)
        {
            _readings.Add(reading);
            _memory.Add(memory);
        }
    }

    public void Dispose()
    {
        if (_thread is not null) Stop();
        _stop.Dispose();
    }
}

/// <summary>The process's resident memory and the system's available memory at a moment.</summary>
public sealed record MemoryReading(long Timestamp, long? ProcessResidentBytes, long? SystemAvailableBytes);

/// <summary>The readings of one run, and what they add up to over chosen intervals.</summary>
public sealed class SensorTrace(IReadOnlyList<SensorReading> readings, IReadOnlyList<MemoryReading> memory, long timestampFrequency)
{
    public IReadOnlyList<SensorReading> Readings { get; } = readings;
    public IReadOnlyList<MemoryReading> Memory { get; } = memory;
    public long TimestampFrequency { get; } = timestampFrequency;

    /// <summary>
    /// Energy in joules over [start, end]: power interpolated linearly between readings (held flat before
    /// the first and after the last) and integrated by the trapezoid rule. Null without power readings.
    /// </summary>
    public double? Joules(long start, long end)
    {
        var points = Readings.Where(r => r.PowerWatts is not null).Select(r => (T: r.Timestamp, W: r.PowerWatts!.Value)).OrderBy(p => p.T).ToList();
        if (points.Count == 0 || end <= start) return points.Count == 0 ? null : 0;
        var times = new List<long> { start };
        times.AddRange(points.Select(p => p.T).Where(t => t > start && t < end));
        times.Add(end);
        double joules = 0;
        for (int i = 1; i < times.Count; i++)
            joules += (PowerAt(points, times[i - 1]) + PowerAt(points, times[i])) / 2 * (times[i] - times[i - 1]) / TimestampFrequency;
        return joules;
    }

    /// <summary>Average power over several intervals: total energy ÷ total time.</summary>
    public double? AverageWatts(IEnumerable<(long Start, long End)> intervals)
    {
        double joules = 0, seconds = 0;
        foreach (var (s, e) in intervals)
        {
            if (Joules(s, e) is not { } j) return null;
            joules += j;
            seconds += (double)(e - s) / TimestampFrequency;
        }
        return seconds > 0 ? joules / seconds : null;
    }

    internal static double PowerAt(IReadOnlyList<(long T, double W)> points, long t)
    {
        if (t <= points[0].T) return points[0].W;
        if (t >= points[^1].T) return points[^1].W;
        int hi = 1;
        while (points[hi].T < t) hi++;
        var (t0, w0) = points[hi - 1];
        var (t1, w1) = points[hi];
        return t1 == t0 ? w1 : w0 + (w1 - w0) * (t - t0) / (t1 - t0);
    }

    /// <summary>Mean of each rail over the readings taken inside the intervals (all readings when none fall inside).</summary>
    public IReadOnlyDictionary<string, double> AverageRailWatts(IEnumerable<(long Start, long End)> intervals)
    {
        var inside = Inside(intervals);
        return inside.SelectMany(r => r.RailWatts).GroupBy(kv => kv.Key).ToDictionary(g => g.Key, g => g.Average(kv => kv.Value), StringComparer.Ordinal);
    }

    public IReadOnlyDictionary<string, (double Max, double Mean)> Temperatures() =>
        Readings.SelectMany(r => r.TemperaturesC).GroupBy(kv => kv.Key)
            .ToDictionary(g => g.Key, g => (g.Max(kv => kv.Value), g.Average(kv => kv.Value)), StringComparer.Ordinal);

    public double? AverageGpuLoad(IEnumerable<(long Start, long End)> intervals)
    {
        var loads = Inside(intervals).Where(r => r.GpuLoadPercent is not null).Select(r => r.GpuLoadPercent!.Value).ToList();
        return loads.Count == 0 ? null : loads.Average();
    }

    /// <summary>Throttling seen in any reading, each distinct event once, with the time since the first reading.</summary>
    public IReadOnlyList<string> ThrottleEvents()
    {
        if (Readings.Count == 0) return [];
        long t0 = Readings[0].Timestamp;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var events = new List<string>();
        foreach (var r in Readings)
        {
            foreach (var e in r.Throttling)
            {
                string key = e.Split(" at ")[0].Split(" (")[0];
                if (seen.Add(key)) events.Add(string.Create(CultureInfo.InvariantCulture, $"{e} after {(double)(r.Timestamp - t0) / TimestampFrequency:0.0} s"));
            }
            // A GPU held well below its top clock while busy is being capped.
            if (r is { GpuLoadPercent: > 50, GpuFrequencyHz: { } f, GpuMaxFrequencyHz: { } max } && f < 0.8 * max && seen.Add("gpu-clock"))
                events.Add(string.Create(CultureInfo.InvariantCulture, $"GPU at {f / 1e6:0} MHz of {max / 1e6:0} MHz while {r.GpuLoadPercent:0}% busy after {(double)(r.Timestamp - t0) / TimestampFrequency:0.0} s"));
        }
        return events;
    }

    private List<SensorReading> Inside(IEnumerable<(long Start, long End)> intervals)
    {
        var list = intervals.ToList();
        var inside = Readings.Where(r => list.Any(i => r.Timestamp >= i.Start && r.Timestamp <= i.End)).ToList();
        return inside.Count > 0 ? inside : Readings.ToList();
    }
}

/// <summary>This process's memory from /proc/self/status (always the real /proc: it is about this process, not the board).</summary>
public static class ProcessMemory
{
    /// <summary>VmRSS: resident memory now.</summary>
    public static long? ResidentBytes() => ReadStatus("VmRSS");

    /// <summary>RssAnon: resident anonymous memory now (heap, stacks; not pages of mapped files).</summary>
    public static long? AnonymousBytes() => ReadStatus("RssAnon");

    /// <summary>VmHWM: the peak resident memory since the process started or since <see cref="ResetPeak"/>.</summary>
    public static long? PeakResidentBytes() => ReadStatus("VmHWM");

    /// <summary>Resets VmHWM to the current RSS (writing 5 to /proc/self/clear_refs, Linux 4.0+); false when not allowed.</summary>
    public static bool ResetPeak()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            return false;
        }
    }

    private static long? ReadStatus(string key)
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (!line.StartsWith(key + ":", StringComparison.Ordinal)) continue;
                var number = line[(key.Length + 1)..].Trim().Split(' ')[0];
                return long.TryParse(number, NumberStyles.Integer, CultureInfo.InvariantCulture, out long kb) ? kb * 1024 : null;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        return null;
    }
}
