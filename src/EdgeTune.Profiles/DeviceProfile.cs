using EdgeTune.Profiles.Schema;
using EdgeTune.Profiles.Toml;

namespace EdgeTune.Profiles;

public enum SourceKind { Link, Measured, Derived, Estimate, Policy }

/// <summary>Where a figure comes from: a datasheet link, "measured" on a date, or a stated derivation, estimate or policy.</summary>
public sealed record Provenance(string Source, DateOnly? Date, string? Note, SourceLocation Location)
{
    public SourceKind Kind =>
        Source.StartsWith("http", StringComparison.Ordinal) ? SourceKind.Link
        : Source == "measured" ? SourceKind.Measured
        : Source.StartsWith("derived:", StringComparison.Ordinal) ? SourceKind.Derived
        : Source.StartsWith("estimate:", StringComparison.Ordinal) ? SourceKind.Estimate
        : SourceKind.Policy;

    public override string ToString() => Date is { } d ? $"{Source} ({d:yyyy-MM-dd})" : Source;
}

/// <summary>A sourced number, stored in the canonical unit of its dimension (bytes, B/s, W, s, Hz, ...).</summary>
public sealed record Quantity(double Value, Dimension Dimension, double Written, string Unit, Provenance Provenance)
{
    public override string ToString() => Units.Format(Dimension, Value);
}

public sealed record TextFact(string Value, Provenance Provenance)
{
    public override string ToString() => Value;
}

public sealed record ProfileIdentity(string Vendor, string Soc, string? Module, string Architecture, IReadOnlyList<string> DeviceTreeIds, string? DetectPowerMode);

public sealed record CpuSpec(string Model, Quantity Cores, TextFact Isa, Quantity? MaxFrequency);

public sealed record GpuSpec(string Model, TextFact? ComputeCapability, Quantity? CudaCores, Quantity? TensorCores, Quantity? MaxFrequency)
{
    /// <summary>A discrete card's own memory and its bandwidth (workstation and server GPUs, for training plans).</summary>
    public Quantity? Memory { get; init; }
    public Quantity? MemoryBandwidth { get; init; }
}

public sealed record MemorySpec(string? Type, bool Unified, Quantity Total, Quantity UsableForModel, Quantity Bandwidth);

/// <summary>A power mode; <see cref="Watts"/> is null for an uncapped mode (MAXN).</summary>
public sealed record PowerMode(string Name, Quantity? Watts, Provenance Provenance);

public sealed record SensorSpec(string Power, IReadOnlyList<string> PowerRails, IReadOnlyList<string> ThermalZones, IReadOnlyList<string> GpuDevfreq, Quantity? ThrottleTemperature)
{
    public static readonly SensorSpec None = new("none", [], [], [], null);
}

public sealed record Budgets(Quantity? MaxModelMemory, Quantity? MinDecodeTokensPerSecond, Quantity? MaxTtftP95, Quantity? MaxWatts);

/// <summary>
/// A validated device profile with its extends chain applied. Build one with <see cref="ProfileLoader"/>.
/// <see cref="Values"/> keeps the merged TOML tree (each value with the file and line it came from) for
/// <c>edgetune profiles show</c>.
/// </summary>
public sealed class DeviceProfile
{
    public required string Name { get; init; }
    public required string DisplayName { get; init; }
    public string? Description { get; init; }

    /// <summary>The file this profile was loaded from.</summary>
    public required string File { get; init; }

    /// <summary>Files of the profiles this one extends, nearest first.</summary>
    public required IReadOnlyList<string> ExtendsChain { get; init; }

    public required ProfileIdentity Identity { get; init; }
    public required CpuSpec Cpu { get; init; }
    public GpuSpec? Gpu { get; init; }
    public required MemorySpec Memory { get; init; }
    public required IReadOnlyDictionary<string, Quantity> Compute { get; init; }
    public required IReadOnlyList<PowerMode> PowerModes { get; init; }

    /// <summary>Runtime keys (<see cref="ProfileSchema.RuntimeKeys"/>) that run on the board.</summary>
    public required IReadOnlySet<string> Runtimes { get; init; }

    public required SensorSpec Sensors { get; init; }
    public required Budgets Budgets { get; init; }
    public required TomlTableNode Values { get; init; }

    public PowerMode? FindPowerMode(string name) =>
        PowerModes.FirstOrDefault(m => string.Equals(Normalise(m.Name), Normalise(name), StringComparison.OrdinalIgnoreCase));

    // nvpmodel names differ in separators between releases ("MAXN SUPER", "MAXN_SUPER").
    private static string Normalise(string name) => name.Replace(" ", "", StringComparison.Ordinal).Replace("_", "", StringComparison.Ordinal).Replace("-", "", StringComparison.Ordinal);
}
