using EdgeTune.Core;
using EdgeTune.Profiles.Toml;

namespace EdgeTune.Agent.Config;

/// <summary>A configuration that does not load: <c>file:line:column: key: message</c>, one line.</summary>
public sealed class AgentConfigException : EdgeTuneException
{
    public AgentConfigException(string message) : base(message) { }
    public AgentConfigException() : base("agent configuration error") { }
    public AgentConfigException(string message, Exception inner) : base(message, inner) { }
}

public sealed record ServerConfig
{
    public string Listen { get; init; } = "http://127.0.0.1:8080";
    public string ApiToken { get; init; } = "";
    public int QueueCapacity { get; init; } = 8;
    public double RequestTimeoutSeconds { get; init; } = 120;
    public long MaxBodyBytes { get; init; } = 1 << 20;
    public string LogLevel { get; init; } = "Information";

    /// <summary>PKCS#12 certificate for an https:// listen URL.</summary>
    public string? Certificate { get; init; }
    public string? CertificatePassword { get; init; }
}

public sealed record ModelConfig
{
    public required string Path { get; init; }
    public string Name { get; init; } = "";
    public IReadOnlyList<string> Adapters { get; init; } = [];
    public int Context { get; init; } = 2048;
    public int Batch { get; init; } = 512;
    public int Threads { get; init; } = Math.Clamp(Environment.ProcessorCount, 1, 4);
    public int GpuLayers { get; init; }
    public string? NativeLibrary { get; init; }
    public int DefaultMaxTokens { get; init; } = 256;
}

public sealed record FieldLogConfig
{
    public string Path { get; init; } = "data/field.db";
    public bool Enabled { get; init; } = true;
    public string DeviceId { get; init; } = Environment.MachineName;

    /// <summary>Row cap; 0 is unbounded. Past it, the oldest exported records without feedback are evicted.</summary>
    public long MaxRecords { get; init; }

    /// <summary>Fraction of completions recorded (feedback on an unrecorded completion is 404).</summary>
    public double SampleRate { get; init; } = 1.0;

    /// <summary>Redaction rules: built-in names (email, phone, ipv4, card) or .NET regular expressions.</summary>
    public IReadOnlyList<string> Redact { get; init; } = [];

    public string RedactReplacement { get; init; } = "[redacted]";
}

/// <summary>GPIO: a feedback button pair and a status LED (device/EdgeTune.Hardware). Off unless enabled.</summary>
public sealed record GpioConfig
{
    public bool Enabled { get; init; }
    public int Chip { get; init; }
    public int? FeedbackUpPin { get; init; }
    public int? FeedbackDownPin { get; init; }
    public int? StatusLedPin { get; init; }
    public int DebounceMs { get; init; } = 50;
}

/// <summary>Board telemetry for /metrics, read from sysfs by EdgeTune.Profiles' BoardSensors.</summary>
public sealed record TelemetryConfig
{
    public bool Enabled { get; init; } = true;
    public string SysfsRoot { get; init; } = "/";
    public IReadOnlyList<string> PowerRails { get; init; } = [];
    public IReadOnlyList<string> GpuDevfreq { get; init; } = ["ga10b", "gv11b", "gpu"];
}

/// <summary>
/// agent.toml: [server], [model], [field_log]. Every key is documented in device/EdgeTune.Agent/README.md;
/// an unknown key, a wrong type or a bad value is refused with the file, line and column. Relative paths are
/// relative to the configuration file's folder.
/// </summary>
public sealed record AgentConfig
{
    public required string File { get; init; }
    public ServerConfig Server { get; init; } = new();
    public required ModelConfig Model { get; init; }
    public FieldLogConfig FieldLog { get; init; } = new();
    public GpioConfig Gpio { get; init; } = new();
    public TelemetryConfig Telemetry { get; init; } = new();

    /// <summary>[fleet]: the MQTT outbox (device/EdgeTune.Agent/Fleet); null when the section is absent (nothing changes).</summary>
    public EdgeTune.Agent.Fleet.FleetConfig? Fleet { get; init; }

    public const string TokenVariable = "EDGETUNE_AGENT_TOKEN";

    private static readonly Dictionary<string, string[]> Keys = new()
    {
        ["server"] = ["listen", "api_token", "queue_capacity", "request_timeout_seconds", "max_body_bytes", "log_level", "certificate", "certificate_password"],
        ["model"] = ["path", "name", "adapters", "context", "batch", "threads", "gpu_layers", "native_library", "default_max_tokens"],
        ["field_log"] = ["path", "enabled", "device_id", "max_records", "sample_rate", "redact", "redact_replacement"],
        ["telemetry"] = ["enabled", "sysfs_root", "power_rails", "gpu_devfreq"],
        ["gpio"] = ["enabled", "chip", "feedback_up_pin", "feedback_down_pin", "status_led_pin", "debounce_ms"],
        ["fleet"] = EdgeTune.Agent.Fleet.FleetConfig.Keys,
    };

    /// <summary>Load and validate; <paramref name="checkFiles"/> also requires the model and adapter files to exist.</summary>
    public static AgentConfig Load(string file, bool checkFiles = true)
    {
        if (!System.IO.File.Exists(file)) throw new AgentConfigException($"{file}: no such configuration file");
        var diagnostics = new List<ProfileDiagnostic>();
        var root = TomlDocument.Parse(System.IO.File.ReadAllText(file), file, diagnostics);
        if (diagnostics.Count > 0) throw new AgentConfigException(diagnostics[0].ToString());
        string dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(file))!;

        foreach (var (key, node) in root.Items)
        {
            if (!Keys.TryGetValue(key, out var allowed)) Fail(node, key, $"unknown section (expected one of {string.Join(", ", Keys.Keys.Select(k => $"[{k}]"))})");
            if (node is not TomlTableNode table) { Fail(node, key, $"expected a table, found {node.Describe()}"); return null!; }
            foreach (var (sub, value) in table.Items)
                if (!allowed!.Contains(sub)) Fail(value, $"{key}.{sub}", $"unknown key (allowed in [{key}]: {string.Join(", ", allowed!)})");
        }

        var server = root["server"] as TomlTableNode;
        var model = root["model"] as TomlTableNode;
        var log = root["field_log"] as TomlTableNode;
        if (model is null) throw new AgentConfigException($"{file}:1:1: model: missing [model] section (model.path is required)");
        string Resolve(string p) => System.IO.Path.GetFullPath(System.IO.Path.Combine(dir, p));

        var defaults = new ServerConfig();
        string token = Environment.GetEnvironmentVariable(TokenVariable) is { Length: > 0 } env ? env : Str(server, "server", "api_token") ?? "";
        var serverConfig = new ServerConfig
        {
            Listen = Str(server, "server", "listen") ?? defaults.Listen,
            ApiToken = token,
            QueueCapacity = (int)(Int(server, "server", "queue_capacity", 0, 100_000) ?? defaults.QueueCapacity),
            RequestTimeoutSeconds = Num(server, "server", "request_timeout_seconds", 0.001, 86_400) ?? defaults.RequestTimeoutSeconds,
            MaxBodyBytes = Int(server, "server", "max_body_bytes", 1024, 1L << 31) ?? defaults.MaxBodyBytes,
            LogLevel = Str(server, "server", "log_level") ?? defaults.LogLevel,
            Certificate = Str(server, "server", "certificate") is { Length: > 0 } cert ? Resolve(cert) : null,
            CertificatePassword = Str(server, "server", "certificate_password"),
        };
        bool https = serverConfig.Listen.StartsWith("https:", StringComparison.OrdinalIgnoreCase);
        if (https && serverConfig.Certificate is null)
            throw new AgentConfigException($"{(server?["listen"] ?? (TomlNode)root).Location}: server.listen: an https:// URL needs server.certificate (a PKCS#12 .pfx file)");
        if (checkFiles && serverConfig.Certificate is { } certPath && !System.IO.File.Exists(certPath))
            Fail(server!["certificate"]!, "server.certificate", $"no such file: {certPath}");
        if (server?["log_level"] is { } ll && !Enum.TryParse<Microsoft.Extensions.Logging.LogLevel>(serverConfig.LogLevel, true, out _))
            Fail(ll, "server.log_level", "expected Trace, Debug, Information, Warning, Error, Critical or None");
        if (server?["listen"] is { } listen && !Uri.TryCreate(serverConfig.Listen, UriKind.Absolute, out _))
            Fail(listen, "server.listen", "expected a URL such as \"http://127.0.0.1:8080\"");
        if (token.Length == 0)
            throw new AgentConfigException($"{(server?["api_token"] ?? (TomlNode?)server ?? root).Location}: server.api_token: no API token (set server.api_token or the {TokenVariable} environment variable)");

        var pathNode = model["path"];
        string? modelPath = Str(model, "model", "path");
        if (modelPath is null or "") throw new AgentConfigException($"{model.Location}: model.path: required (the GGUF to serve)");
        modelPath = Resolve(modelPath);
        if (checkFiles && !System.IO.File.Exists(modelPath)) Fail(pathNode!, "model.path", $"no such file: {modelPath}");
        var adapters = new List<string>();
        if (model["adapters"] is { } adaptersNode)
        {
            if (adaptersNode is not TomlArrayNode array) { Fail(adaptersNode, "model.adapters", $"expected an array of paths, found {adaptersNode.Describe()}"); return null!; }
            foreach (var item in array.Items)
            {
                if (item is not TomlValueNode { Value: string s }) { Fail(item, "model.adapters", $"expected a path, found {item.Describe()}"); return null!; }
                var full = Resolve(s);
                if (checkFiles && !System.IO.File.Exists(full)) Fail(item, "model.adapters", $"no such file: {full}");
                adapters.Add(full);
            }
        }
        var modelDefaults = new ModelConfig { Path = modelPath };
        var modelConfig = modelDefaults with
        {
            Name = Str(model, "model", "name") is { Length: > 0 } name ? name : System.IO.Path.GetFileNameWithoutExtension(modelPath),
            Adapters = adapters,
            Context = (int)(Int(model, "model", "context", 16, 1 << 20) ?? modelDefaults.Context),
            Batch = (int)(Int(model, "model", "batch", 1, 1 << 16) ?? modelDefaults.Batch),
            Threads = (int)(Int(model, "model", "threads", 1, 1024) ?? modelDefaults.Threads),
            GpuLayers = (int)(Int(model, "model", "gpu_layers", 0, 100_000) ?? 0),
            NativeLibrary = Str(model, "model", "native_library") is { Length: > 0 } lib ? Resolve(lib) : null,
            DefaultMaxTokens = (int)(Int(model, "model", "default_max_tokens", 1, 1 << 20) ?? modelDefaults.DefaultMaxTokens),
        };
        if (checkFiles && modelConfig.NativeLibrary is { } native && !System.IO.File.Exists(native))
            Fail(model["native_library"]!, "model.native_library", $"no such file: {native}");

        var logDefaults = new FieldLogConfig();
        var logConfig = new FieldLogConfig
        {
            Path = Resolve(Str(log, "field_log", "path") ?? logDefaults.Path),
            Enabled = Bool(log, "field_log", "enabled") ?? true,
            DeviceId = Str(log, "field_log", "device_id") ?? logDefaults.DeviceId,
            MaxRecords = Int(log, "field_log", "max_records", 0, long.MaxValue) ?? 0,
            SampleRate = Num(log, "field_log", "sample_rate", 0, 1) ?? 1.0,
            RedactReplacement = Str(log, "field_log", "redact_replacement") ?? logDefaults.RedactReplacement,
        };
        if (log?["redact"] is { } redactNode)
        {
            if (redactNode is not TomlArrayNode rules) { Fail(redactNode, "field_log.redact", $"expected an array of rule names or regular expressions, found {redactNode.Describe()}"); return null!; }
            var list = new List<string>();
            foreach (var rule in rules.Items)
            {
                if (rule is not TomlValueNode { Value: string r }) { Fail(rule, "field_log.redact", $"expected a rule name or a regular expression, found {rule.Describe()}"); return null!; }
                try { _ = EdgeTune.Agent.FieldLog.Redactor.Compile(r); }
                catch (ArgumentException e) { Fail(rule, "field_log.redact", $"'{r}' is not a valid regular expression ({e.Message})"); }
                list.Add(r);
            }
            logConfig = logConfig with { Redact = list };
        }
        var gpio = root["gpio"] as TomlTableNode;
        var gpioConfig = new GpioConfig
        {
            Enabled = Bool(gpio, "gpio", "enabled") ?? false,
            Chip = (int)(Int(gpio, "gpio", "chip", 0, 64) ?? 0),
            FeedbackUpPin = (int?)Int(gpio, "gpio", "feedback_up_pin", 0, 4096),
            FeedbackDownPin = (int?)Int(gpio, "gpio", "feedback_down_pin", 0, 4096),
            StatusLedPin = (int?)Int(gpio, "gpio", "status_led_pin", 0, 4096),
            DebounceMs = (int)(Int(gpio, "gpio", "debounce_ms", 0, 10_000) ?? 50),
        };
        if ((gpioConfig.FeedbackUpPin is null) != (gpioConfig.FeedbackDownPin is null))
            throw new AgentConfigException($"{gpio!.Location}: gpio: give both feedback_up_pin and feedback_down_pin, or neither");
        if (gpioConfig.FeedbackUpPin is { } up && up == gpioConfig.FeedbackDownPin)
            Fail(gpio!["feedback_down_pin"]!, "gpio.feedback_down_pin", $"the up and down buttons need two pins (both are {up})");
        var telemetry = root["telemetry"] as TomlTableNode;
        var telemetryDefaults = new TelemetryConfig();
        var telemetryConfig = new TelemetryConfig
        {
            Enabled = Bool(telemetry, "telemetry", "enabled") ?? true,
            SysfsRoot = Str(telemetry, "telemetry", "sysfs_root") is { Length: > 0 } sysfs ? (sysfs == "/" ? "/" : Resolve(sysfs)) : "/",
            PowerRails = StrList(telemetry, "telemetry", "power_rails") ?? telemetryDefaults.PowerRails,
            GpuDevfreq = StrList(telemetry, "telemetry", "gpu_devfreq") ?? telemetryDefaults.GpuDevfreq,
        };
        var fleetConfig = EdgeTune.Agent.Fleet.FleetConfig.Load(root["fleet"] as TomlTableNode, logConfig, Resolve, checkFiles);
        return new AgentConfig { File = file, Server = serverConfig, Model = modelConfig, FieldLog = logConfig, Gpio = gpioConfig, Telemetry = telemetryConfig, Fleet = fleetConfig };
    }

    internal static void Fail(TomlNode node, string key, string message) =>
        throw new AgentConfigException(new ProfileDiagnostic(node.Location, key, message).ToString());

    internal static string? Str(TomlTableNode? table, string section, string key)
    {
        if (table?[key] is not { } node) return null;
        if (node is TomlValueNode { Value: string s }) return s;
        Fail(node, $"{section}.{key}", $"expected a string, found {node.Describe()}");
        return null;
    }

    private static List<string>? StrList(TomlTableNode? table, string section, string key)
    {
        if (table?[key] is not { } node) return null;
        if (node is not TomlArrayNode array) { Fail(node, $"{section}.{key}", $"expected an array of strings, found {node.Describe()}"); return null; }
        var list = new List<string>();
        foreach (var item in array.Items)
        {
            if (item is TomlValueNode { Value: string s }) list.Add(s);
            else Fail(item, $"{section}.{key}", $"expected a string, found {item.Describe()}");
        }
        return list;
    }

    private static bool? Bool(TomlTableNode? table, string section, string key)
    {
        if (table?[key] is not { } node) return null;
        if (node is TomlValueNode { Value: bool b }) return b;
        Fail(node, $"{section}.{key}", $"expected true or false, found {node.Describe()}");
        return null;
    }

    internal static long? Int(TomlTableNode? table, string section, string key, long min, long max)
    {
        if (table?[key] is not { } node) return null;
        if (node is TomlValueNode { Value: long l })
        {
            if (l < min || l > max) Fail(node, $"{section}.{key}", $"{l} is out of range ({min}..{max})");
            return l;
        }
        Fail(node, $"{section}.{key}", $"expected an integer, found {node.Describe()}");
        return null;
    }

    private static double? Num(TomlTableNode? table, string section, string key, double min, double max)
    {
        if (table?[key] is not { } node) return null;
        double? v = node is TomlValueNode { Value: long l } ? l : node is TomlValueNode { Value: double d } ? d : null;
        if (v is null) Fail(node, $"{section}.{key}", $"expected a number, found {node.Describe()}");
        if (v < min || v > max) Fail(node, $"{section}.{key}", $"{v} is out of range ({min}..{max})");
        return v;
    }
}
