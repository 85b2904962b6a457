using System.Globalization;

namespace EdgeTune.Profiles.Sensors;

/// <summary>One INA3221 channel: its label (VDD_IN, ...) and the hwmon files of its bus voltage (mV) and current (mA).</summary>
public sealed record PowerRail(string Label, string VoltagePath, string CurrentPath);

/// <summary>A thermal zone: its type (cpu-thermal, ...), its temperature file (millidegrees) and its first passive trip point.</summary>
public sealed record ThermalZone(string Type, string TempPath, double? PassiveTripC);

/// <summary>A cooling device that caps clocks when engaged (fans are not listed: a spinning fan is not throttling).</summary>
public sealed record CoolingDevice(string Type, string StatePath);

/// <summary>The GPU's devfreq node: load in per-mille, current and highest frequency.</summary>
public sealed record GpuDevfreq(string Name, string LoadPath, string? CurrentFrequencyPath, string? MaxFrequencyPath);

/// <summary>
/// The sensors a board exposes, found by scanning sysfs under a <see cref="SystemRoot"/> the way
/// jetson-stats does: INA3221 power monitors through hwmon (found from /sys/bus/i2c/devices/*/name, as the
/// hwmonN number is not stable), thermal zones, non-fan cooling devices, and the GPU's devfreq node. What
/// is missing is said in <see cref="Absent"/>, so reports can state why a figure is not there.
/// </summary>
public sealed class BoardSensors
{
    private BoardSensors(SystemRoot root) => Root = root;

    public SystemRoot Root { get; }
    public IReadOnlyList<PowerRail> AllRails { get; private init; } = [];

    /// <summary>The rails whose sum is the board power (the profile's power_rails, or all when it names none).</summary>
    public IReadOnlyList<PowerRail> PowerRails { get; private init; } = [];
    public IReadOnlyList<ThermalZone> ThermalZones { get; private init; } = [];
    public IReadOnlyList<CoolingDevice> CoolingDevices { get; private init; } = [];
    public GpuDevfreq? Gpu { get; private init; }
    public double? ThrottleTemperatureC { get; private init; }

    /// <summary>What is absent and why ("power: no ina3221 under /sys/bus/i2c/devices").</summary>
    public IReadOnlyList<string> Absent { get; private init; } = [];

    public bool HasPower => PowerRails.Count > 0;
    public bool HasTemperatures => ThermalZones.Count > 0;

    public static BoardSensors Discover(SystemRoot root, SensorSpec spec)
    {
        var absent = new List<string>();

        var rails = FindIna3221Rails(root);
        IReadOnlyList<PowerRail> power = [];
        if (spec.Power == "none") absent.Add("power: the profile names no power monitor");
        else if (rails.Count == 0) absent.Add("power: no ina3221 under /sys/bus/i2c/devices (or /sys/class/hwmon)");
        else
        {
            power = spec.PowerRails.Count == 0 ? rails : rails.Where(r => spec.PowerRails.Contains(r.Label, StringComparer.OrdinalIgnoreCase)).ToList();
            var missing = spec.PowerRails.Where(n => !rails.Any(r => string.Equals(r.Label, n, StringComparison.OrdinalIgnoreCase))).ToList();
            if (missing.Count > 0)
            {
                absent.Add($"power: rails {string.Join(", ", missing)} not found (the board has {string.Join(", ", rails.Select(r => r.Label))})");
                power = [];
            }
        }

        var zones = FindThermalZones(root);
        if (spec.ThermalZones.Count > 0) zones = zones.Where(z => spec.ThermalZones.Contains(z.Type, StringComparer.OrdinalIgnoreCase)).ToList();
        if (zones.Count == 0)
            absent.Add(spec.ThermalZones.Count > 0
                ? $"temperatures: none of {string.Join(", ", spec.ThermalZones)} under /sys/devices/virtual/thermal"
                : "temperatures: no thermal zones under /sys/devices/virtual/thermal");

        var gpu = spec.GpuDevfreq.Count == 0 ? null : FindGpu(root, spec.GpuDevfreq);
        if (spec.GpuDevfreq.Count > 0 && gpu is null)
            absent.Add($"gpu load: no devfreq node named {string.Join(" or ", spec.GpuDevfreq)} under /sys/class/devfreq");

        return new BoardSensors(root)
        {
            AllRails = rails,
            PowerRails = power,
            ThermalZones = zones,
            CoolingDevices = FindCoolingDevices(root),
            Gpu = gpu,
            ThrottleTemperatureC = spec.ThrottleTemperature?.Value,
            Absent = absent,
        };
    }

    private static List<PowerRail> FindIna3221Rails(SystemRoot root)
    {
        var hwmons = new List<string>();
        foreach (var device in root.Folders("/sys/bus/i2c/devices"))
            if (string.Equals(root.ReadText(device + "/name"), "ina3221", StringComparison.OrdinalIgnoreCase))
                hwmons.AddRange(root.Folders(device + "/hwmon", "hwmon*"));
        if (hwmons.Count == 0)
            foreach (var hwmon in root.Folders("/sys/class/hwmon", "hwmon*"))
                if (string.Equals(root.ReadText(hwmon + "/name"), "ina3221", StringComparison.OrdinalIgnoreCase))
                    hwmons.Add(hwmon);

        var rails = new List<PowerRail>();
        foreach (var hwmon in hwmons)
        {
            foreach (var labelFile in root.Files(hwmon, "in*_label"))
            {
                string channel = Path.GetFileName(labelFile)["in".Length..^"_label".Length];
                string? label = root.ReadText(labelFile);
                if (label is null or "" || label.StartsWith("NC", StringComparison.Ordinal) || label.Contains("sum", StringComparison.OrdinalIgnoreCase)) continue;
                string voltage = $"{hwmon}/in{channel}_input", current = $"{hwmon}/curr{channel}_input";
                if (root.Exists(voltage) && root.Exists(current)) rails.Add(new PowerRail(label, voltage, current));
            }
        }
        return rails;
    }

    private static List<ThermalZone> FindThermalZones(SystemRoot root)
    {
        var folders = root.Folders("/sys/devices/virtual/thermal", "thermal_zone*");
        if (folders.Count == 0) folders = root.Folders("/sys/class/thermal", "thermal_zone*");
        var zones = new List<ThermalZone>();
        foreach (var zone in folders)
        {
            string? type = root.ReadText(zone + "/type");
            if (type is null || !root.Exists(zone + "/temp")) continue;
            double? passive = null;
            foreach (var tripType in root.Files(zone, "trip_point_*_type"))
            {
                if (root.ReadText(tripType) != "passive") continue;
                if (root.ReadLong(tripType[..^"_type".Length] + "_temp") is { } milli && (passive is null || milli / 1000.0 < passive))
                    passive = milli / 1000.0;
            }
            zones.Add(new ThermalZone(type, zone + "/temp", passive));
        }
        return zones;
    }

    private static List<CoolingDevice> FindCoolingDevices(SystemRoot root)
    {
        var folders = root.Folders("/sys/devices/virtual/thermal", "cooling_device*");
        if (folders.Count == 0) folders = root.Folders("/sys/class/thermal", "cooling_device*");
        var devices = new List<CoolingDevice>();
        foreach (var folder in folders)
        {
            string? type = root.ReadText(folder + "/type");
            if (type is null || type.Contains("fan", StringComparison.OrdinalIgnoreCase) || !root.Exists(folder + "/cur_state")) continue;
            devices.Add(new CoolingDevice(type, folder + "/cur_state"));
        }
        return devices;
    }

    private static GpuDevfreq? FindGpu(SystemRoot root, IReadOnlyList<string> names)
    {
        foreach (var node in root.Folders("/sys/class/devfreq"))
        {
            string? name = root.ReadText(node + "/device/of_node/name");
            if (name is null || !names.Contains(name, StringComparer.OrdinalIgnoreCase)) continue;
            string load = root.Exists(node + "/device/load") ? node + "/device/load" : node + "/load";
            if (!root.Exists(load)) continue;
            return new GpuDevfreq(name, load,
                root.Exists(node + "/cur_freq") ? node + "/cur_freq" : null,
                root.Exists(node + "/max_freq") ? node + "/max_freq" : null);
        }
        return null;
    }

    /// <summary>Reads every sensor once.</summary>
    public SensorReading Read(long timestamp)
    {
        var rails = new Dictionary<string, double>(StringComparer.Ordinal);
        double? total = null;
        foreach (var rail in PowerRails)
        {
            if (Root.ReadLong(rail.VoltagePath) is not { } mv || Root.ReadLong(rail.CurrentPath) is not { } ma) continue;
            double watts = mv * (double)ma / 1e6;
            rails[rail.Label] = watts;
            total = (total ?? 0) + watts;
        }
        if (rails.Count != PowerRails.Count) total = null; // a partial sum would understate the board's power

        var temps = new Dictionary<string, double>(StringComparer.Ordinal);
        var hot = new List<string>();
        foreach (var zone in ThermalZones)
        {
            if (Root.ReadLong(zone.TempPath) is not { } milli || milli <= -40_000) continue; // -256000: zone offline
            double c = milli / 1000.0;
            // Several zones may share a type; keep the hottest.
            temps[zone.Type] = temps.TryGetValue(zone.Type, out var previous) ? Math.Max(previous, c) : c;
            double? limit = zone.PassiveTripC ?? ThrottleTemperatureC;
            if (limit is { } l && c >= l) hot.Add(string.Create(CultureInfo.InvariantCulture, $"{zone.Type} at {c:0.#} °C (limit {l:0.#} °C)"));
        }
        foreach (var device in CoolingDevices)
            if (Root.ReadLong(device.StatePath) is > 0 and var state)
                hot.Add($"cooling device {device.Type} engaged (state {state})");

        double? gpuLoad = null, gpuFrequency = null, gpuMaxFrequency = null;
        if (Gpu is { } g)
        {
            if (Root.ReadLong(g.LoadPath) is { } perMille) gpuLoad = perMille / 10.0;
            if (g.CurrentFrequencyPath is { } cf && Root.ReadLong(cf) is { } hz) gpuFrequency = hz;
            if (g.MaxFrequencyPath is { } mf && Root.ReadLong(mf) is { } maxHz) gpuMaxFrequency = maxHz;
        }
        return new SensorReading(timestamp, total, rails, temps, gpuLoad, gpuFrequency, gpuMaxFrequency, hot);
    }

    public IEnumerable<string> Describe()
    {
        if (PowerRails.Count > 0) yield return $"power: INA3221 rails {string.Join(" + ", PowerRails.Select(r => r.Label))}";
        if (ThermalZones.Count > 0) yield return $"temperatures: {string.Join(", ", ThermalZones.Select(z => z.Type).Distinct())}";
        if (Gpu is not null) yield return $"gpu load: devfreq {Gpu.Name}";
        foreach (var a in Absent) yield return a;
    }
}

/// <summary>One reading of every sensor at <see cref="Timestamp"/> (TimeProvider ticks).</summary>
public sealed record SensorReading(
    long Timestamp,
    double? PowerWatts,
    IReadOnlyDictionary<string, double> RailWatts,
    IReadOnlyDictionary<string, double> TemperaturesC,
    double? GpuLoadPercent,
    double? GpuFrequencyHz,
    double? GpuMaxFrequencyHz,
    IReadOnlyList<string> Throttling);
