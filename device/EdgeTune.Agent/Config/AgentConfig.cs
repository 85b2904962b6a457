using EdgeTune.Agent.Api;
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

/// <summary>A bearer token and what it may do; <paramref name="Key"/> names where it was configured (for messages).
/// <paramref name="Token"/> is null for a token_file not read (a configuration loaded for an offline verb).</summary>
public sealed record ScopedToken(string? Token, Scope Scopes, string Key);

public sealed record ServerConfig
{
    public string Listen { get; init; } = "http://127.0.0.1:8080";

    /// <summary>The single token with every scope (server.api_token or EDGETUNE_AGENT_TOKEN); empty when only scoped tokens are used.</summary>
    public string ApiToken { get; init; } = "";

    /// <summary>[[server.tokens]]: tokens limited to some scopes.</summary>
    public IReadOnlyList<ScopedToken> Tokens { get; init; } = [];

    /// <summary>Serve plain HTTP on an address other than loopback (tokens and field data then cross the network in clear).</summary>
    public bool AllowPlainHttp { get; init; }
    /// <summary>Requests that may wait for a slot; 64 so that 64 concurrent clients queue rather than get 429.</summary>
    public int QueueCapacity { get; init; } = 64;

    /// <summary>Requests generating at once, decoded together by llama.cpp (one sequence each); 1 serves one at a time.</summary>
    // 1 by default: batched decoding (parallel > 1) hung once in a fresh-clone CI run of the demo (the agent never answered
    // /health after start; not yet root-caused), so it is opt-in until that is found.
    public int Parallel { get; init; } = 1;
    public double RequestTimeoutSeconds { get; init; } = 120;
    public long MaxBodyBytes { get; init; } = 1 << 20;
    public string LogLevel { get; init; } = "Information";

    /// <summary>PKCS#12 certificate for an https:// listen URL.</summary>
    public string? Certificate { get; init; }
    public string? CertificatePassword { get; init; }

    public const int MinTokenLength = 16;
    private static readonly string[] Placeholders = ["changeme", "changeit", "replaceme", "token", "secret", "password", "apitoken"];

    /// <summary>Every token the server accepts: api_token (all scopes) first, then the scoped ones.</summary>
    public IEnumerable<ScopedToken> AllTokens =>
        ApiToken.Length > 0 ? Tokens.Prepend(new ScopedToken(ApiToken, Scope.All, "server.api_token")) : Tokens;

    /// <summary>Why a token may not be used (a placeholder, too short), or null.</summary>
    public static string? WeakToken(string token)
    {
        string folded = new(token.Where(char.IsLetterOrDigit).Select(char.ToLowerInvariant).ToArray());
        if (Placeholders.Contains(folded) || token.Trim().Length == 0 || token.Distinct().Count() == 1)
            return $"'{token}' is a placeholder; generate a secret, e.g. `openssl rand -hex 24`";
        if (token.Length < MinTokenLength)
            return $"the token is {token.Length} characters; at least {MinTokenLength} are required (e.g. `openssl rand -hex 24`)";
        return null;
    }

    /// <summary>Whether the listen URL's host is a loopback address (localhost, 127.0.0.0/8, ::1).</summary>
    public bool ListensOnLoopback =>
        Uri.TryCreate(Listen, UriKind.Absolute, out var uri) &&
        (uri.IsLoopback || (System.Net.IPAddress.TryParse(uri.Host.Trim('[', ']'), out var ip) && System.Net.IPAddress.IsLoopback(ip)));

    public bool Https => Listen.StartsWith("https:", StringComparison.OrdinalIgnoreCase);

    /// <summary>What keeps this server from starting safely, each with the key it is about: no token, a weak token,
    /// a token file not read, plain HTTP beyond loopback.</summary>
    /// <param name="tokenFilesRead">False for a configuration loaded for an offline verb, whose token files were not read.</param>
    public IEnumerable<(string Key, string Message)> Problems(bool tokenFilesRead = true)
    {
        bool any = false;
        foreach (var t in AllTokens)
        {
            any = true;
            if (t.Token is null)
            {
                if (tokenFilesRead) yield return (t.Key, "the token file was not read (the configuration was loaded without its files)");
            }
            else if (WeakToken(t.Token) is { } weak) yield return (t.Key, weak);
        }
        if (!any) yield return ("server.api_token", $"no API token (set server.api_token, [[server.tokens]] or the {AgentConfig.TokenVariable} environment variable)");
        if (!Https && !ListensOnLoopback && !AllowPlainHttp)
            yield return ("server.listen", $"'{Listen}' is reachable beyond this machine over plain HTTP (tokens and field data in clear): use an https:// URL with server.certificate, or set server.allow_plain_http = true");
    }
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
    /// <summary>"llama_cpp" (a GGUF file, the default) or "onnx" (a folder from 'edgetune export onnx', ONNX Runtime GenAI on the CPU).</summary>
    public string Runtime { get; init; } = "llama_cpp";
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

    /// <summary>Redaction rules: built-in names (email, phone, card, iban, ipv4) or .NET regular expressions.
    /// email, card, iban and phone by default; an empty list turns redaction off.</summary>
    public IReadOnlyList<string> Redact { get; init; } = EdgeTune.Agent.FieldLog.Redactor.DefaultRules;

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
/// [retrieval]: serve with retrieval-augmented generation. Chat completions get the top_k chunks of the knowledge
/// index (built by `edgetune retrieval index` for this model) that fit max_context_tokens in the system prompt.
/// </summary>
public sealed record RetrievalConfig
{
    public required string Index { get; init; }
    public int TopK { get; init; } = 4;
    /// <summary>The most tokens of retrieved chunks one prompt gets (the chunks' own counts, in the model's tokens).</summary>
    public int MaxContextTokens { get; init; } = 1024;
}

/// <summary>
/// [drift]: live traffic against the training set's fingerprint (EdgeTune.Core.Drift); off without a fingerprint.
/// A bundle carrying drift/fingerprint.json supplies it for its slot.
/// </summary>
public sealed record DriftConfig
{
    /// <summary>The fingerprint from `edgetune data fingerprint`; null: no drift monitor.</summary>
    public string? Fingerprint { get; init; }
    public EdgeTune.Core.Drift.DriftThresholds Thresholds { get; init; } = new();
}

/// <summary>Signed bundle installs (device/EdgeTune.Agent/Bundles): trusted keys, the A/B slots' home, health check.</summary>
public sealed record BundlesConfig
{
    /// <summary>A public key file or a folder of *.pub; null refuses every install.</summary>
    public string? Trust { get; init; }
    public string StateDir { get; init; } = "/var/lib/edgetune";
    /// <summary>The board id bundles must name in <c>compatible</c> (a profile name such as jetson-orin-nano-8gb).</summary>
    public string? Board { get; init; }
    public int BootAttempts { get; init; } = 3;
    public string CanaryPrompt { get; init; } = "Reply with OK.";
    public double HealthTimeoutSeconds { get; init; } = 120;
    public long MaxBundleBytes { get; init; } = 64L << 30;
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
    public BundlesConfig Bundles { get; init; } = new();
    /// <summary>[retrieval]; null when the section is absent (completions are served as they come).</summary>
    public RetrievalConfig? Retrieval { get; init; }
    public DriftConfig Drift { get; init; } = new();

    /// <summary>
    /// Where relative state paths (field_log.path) resolve: an explicit bundles.state_dir, else systemd's
    /// $STATE_DIRECTORY, else the configuration's folder. /etc is read-only under ProtectSystem=full.
    /// </summary>
    public const string StateDirectoryVariable = "STATE_DIRECTORY";

    /// <summary>[fleet]: the MQTT outbox (device/EdgeTune.Agent/Fleet); null when the section is absent (nothing changes).</summary>
    public EdgeTune.Agent.Fleet.FleetConfig? Fleet { get; init; }

    public const string TokenVariable = "EDGETUNE_AGENT_TOKEN";

    private static readonly Dictionary<string, string[]> Keys = new()
    {
        ["server"] = ["listen", "api_token", "tokens", "allow_plain_http", "queue_capacity", "parallel", "request_timeout_seconds", "max_body_bytes", "log_level", "certificate", "certificate_password"],
        ["model"] = ["path", "runtime", "name", "adapters", "context", "batch", "threads", "gpu_layers", "native_library", "default_max_tokens"],
        ["field_log"] = ["path", "enabled", "device_id", "max_records", "sample_rate", "redact", "redact_replacement"],
        ["telemetry"] = ["enabled", "sysfs_root", "power_rails", "gpu_devfreq"],
        ["bundles"] = ["trust", "state_dir", "board", "boot_attempts", "canary_prompt", "health_timeout_seconds", "max_bundle_bytes"],
        ["gpio"] = ["enabled", "chip", "feedback_up_pin", "feedback_down_pin", "status_led_pin", "debounce_ms"],
        ["fleet"] = EdgeTune.Agent.Fleet.FleetConfig.Keys,
        ["retrieval"] = ["index", "top_k", "max_context_tokens"],
        ["drift"] = ["fingerprint", "window", "min_samples", "psi_warn", "js_warn", "validity_warn", "rating_warn", "min_ratings"],
    };

    private static readonly string[] TokenKeys = ["token", "token_file", "scopes"];

    /// <summary>
    /// Load and validate; <paramref name="checkFiles"/> also requires the model and adapter files to exist and
    /// reads token files (offline verbs such as export load without them). <paramref name="requireToken"/> false
    /// reads a bundle's slot configuration, which supplies [model] only.
    /// </summary>
    public static AgentConfig Load(string file, bool checkFiles = true, bool requireToken = true)
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
            Tokens = Tokens(server, Resolve, checkFiles),
            AllowPlainHttp = Bool(server, "server", "allow_plain_http") ?? false,
            QueueCapacity = (int)(Int(server, "server", "queue_capacity", 0, 100_000) ?? defaults.QueueCapacity),
            Parallel = (int)(Int(server, "server", "parallel", 1, EdgeTune.Inference.LlamaCpp.LlamaCppModel.MaxParallel) ?? defaults.Parallel),
            RequestTimeoutSeconds = Num(server, "server", "request_timeout_seconds", 0.001, 86_400) ?? defaults.RequestTimeoutSeconds,
            MaxBodyBytes = Int(server, "server", "max_body_bytes", 1024, 1L << 31) ?? defaults.MaxBodyBytes,
            LogLevel = Str(server, "server", "log_level") ?? defaults.LogLevel,
            Certificate = Str(server, "server", "certificate") is { Length: > 0 } cert ? Resolve(cert) : null,
            CertificatePassword = Str(server, "server", "certificate_password"),
        };
        if (serverConfig.Https && serverConfig.Certificate is null)
            throw new AgentConfigException($"{(server?["listen"] ?? (TomlNode)root).Location}: server.listen: an https:// URL needs server.certificate (a PKCS#12 .pfx file)");
        if (checkFiles && serverConfig.Certificate is { } certPath && !System.IO.File.Exists(certPath))
            Fail(server!["certificate"]!, "server.certificate", $"no such file: {certPath}");
        if (server?["log_level"] is { } ll && !Enum.TryParse<Microsoft.Extensions.Logging.LogLevel>(serverConfig.LogLevel, true, out _))
            Fail(ll, "server.log_level", "expected Trace, Debug, Information, Warning, Error, Critical or None");
        if (server?["listen"] is { } listen && !Uri.TryCreate(serverConfig.Listen, UriKind.Absolute, out _))
            Fail(listen, "server.listen", "expected a URL such as \"http://127.0.0.1:8080\"");
        // A token file not read (offline verbs) is not a problem here; AgentApp.Build refuses it. A bundle's slot
        // configuration supplies [model] only, so its [server] is not checked.
        if (requireToken)
            foreach (var (key, message) in serverConfig.Problems(tokenFilesRead: checkFiles))
                throw new AgentConfigException($"{Where(root, server, key).Location}: {key}: {message}");

        var pathNode = model["path"];
        string? modelPath = Str(model, "model", "path");
        if (modelPath is null or "") throw new AgentConfigException($"{model.Location}: model.path: required (the GGUF to serve)");
        modelPath = Resolve(modelPath);
        string runtime = Str(model, "model", "runtime") ?? "llama_cpp";
        if (runtime is not ("llama_cpp" or "onnx")) Fail(model["runtime"]!, "model.runtime", $"'{runtime}' is not a runtime (llama_cpp or onnx)");
        if (checkFiles && runtime == "onnx" && !System.IO.Directory.Exists(modelPath)) Fail(pathNode!, "model.path", $"no such folder: {modelPath} (runtime \"onnx\" serves a folder from 'edgetune export onnx')");
        if (checkFiles && runtime == "llama_cpp" && !System.IO.File.Exists(modelPath))
            Fail(pathNode!, "model.path", System.IO.Directory.Exists(modelPath)
                ? $"{modelPath} is a folder, not a GGUF file; an ONNX folder from 'edgetune export onnx' is served with model.runtime = \"onnx\""
                : $"no such file: {modelPath}");
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
            Runtime = runtime,
            Context = (int)(Int(model, "model", "context", 16, 1 << 20) ?? modelDefaults.Context),
            Batch = (int)(Int(model, "model", "batch", 1, 1 << 16) ?? modelDefaults.Batch),
            Threads = (int)(Int(model, "model", "threads", 1, 1024) ?? modelDefaults.Threads),
            GpuLayers = (int)(Int(model, "model", "gpu_layers", 0, 100_000) ?? 0),
            NativeLibrary = Str(model, "model", "native_library") is { Length: > 0 } lib ? Resolve(lib) : null,
            DefaultMaxTokens = (int)(Int(model, "model", "default_max_tokens", 1, 1 << 20) ?? modelDefaults.DefaultMaxTokens),
        };
        if (checkFiles && modelConfig.NativeLibrary is { } native && !System.IO.File.Exists(native))
            Fail(model["native_library"]!, "model.native_library", $"no such file: {native}");

        var bundles = root["bundles"] as TomlTableNode;
        var bundleDefaults = new BundlesConfig();
        string? stateDir = Str(bundles, "bundles", "state_dir") is { Length: > 0 } sd ? Resolve(sd) : null;
        string? systemdState = Environment.GetEnvironmentVariable(StateDirectoryVariable) is { Length: > 0 } sv ? System.IO.Path.GetFullPath(sv.Split(':')[0]) : null;
        var bundlesConfig = new BundlesConfig
        {
            Trust = Str(bundles, "bundles", "trust") is { Length: > 0 } trust ? Resolve(trust) : null,
            StateDir = stateDir ?? systemdState ?? bundleDefaults.StateDir,
            Board = Str(bundles, "bundles", "board") is { Length: > 0 } board ? board : null,
            BootAttempts = (int)(Int(bundles, "bundles", "boot_attempts", 1, 100) ?? bundleDefaults.BootAttempts),
            CanaryPrompt = Str(bundles, "bundles", "canary_prompt") is { Length: > 0 } canary ? canary : bundleDefaults.CanaryPrompt,
            HealthTimeoutSeconds = Num(bundles, "bundles", "health_timeout_seconds", 0.001, 86_400) ?? bundleDefaults.HealthTimeoutSeconds,
            MaxBundleBytes = Int(bundles, "bundles", "max_bundle_bytes", 1024, long.MaxValue) ?? bundleDefaults.MaxBundleBytes,
        };
        string stateRoot = stateDir ?? systemdState ?? dir;

        var logDefaults = new FieldLogConfig();
        var logConfig = new FieldLogConfig
        {
            Path = System.IO.Path.GetFullPath(System.IO.Path.Combine(stateRoot, Str(log, "field_log", "path") ?? logDefaults.Path)),
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
                try { _ = EdgeTune.Agent.FieldLog.Redactor.Validate(r); }
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
        var drift = root["drift"] as TomlTableNode;
        var thresholds = new EdgeTune.Core.Drift.DriftThresholds();
        var driftConfig = new DriftConfig
        {
            Fingerprint = Str(drift, "drift", "fingerprint") is { Length: > 0 } fingerprint ? Resolve(fingerprint) : null,
            Thresholds = new EdgeTune.Core.Drift.DriftThresholds
            {
                Window = (int)(Int(drift, "drift", "window", 1, 1_000_000) ?? thresholds.Window),
                MinSamples = (int)(Int(drift, "drift", "min_samples", 1, 1_000_000) ?? thresholds.MinSamples),
                PromptLengthPsi = Num(drift, "drift", "psi_warn", 0, 100) ?? thresholds.PromptLengthPsi,
                TokenJs = Num(drift, "drift", "js_warn", 0, 1) ?? thresholds.TokenJs,
                FormatValidity = Num(drift, "drift", "validity_warn", 0, 1) ?? thresholds.FormatValidity,
                MeanRating = Num(drift, "drift", "rating_warn", -1_000, 1_000) ?? thresholds.MeanRating,
                MinRatings = (int)(Int(drift, "drift", "min_ratings", 1, 1_000_000) ?? thresholds.MinRatings),
            },
        };
        if (checkFiles && driftConfig.Fingerprint is { } fp)
        {
            try { EdgeTune.Core.Drift.DriftFingerprint.Read(fp); }
            catch (EdgeTune.Core.EdgeTuneException e) { Fail(drift!["fingerprint"]!, "drift.fingerprint", e.Message); }
        }
        var retrievalConfig = ReadRetrieval(root["retrieval"] as TomlTableNode, Resolve, checkFiles, modelConfig.Context);
        return new AgentConfig { File = file, Server = serverConfig, Model = modelConfig, FieldLog = logConfig, Gpio = gpioConfig, Telemetry = telemetryConfig, Bundles = bundlesConfig, Fleet = fleetConfig, Retrieval = retrievalConfig, Drift = driftConfig };
    }

    // [retrieval]: with the files checked, a missing, foreign or stale index stops the start here (the tokenizer is
    // checked once the model has loaded).
    private static RetrievalConfig? ReadRetrieval(TomlTableNode? table, Func<string, string> resolve, bool checkFiles, int context)
    {
        if (table is null) return null;
        string? index = Str(table, "retrieval", "index");
        if (index is null or "") throw new AgentConfigException($"{table.Location}: retrieval.index: required (a knowledge index written by `edgetune retrieval index`)");
        var config = new RetrievalConfig
        {
            Index = resolve(index),
            TopK = (int)(Int(table, "retrieval", "top_k", 1, 100) ?? 4),
            MaxContextTokens = (int)(Int(table, "retrieval", "max_context_tokens", 1, 1 << 20) ?? Math.Min(1024, context / 2)),
        };
        if (config.MaxContextTokens >= context)
            Fail(table["max_context_tokens"] ?? table, "retrieval.max_context_tokens", $"{config.MaxContextTokens} leaves no room in model.context ({context}) for the conversation and the answer");
        if (checkFiles)
        {
            try
            {
                using var opened = EdgeTune.Retrieval.KnowledgeIndex.Open(config.Index);
            }
            catch (EdgeTuneException e)
            {
                Fail(table["index"]!, "retrieval.index", e.Message);
            }
        }
        return config;
    }

    // [[server.tokens]]: each entry has token or token_file (read now when the files are checked) and scopes.
    private static List<ScopedToken> Tokens(TomlTableNode? server, Func<string, string> resolve, bool readFiles)
    {
        var tokens = new List<ScopedToken>();
        if (server?["tokens"] is not { } node) return tokens;
        if (node is not TomlArrayNode entries) { Fail(node, "server.tokens", $"expected [[server.tokens]] entries, found {node.Describe()}"); return tokens; }
        for (int i = 0; i < entries.Items.Count; i++)
        {
            string key = $"server.tokens[{i + 1}]";
            if (entries.Items[i] is not TomlTableNode entry) { Fail(entries.Items[i], key, $"expected a table with token or token_file and scopes, found {entries.Items[i].Describe()}"); continue; }
            foreach (var (sub, subNode) in entry.Items)
                if (!TokenKeys.Contains(sub)) Fail(subNode, $"{key}.{sub}", $"unknown key (allowed: {string.Join(", ", TokenKeys)})");
            string? inline = Str(entry, key, "token");
            string? file = Str(entry, key, "token_file");
            if ((inline is null) == (file is null)) throw new AgentConfigException($"{entry.Location}: {key}: give exactly one of token and token_file");
            var scopes = Scope.None;
            var scopeNode = entry["scopes"];
            if (scopeNode is not TomlArrayNode { Items.Count: > 0 } scopeList)
                throw new AgentConfigException($"{(scopeNode ?? entry).Location}: {key}.scopes: expected a non-empty array of {string.Join(", ", Scopes.Names.Keys)}");
            foreach (var item in scopeList.Items)
            {
                if (item is TomlValueNode { Value: string name } && Scopes.Names.TryGetValue(name, out var scope)) scopes |= scope;
                else Fail(item, $"{key}.scopes", $"expected one of {string.Join(", ", Scopes.Names.Keys)}, found {item.Describe()}");
            }
            string? value = inline;
            if (file is not null && readFiles)
            {
                string path = resolve(file);
                if (!System.IO.File.Exists(path)) Fail(entry["token_file"]!, $"{key}.token_file", $"no such file: {path}");
                value = System.IO.File.ReadAllText(path).Trim();
            }
            tokens.Add(new ScopedToken(value, scopes, file is null ? $"{key}.token" : $"{key}.token_file"));
        }
        return tokens;
    }

    // The node a server problem is about, for its file:line:column.
    private static TomlNode Where(TomlTableNode root, TomlTableNode? server, string key)
    {
        if (server is null) return root;
        var parts = key.Split('.');
        if (parts.Length >= 2 && parts[1].StartsWith("tokens[", StringComparison.Ordinal) && server["tokens"] is TomlArrayNode entries &&
            int.TryParse(parts[1]["tokens[".Length..^1], out int n) && n >= 1 && n <= entries.Items.Count)
            return entries.Items[n - 1] is TomlTableNode entry && parts.Length == 3 && entry[parts[2]] is { } leaf ? leaf : entries.Items[n - 1];
        return parts.Length == 2 && server[parts[1]] is { } node ? node : server;
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
