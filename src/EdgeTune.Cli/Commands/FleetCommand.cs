using System.CommandLine;
using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using EdgeTune.Agent.Fleet;
using EdgeTune.Cli.Fleet;
using EdgeTune.Formats.FieldData;

namespace EdgeTune.Cli.Commands;

/// <summary><c>edgetune fleet collect|status|rollout</c>: field data, health and staged bundle rollouts of many agents through an MQTT broker.</summary>
internal static class FleetCommand
{
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static Command Create(CliConsole console) =>
        new("fleet",
            "Many agents through an MQTT broker (Mosquitto for a site; any MQTT 5 broker): collect their field data exactly once, see their status, roll a bundle out in stages.\n\n" +
            "Example: edgetune fleet collect --broker mqtts://broker.lan --into data/ --username collector --password-file ~/.config/edgetune/broker.pw")
        {
            Collect(console), Status(console), Rollout(console),
        };

    private sealed record BrokerOptions(Option<string> Broker, Option<string> Fleet, Option<string?> Username, Option<string?> PasswordFile, Option<string?> CaFile,
        Option<string?> Certificate, Option<string?> Key)
    {
        public static BrokerOptions Create() => new(
            new Option<string>("--broker") { Description = "The broker: mqtt://HOST[:1883] or mqtts://HOST[:8883]", Required = true },
            new Option<string>("--fleet") { Description = "The fleet (the agents' [fleet] fleet)", DefaultValueFactory = _ => "default" },
            new Option<string?>("--username") { Description = "Broker username" },
            new Option<string?>("--password-file") { Description = "A file whose first line is the broker password" },
            new Option<string?>("--ca-file") { Description = "PEM certificate authorities for an mqtts:// broker (default: the system's)" },
            new Option<string?>("--client-certificate") { Description = "PEM client certificate, for brokers that authenticate by certificate" },
            new Option<string?>("--client-key") { Description = "PEM key of --client-certificate" });

        public IEnumerable<Option> All => [Broker, Fleet, Username, PasswordFile, CaFile, Certificate, Key];

        public FleetConnection Connection(ParseResult parse, string clientId, bool persistent)
        {
            string broker = parse.GetValue(Broker)!;
            if (FleetBroker.ParseUrl(broker, out var problem) is null) throw new FleetException($"--broker '{broker}': {problem}");
            if (FleetProtocol.CheckName(parse.GetValue(Fleet)!) is { } bad) throw new FleetException($"--fleet '{parse.GetValue(Fleet)}': {bad}");
            return new FleetConnection
            {
                Broker = broker,
                ClientId = clientId,
                Username = parse.GetValue(Username),
                PasswordFile = parse.GetValue(PasswordFile),
                CaFile = parse.GetValue(CaFile),
                ClientCertificate = parse.GetValue(Certificate),
                ClientKey = parse.GetValue(Key),
                SessionExpirySeconds = persistent ? 30u * 24 * 3600 : 0,
            };
        }
    }

    private static Command Collect(CliConsole console)
    {
        var broker = BrokerOptions.Create();
        var into = new Option<string>("--into") { Description = "A split folder (made by edgetune data split): records are ingested under its rules", Required = true };
        var untilIdle = new Option<double?>("--until-idle") { Description = "Stop after this many seconds without a message (default: run until interrupted)" };
        var clientId = new Option<string?>("--client-id") { Description = "The collector's MQTT client id: its persistent session on the broker (default edgetune-collector-FLEET)" };
        var json = new Option<bool>("--json") { Description = "Print the result as JSON" };
        var command = new Command("collect",
            "Subscribe to every agent's records (persistent session, QoS 1) and write each record once into a split folder through the data ingest rules: " +
            "provenance (device, record, revision, time), duplicates skipped, the frozen test split never written. A record is acknowledged to the broker only " +
            "after it is on disk (fsync); a ledger (DATA_DIR/fleet/ledger.tsv) keeps a re-delivered or replayed message from being written twice. " +
            "Exit 1 when the broker cannot be reached or refuses the credentials.\n\n" +
            "Example: edgetune fleet collect --broker mqtt://127.0.0.1:1883 --into data/ --until-idle 30")
        {
            into, untilIdle, clientId, json,
        };
        foreach (var o in broker.All) command.Add(o);
        command.SetAction(async (parse, ct) =>
        {
            string fleet = parse.GetValue(broker.Fleet)!;
            var options = new CollectOptions
            {
                Connection = broker.Connection(parse, parse.GetValue(clientId) ?? $"edgetune-collector-{fleet}", persistent: true) with { ReceiveMaximum = 5000 },
                Into = parse.GetValue(into)!,
                Fleet = fleet,
                UntilIdle = parse.GetValue(untilIdle) is { } s ? TimeSpan.FromSeconds(s) : null,
            };
            var result = await new FleetCollector(options, console.Error).RunAsync(ct);
            foreach (var gap in result.Gaps) console.Error.WriteLine("fleet collect: warning: " + gap);
            if (parse.GetValue(json))
                console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    received = result.Received, replayed = result.Replayed, malformed = result.Malformed, added = result.Added, duplicates = result.Duplicates,
                    held_back = result.HeldBack, refused = result.Refused, batches = result.Batches, devices = result.Devices, gaps = result.Gaps,
                    rolled_back = result.RolledBack,
                }, Json));
            else
                console.Out.WriteLine($"{result.Received} message(s) from {result.Devices.Count} device(s): added train {result.Added["train"]}, eval {result.Added["eval"]}; " +
                    $"{result.HeldBack} held back (test by the hash rule), {result.Duplicates} duplicate example(s) skipped, {result.Replayed} re-delivered or replayed message(s) skipped, " +
                    $"{result.Refused} refused (frozen test split or unreadable), {result.Malformed} malformed");
            return CliApp.Success;
        });
        return command;
    }

    private static Command Status(CliConsole console)
    {
        var broker = BrokerOptions.Create();
        var wait = new Option<double>("--wait") { Description = "Seconds to listen for status messages after the retained ones (the broker sends those at once)", DefaultValueFactory = _ => 1 };
        var json = new Option<bool>("--json") { Description = "Print the devices as JSON" };
        var command = new Command("status",
            "Each agent's latest status (retained on the broker): health, last seen, model and bundle, feedback and format-validity rates, p95 latency, outbox lag.\n\n" +
            "Example: edgetune fleet status --broker mqtt://127.0.0.1:1883 --json")
        {
            wait, json,
        };
        foreach (var o in broker.All) command.Add(o);
        command.SetAction(async (parse, ct) =>
        {
            string fleet = parse.GetValue(broker.Fleet)!;
            var connection = broker.Connection(parse, $"edgetune-status-{Guid.NewGuid():N}", persistent: false);
            var devices = await FleetStatusReader.ReadAsync(connection, fleet, TimeSpan.FromSeconds(parse.GetValue(wait)), ct);
            var now = DateTimeOffset.UtcNow;
            if (parse.GetValue(json))
            {
                console.Out.WriteLine(JsonSerializer.Serialize(devices.Select(d => new
                {
                    device = d.Device, health = d.Health, error = d.Error, last_seen = d.Time, seconds_ago = Math.Round((now - d.Time).TotalSeconds, 1),
                    model = d.Model, adapter = d.Adapter, bundle = d.Bundle, tokens_per_second = d.TokensPerSecond, feedback_rate = d.FeedbackRate,
                    format_valid_rate = d.FormatValidRate, latency_p95_ms = d.LatencyP95Ms, outbox_lag = d.OutboxLag, outbox_dropped = d.OutboxDropped,
                    published = d.Published, queue_depth = d.QueueDepth, power_watts = d.PowerWatts, temperature_c = d.TemperatureC,
                    drift_prompt_length_psi = d.DriftPromptLengthPsi, drift_token_js = d.DriftTokenJs, drift_format_validity = d.DriftFormatValidity,
                    drift_warning = d.DriftWarning, drift_reasons = d.DriftReasons,
                }), Json));
                return CliApp.Success;
            }
            if (devices.Count == 0)
            {
                console.Out.WriteLine($"no device has published a status under {FleetProtocol.AllStatus(fleet)}");
                return CliApp.Success;
            }
            string[] header = ["DEVICE", "HEALTH", "LAST SEEN", "MODEL", "BUNDLE", "FEEDBACK", "JSON OK", "P95 MS", "OUTBOX LAG", "DROPPED", "DRIFT"];
            var rows = devices.Select(d => new[]
            {
                d.Device, d.Health, Ago(now - d.Time), d.Model ?? "-", d.Bundle ?? "-", Percent(d.FeedbackRate), Percent(d.FormatValidRate),
                d.LatencyP95Ms is { } p ? p.ToString("0", CultureInfo.InvariantCulture) : "-", d.OutboxLag.ToString(CultureInfo.InvariantCulture),
                d.OutboxDropped.ToString(CultureInfo.InvariantCulture),
                d.DriftWarning switch { null => "-", false => "ok", true => "WARN: " + string.Join("; ", d.DriftReasons ?? []) },
            }).ToList();
            var widths = header.Select((h, i) => Math.Max(h.Length, rows.Max(r => r[i].Length))).ToArray();
            foreach (var row in rows.Prepend(header)) console.Out.WriteLine(string.Join("  ", row.Select((c, i) => c.PadRight(widths[i]))).TrimEnd());
            return CliApp.Success;
        });
        return command;
    }

    private static Command Rollout(CliConsole console)
    {
        var broker = BrokerOptions.Create();
        var bundle = new Argument<string>("bundle") { Description = "The signed .etb to roll out" };
        var trust = new Option<string>("--trust") { Description = "A public key file, or a folder of *.pub: the bundle's signature is checked against it here before anything is published", Required = true };
        var devices = new Option<string>("--devices") { Description = "Which devices: a glob (* and ?) over the device names in their retained status, e.g. 'shop-*'", Required = true };
        var canary = new Option<int>("--canary") { Description = "How many of the matched devices install first; the rest only once these are healthy on the new version", Required = true };
        var minScore = new Option<double?>("--min-score") { Description = "Stop unless every canary scores at least this (0..1) on the bundle's scored health set (bundle create --health-set)" };
        var url = new Option<string?>("--url") { Description = "Where devices fetch the bundle: http(s)://… or a path on the devices (default: this bundle's absolute path, for devices that share this file system)" };
        var timeout = new Option<double>("--timeout") { Description = "Seconds each stage (canary, rest) waits for the devices' answers and healthy status", DefaultValueFactory = _ => 600 };
        var discover = new Option<double>("--wait") { Description = "Seconds to listen for the devices' retained status messages", DefaultValueFactory = _ => 2 };
        var rolloutId = new Option<string?>("--rollout-id") { Description = "Reuse a rollout id (follow up a rollout: devices that handled it answer again without installing); a new one by default" };
        var json = new Option<bool>("--json") { Description = "Print the report as JSON" };
        canary.Validators.Add(r => { if (r.GetValueOrDefault<int>() < 1) r.AddError("--canary must be 1 or more"); });
        minScore.Validators.Add(r => { if (r.GetValueOrDefault<double?>() is { } m && !(m >= 0 && m <= 1)) r.AddError("--min-score must be in 0..1"); });
        timeout.Validators.Add(r => { if (!(r.GetValueOrDefault<double>() > 0)) r.AddError("--timeout must be more than 0"); });
        discover.Validators.Add(r => { if (!(r.GetValueOrDefault<double>() >= 0)) r.AddError("--wait must be 0 or more"); });
        var command = new Command("rollout",
            "Roll a signed bundle out in stages: verify it here (signature against --trust, every file's SHA-256), publish a retained rollout command " +
            "(QoS 1, on edgetune/FLEET/DEVICE/rollout: an offline device gets it when it reconnects) to --canary devices first, wait for their install " +
            "result and a healthy status on the new version, then the rest. A canary that rolls back, fails, or scores under --min-score stops the rollout: " +
            "the other devices are not touched and unanswered commands are withdrawn. Each device fetches the bundle from --url, checks its size and SHA-256 " +
            "and installs it through its own install path (signature against bundles.trust, canary prompt, rollback). " +
            "Progress on stderr, the report on stdout. Exit 0 when every device installed, 1 when the rollout stopped or a device failed.\n\n" +
            "Example: edgetune fleet rollout tuned-1.3.0.etb --trust release.pub --url https://files.lan/tuned-1.3.0.etb --broker mqtts://broker.lan --devices 'shop-*' --canary 2 --min-score 0.9")
        {
            bundle, trust, devices, canary, minScore, url, timeout, discover, rolloutId, json,
        };
        foreach (var o in broker.All) command.Add(o);
        command.SetAction(async (parse, ct) =>
        {
            string fleet = parse.GetValue(broker.Fleet)!;
            var options = new RolloutOptions
            {
                Connection = broker.Connection(parse, $"edgetune-rollout-{Guid.NewGuid():N}", persistent: false),
                Fleet = fleet,
                Bundle = parse.GetValue(bundle)!,
                Trust = parse.GetValue(trust)!,
                Url = parse.GetValue(url),
                Devices = parse.GetValue(devices)!,
                Canary = parse.GetValue(canary),
                MinScore = parse.GetValue(minScore),
                Timeout = TimeSpan.FromSeconds(parse.GetValue(timeout)),
                Discover = TimeSpan.FromSeconds(parse.GetValue(discover)),
                RolloutId = parse.GetValue(rolloutId),
            };
            var report = await new RolloutCoordinator(options, console.Error).RunAsync(ct);
            if (parse.GetValue(json))
                console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    rollout_id = report.RolloutId, version = report.Version, sha256 = report.Sha256, size = report.Size, url = report.Url,
                    stopped = report.Stopped, reason = report.StopReason, all_installed = report.AllInstalled,
                    devices = report.Devices.Select(d => new { device = d.Device, stage = d.Stage, outcome = d.Outcome, version = d.Version, health = d.Health, score = d.Score, reason = d.Reason }),
                }, Json));
            else
            {
                int installed = report.Devices.Count(d => d.Outcome == "installed");
                console.Out.WriteLine(report.Stopped
                    ? $"rollout {report.RolloutId} of {report.Version} stopped: {report.StopReason}"
                    : $"rollout {report.RolloutId} of {report.Version}: {installed} of {report.Devices.Count} device(s) installed");
                string[] header = ["DEVICE", "STAGE", "OUTCOME", "VERSION", "HEALTH", "SCORE", "REASON"];
                var rows = report.Devices.Select(d => new[]
                {
                    d.Device, d.Stage, d.Outcome, d.Version ?? "-", d.Health ?? "-", d.Score is { } sc ? sc.ToString("0.00", CultureInfo.InvariantCulture) : "-", d.Reason ?? "",
                }).ToList();
                var widths = header.Select((h, i) => Math.Max(h.Length, rows.Max(r => r[i].Length))).ToArray();
                foreach (var row in rows.Prepend(header)) console.Out.WriteLine(string.Join("  ", row.Select((c, i) => c.PadRight(widths[i]))).TrimEnd());
            }
            return report.AllInstalled ? CliApp.Success : CliApp.Failure;
        });
        return command;
    }

    private static string Percent(double? rate) => rate is { } r ? (r * 100).ToString("0.0", CultureInfo.InvariantCulture) + "%" : "-";

    private static string Ago(TimeSpan t) => t.TotalSeconds < 90 ? $"{Math.Max(0, t.TotalSeconds):0}s ago"
        : t.TotalMinutes < 90 ? $"{t.TotalMinutes:0}m ago" : t.TotalHours < 48 ? $"{t.TotalHours:0}h ago" : $"{t.TotalDays:0}d ago";
}
