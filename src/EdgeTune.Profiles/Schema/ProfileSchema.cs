namespace EdgeTune.Profiles.Schema;

public enum FieldKind
{
    String,
    Integer,
    Boolean,
    StringArray,
    /// <summary>A sourced number: <c>{ value = 68, unit = "GB/s", source = "https://…" }</c>.</summary>
    Figure,
    /// <summary>A sourced text fact: <c>{ value = "8.7", source = "https://…" }</c>.</summary>
    TextFigure,
    Table,
    /// <summary>A table whose keys are names chosen by the author and whose values all follow one spec.</summary>
    Map,
}

/// <summary>One key of the profile schema: its kind, whether it is required, its unit dimension and range.</summary>
public sealed class FieldSpec
{
    public required string Name { get; init; }
    public required FieldKind Kind { get; init; }
    public required string Description { get; init; }
    public bool Required { get; init; }

    /// <summary>False for keys every file must state itself (name, schema, extends): a variant does not inherit them.</summary>
    public bool Inherited { get; init; } = true;

    public Dimension Dimension { get; init; } = Dimension.Count;

    /// <summary>Inclusive range in the canonical unit; <see cref="MinExclusive"/> makes the minimum a strict bound.</summary>
    public double? Min { get; init; }
    public double? Max { get; init; }
    public bool MinExclusive { get; init; }

    /// <summary>A power mode without a cap (MAXN) writes <c>value = "uncapped"</c>.</summary>
    public bool AllowUncapped { get; init; }

    /// <summary>Allowed values of a string (or of each string of an array).</summary>
    public IReadOnlyList<string>? Allowed { get; init; }

    /// <summary>Regular expression a string or text figure must match, with a hint for the message.</summary>
    public string? Pattern { get; init; }
    public string? PatternHint { get; init; }

    public TableSpec? Table { get; init; }

    /// <summary>For <see cref="FieldKind.Map"/>: the spec every entry follows (its Name is unused) and the key pattern.</summary>
    public FieldSpec? Entry { get; init; }
    public string? KeyPattern { get; init; }
}

public sealed class TableSpec(params FieldSpec[] fields)
{
    public IReadOnlyList<FieldSpec> Fields { get; } = fields;

    public FieldSpec? Find(string name) => Fields.FirstOrDefault(f => f.Name == name);
}

/// <summary>
/// The device-profile schema (version 1). profiles/README.md documents every key listed here, and a test
/// checks that it does. Figures are inline tables with a value, a unit where the dimension has units, and a
/// source; <see cref="FigureKeys"/> lists the keys a figure may hold.
/// </summary>
public static class ProfileSchema
{
    public const int Version = 1;

    /// <summary>Keys of a figure table.</summary>
    public static readonly IReadOnlyList<string> FigureKeys = ["value", "unit", "source", "date", "note"];

    /// <summary>Prefixes a source may start with when it is not a link and not "measured".</summary>
    public static readonly IReadOnlyList<string> SourcePrefixes = ["derived:", "estimate:", "policy:"];

    /// <summary>Runtime keys of [runtimes]; a benchmark runtime names itself with one of them.</summary>
    public static readonly IReadOnlyList<string> RuntimeKeys =
        ["llama_cpp_cpu", "llama_cpp_cuda", "onnxruntime_cpu", "onnxruntime_cuda", "onnxruntime_tensorrt"];

    private static FieldSpec Figure(string name, Dimension d, string description, bool required = false, double? min = 0, bool minExclusive = true, double? max = null) =>
        new() { Name = name, Kind = FieldKind.Figure, Dimension = d, Description = description, Required = required, Min = min, MinExclusive = minExclusive, Max = max };

    private static FieldSpec Text(string name, string description, bool required = false, bool inherited = true, string? pattern = null, string? hint = null, IReadOnlyList<string>? allowed = null) =>
        new() { Name = name, Kind = FieldKind.String, Description = description, Required = required, Inherited = inherited, Pattern = pattern, PatternHint = hint, Allowed = allowed };

    private static FieldSpec Strings(string name, string description, string? pattern = null, string? hint = null) =>
        new() { Name = name, Kind = FieldKind.StringArray, Description = description, Pattern = pattern, PatternHint = hint };

    private static FieldSpec Flag(string name, string description) =>
        new() { Name = name, Kind = FieldKind.Boolean, Description = description };

    public static readonly TableSpec Root = new(
        new FieldSpec { Name = "schema", Kind = FieldKind.Integer, Required = true, Inherited = false, Min = Version, Max = Version, Description = "Schema version; 1" },
        Text("name", "Profile name; equals the file name without .toml", required: true, inherited: false, pattern: "^[a-z0-9][a-z0-9-]*$", hint: "lower-case letters, digits and '-'"),
        Text("display_name", "Name shown to people", required: true, inherited: false),
        Text("description", "One paragraph on what the profile covers", inherited: false),
        Text("extends", "Name of the profile this one varies; its values apply unless this file sets them", inherited: false),
        new FieldSpec
        {
            Name = "identity", Kind = FieldKind.Table, Required = true, Description = "What the board is and how to recognise it",
            Table = new TableSpec(
                Text("vendor", "Maker of the board or module", required: true),
                Text("soc", "System on chip", required: true),
                Text("module", "Module and part numbers"),
                Text("architecture", "CPU architecture as the kernel reports it (uname -m)", required: true, allowed: ["aarch64", "x86_64"]),
                Strings("device_tree_ids", "Entries of /proc/device-tree/compatible that identify the module (\"vendor,part\")", "^[a-z0-9-]+,[A-Za-z0-9_.-]+$", "\"vendor,part\" such as \"nvidia,p3767-0005\""),
                Text("detect_power_mode", "The profile applies only when the board's nvpmodel.conf defines this mode (tells a firmware variant apart)")),
        },
        new FieldSpec
        {
            Name = "cpu", Kind = FieldKind.Table, Required = true, Description = "The CPU",
            Table = new TableSpec(
                Text("model", "Core design", required: true),
                Figure("cores", Dimension.Count, "Number of cores", required: true, min: 1, minExclusive: false, max: 1024),
                new FieldSpec { Name = "isa", Kind = FieldKind.TextFigure, Required = true, Description = "Instruction set (armv8.2-a, x86-64-v3)", Pattern = "^[a-z0-9][a-z0-9.+-]*$", PatternHint = "an ISA name such as \"armv8.2-a\"" },
                Figure("max_frequency", Dimension.Frequency, "Highest CPU clock", max: 10e9)),
        },
        new FieldSpec
        {
            Name = "gpu", Kind = FieldKind.Table, Description = "The GPU, when there is one",
            Table = new TableSpec(
                Text("model", "GPU architecture or name", required: true),
                new FieldSpec { Name = "compute_capability", Kind = FieldKind.TextFigure, Description = "CUDA compute capability (major.minor)", Pattern = @"^\d{1,2}\.\d$", PatternHint = "major.minor such as \"8.7\"" },
                Figure("cuda_cores", Dimension.Count, "CUDA cores", min: 1, minExclusive: false, max: 100_000),
                Figure("tensor_cores", Dimension.Count, "Tensor cores", min: 0, minExclusive: false, max: 10_000),
                Figure("max_frequency", Dimension.Frequency, "Highest GPU clock", max: 10e9),
                Figure("memory", Dimension.Bytes, "Memory of a discrete GPU (a workstation or server card); absent for unified memory", max: 1e15),
                Figure("memory_bandwidth", Dimension.Bandwidth, "Peak bandwidth of that memory", max: 1e14)),
        },
        new FieldSpec
        {
            Name = "memory", Kind = FieldKind.Table, Required = true, Description = "Main memory",
            Table = new TableSpec(
                Text("type", "Memory type and bus width"),
                Flag("unified", "CPU and GPU share this memory (Jetson): GPU allocations count against it"),
                Figure("total", Dimension.Bytes, "Installed memory", required: true, max: 1e15),
                Figure("usable_for_model", Dimension.Bytes, "What a model, its KV cache and the runtime may use after the OS and services", required: true, max: 1e15),
                Figure("bandwidth", Dimension.Bandwidth, "Peak memory bandwidth; bounds decode speed", required: true, max: 1e14)),
        },
        new FieldSpec
        {
            Name = "compute", Kind = FieldKind.Table, Description = "Published compute figures",
            Table = new TableSpec(
                Figure("int8_sparse_tops", Dimension.IntegerOps, "INT8 with structured sparsity, as NVIDIA quotes 'AI performance'"),
                Figure("int8_dense_tops", Dimension.IntegerOps, "Dense INT8"),
                Figure("fp16_tflops", Dimension.FloatOps, "Dense FP16"),
                Figure("bf16_tflops", Dimension.FloatOps, "Dense BF16 (tensor cores, FP32 accumulate)"),
                Figure("fp32_tflops", Dimension.FloatOps, "FP32")),
        },
        new FieldSpec
        {
            Name = "power_modes", Kind = FieldKind.Map, Description = "nvpmodel power modes by name, each with its power budget; the numeric ids are read from the board",
            KeyPattern = "^[A-Za-z0-9_]+$",
            Entry = new FieldSpec { Name = "*", Kind = FieldKind.Figure, Dimension = Dimension.Power, Description = "Mode budget in W, or \"uncapped\"", Min = 0, MinExclusive = true, Max = 1000, AllowUncapped = true },
        },
        new FieldSpec
        {
            Name = "runtimes", Kind = FieldKind.Table, Required = true, Description = "Inference runtimes that run on the board",
            Table = new TableSpec(
                Flag("llama_cpp_cpu", "llama.cpp on the CPU"),
                Flag("llama_cpp_cuda", "llama.cpp with CUDA"),
                Flag("onnxruntime_cpu", "ONNX Runtime, CPU execution provider"),
                Flag("onnxruntime_cuda", "ONNX Runtime, CUDA execution provider"),
                Flag("onnxruntime_tensorrt", "ONNX Runtime, TensorRT execution provider")),
        },
        new FieldSpec
        {
            Name = "sensors", Kind = FieldKind.Table, Description = "Where the board reports power, temperatures and GPU load",
            Table = new TableSpec(
                Text("power", "Power monitor: \"ina3221\" (hwmon, found through /sys/bus/i2c/devices/*/name) or \"none\"", allowed: ["ina3221", "none"]),
                Strings("power_rails", "INA3221 channel labels whose sum is the board's power (VDD_IN is the whole Orin Nano/NX module)"),
                Strings("thermal_zones", "Thermal zone types to report (/sys/devices/virtual/thermal/thermal_zone*/type); empty means all"),
                Strings("gpu_devfreq", "Device-tree node names of the GPU under /sys/class/devfreq/*/device/of_node/name"),
                Figure("throttle_temperature", Dimension.Temperature, "Temperature at which the board starts to throttle, when the thermal zones do not publish passive trip points", min: -40, minExclusive: false, max: 150)),
        },
        new FieldSpec
        {
            Name = "budgets", Kind = FieldKind.Table, Description = "What a model must meet on this board; edgetune bench checks each",
            Table = new TableSpec(
                Figure("max_model_memory", Dimension.Bytes, "Peak memory of the model, KV cache and runtime", max: 1e15),
                Figure("min_decode_tokens_per_s", Dimension.TokenRate, "Slowest acceptable generation speed", max: 1e6),
                Figure("max_ttft_p95", Dimension.Time, "95th percentile of the time to first token", max: 3600),
                Figure("max_watts", Dimension.Power, "Highest acceptable average board power during inference", max: 1000)),
        });

    /// <summary>Every key path of the schema ("memory.bandwidth"), for documentation checks.</summary>
    public static IEnumerable<string> KeyPaths()
    {
        foreach (var f in Root.Fields)
        {
            yield return f.Name;
            if (f.Table is { } t)
                foreach (var c in t.Fields) yield return $"{f.Name}.{c.Name}";
        }
    }
}
