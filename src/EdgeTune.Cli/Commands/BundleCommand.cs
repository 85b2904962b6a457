using System.CommandLine;
using System.Text.Json;
using EdgeTune.Agent.Bundles;
using EdgeTune.Bundles;
using EdgeTune.Core;
using EdgeTune.Profiles;

namespace EdgeTune.Cli.Commands;

/// <summary><c>edgetune bundle create|keygen|sign|verify|inspect</c>: signed model bundles for the on-device agent.</summary>
internal static class BundleCommand
{
    public static Command Create(CliConsole console) => new("bundle",
        "Signed bundles (.etb) for the on-device agent: a model, its adapters and [model] settings, every file's SHA-256 in a manifest signed with ECDSA P-256.\n\n" +
        "Example:\n  edgetune bundle keygen --out release\n  edgetune bundle create --model tuned.gguf --config agent.toml --profile jetson-orin-nano-8gb --version 1.0.0 --key release.key --out tuned.etb\n  edgetune bundle verify tuned.etb --trust release.pub")
    {
        CreateCommand(console), Keygen(console), Sign(console), Verify(console), Inspect(console),
    };

    /// <summary>The version a bundle needs from the agent by default: this release's (the CLI and the agent ship together).</summary>
    private static string ReleaseVersion => typeof(BundleCommand).Assembly.GetName().Version?.ToString(3) ?? "0.1.0";

    private static Command CreateCommand(CliConsole console)
    {
        var model = new Option<string>("--model") { Description = "The model: a .gguf file, or an exported folder", Required = true };
        var adapters = new Option<string[]>("--adapter") { Description = "A LoRA adapter (.gguf) to ship with the model; repeat for several", AllowMultipleArgumentsPerToken = false };
        var config = new Option<string>("--config") { Description = "An agent.toml whose [model] settings (context, threads, gpu_layers, name…) the bundle carries; its paths, token and other sections stay on your machine", Required = true };
        var profile = new Option<string>("--profile") { Description = "The device profile (name or file): its name becomes the bundle's 'compatible' board id", Required = true };
        var version = new Option<string>("--version") { Description = "The bundle's version (1.2.0, 1.2.0-rc.1); devices refuse a downgrade", Required = true };
        var output = new Option<string>("--out") { Description = "The bundle file to write (.etb)", Required = true };
        var key = new Option<string?>("--key") { Description = "Sign at once with this private key (from 'edgetune bundle keygen')" };
        var minAgent = new Option<string?>("--min-agent-version") { Description = $"The oldest agent that may install it (default: this release, {ReleaseVersion})" };
        var card = new Option<string?>("--export-card") { Description = "The export card (JSON) to ship; found by itself as export-card.json in a model folder" };
        var fingerprint = new Option<string?>("--training-set-fingerprint") { Description = "The training set's fingerprint (default: the export card's training_set_fingerprint)" };
        var run = new Option<string?>("--run") { Description = "The run the model came from (an id of `edgetune runs list`; checked against the registry when it has runs)" };
        var registry = RunLog.RegistryOption();
        var driftFingerprint = new Option<string?>("--drift-fingerprint") { Description = "The training set's drift fingerprint (`edgetune data fingerprint`): the agent compares this model's traffic against it" };
        var healthSet = new Option<string?>("--health-set") { Description = "A small JSONL scored set ({\"prompt\", \"expected\"} per line) the device must pass before it marks the bundle good" };
        var knowledge = new Option<string?>("--knowledge-index") { Description = "A knowledge index (from 'edgetune retrieval index --model' for this model) to serve with: the slot's agent.toml gets [retrieval] pointing at it, with the author's [retrieval] top_k and max_context_tokens" };
        var threshold = new Option<double>("--health-threshold") { Description = "The share of --health-set the device must answer exactly", DefaultValueFactory = _ => 1.0 };
        var command = new Command("create", "Pack a model, its adapters and settings into one bundle with a manifest of every file's size and SHA-256.\n\n" +
            "Example: edgetune bundle create --model tuned.gguf --adapter support.gguf --config agent.toml --profile jetson-orin-nano-8gb --version 1.2.0 --out tuned.etb")
        { model, adapters, config, profile, version, output, key, minAgent, card, fingerprint, driftFingerprint, run, registry, healthSet, threshold, knowledge };
        command.SetAction(parse =>
        {
            string modelPath = parse.GetValue(model)!;
            string outPath = parse.GetValue(output)!;
            string v = parse.GetValue(version)!;
            BundleManifest.CheckVersion(v, "--version", "version");
            string min = parse.GetValue(minAgent) ?? ReleaseVersion;
            BundleManifest.CheckVersion(min, "--min-agent-version", "min_agent_version");
            string board = new ProfileLoader().Load(parse.GetValue(profile)!).Name;

            var sources = new List<BundleSource>();
            string modelInBundle;
            string? cardInBundle = null;
            if (Directory.Exists(modelPath))
            {
                string name = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(modelPath)));
                modelInBundle = "model/" + name;
                foreach (var file in Directory.EnumerateFiles(modelPath, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
                {
                    if (new FileInfo(file).LinkTarget is not null) throw new EdgeTuneException($"{file}: a symbolic link; a bundle holds regular files only");
                    string relative = Path.GetRelativePath(modelPath, file).Replace('\\', '/');
                    sources.Add(new BundleSource($"{modelInBundle}/{relative}", file));
                    if (relative == "export-card.json") cardInBundle = $"{modelInBundle}/{relative}";
                }
                if (sources.Count == 0) throw new EdgeTuneException($"{modelPath}: an empty folder");
            }
            else if (File.Exists(modelPath))
            {
                modelInBundle = "model/" + Path.GetFileName(modelPath);
                sources.Add(new BundleSource(modelInBundle, modelPath));
            }
            else throw new EdgeTuneException($"{modelPath}: no such model file or folder");

            var adapterPaths = new List<string>();
            foreach (var a in parse.GetValue(adapters) ?? [])
            {
                if (!File.Exists(a)) throw new EdgeTuneException($"{a}: no such adapter file");
                string inBundle = "adapters/" + Path.GetFileName(a);
                if (adapterPaths.Contains(inBundle)) throw new EdgeTuneException($"{a}: two adapters named {Path.GetFileName(a)}");
                adapterPaths.Add(inBundle);
                sources.Add(new BundleSource(inBundle, a));
            }
            if (parse.GetValue(card) is { } cardPath)
            {
                if (!File.Exists(cardPath)) throw new EdgeTuneException($"{cardPath}: no such export card");
                cardInBundle = "export-card.json";
                sources.Add(new BundleSource(cardInBundle, cardPath));
            }
            string? fp = parse.GetValue(fingerprint) ?? FingerprintFromCard(cardInBundle is null ? null : sources.First(s => s.Path == cardInBundle).SourceFile);
            if (parse.GetValue(driftFingerprint) is { } driftPath)
            {
                EdgeTune.Core.Drift.DriftFingerprint.Read(driftPath); // a broken one is refused here, not on the device
                sources.Add(new BundleSource(EdgeTune.Agent.Bundles.SlotConfig.DriftFingerprintPath, driftPath));
            }
            string? runId = parse.GetValue(run);
            if (runId is not null)
            {
                var reg = EdgeTune.Core.Runs.RunRegistry.Locate(parse.GetValue(registry));
                var records = reg.ReadAll();
                if (records.Count > 0) runId = reg.Find(runId, records).Id; // a unique start becomes the full id
            }
            HealthSet? health = null;
            if (parse.GetValue(healthSet) is { } setPath)
            {
                if (!File.Exists(setPath)) throw new EdgeTuneException($"{setPath}: no such health set");
                double t = parse.GetValue(threshold);
                if (t is < 0 or > 1) throw new EdgeTuneException($"--health-threshold: {t} is not in 0..1");
                health = new HealthSet("health/" + Path.GetFileName(setPath), t);
                sources.Add(new BundleSource(health.Path, setPath));
            }

            string? indexInBundle = null;
            if (parse.GetValue(knowledge) is { } indexPath)
            {
                using (EdgeTune.Retrieval.KnowledgeIndex.Open(indexPath)) { } // an index, of this format, before it is shipped
                indexInBundle = "knowledge/" + Path.GetFileName(indexPath);
                sources.Add(new BundleSource(indexInBundle, indexPath));
            }

            // The slot's agent.toml: the author's [model] settings, paths pointing into the bundle. Checked the way the device loads it.
            string slotConfig = SlotConfig.FromAuthorConfig(parse.GetValue(config)!, modelInBundle, adapterPaths, indexInBundle);
            string configTemp = Path.Combine(Path.GetTempPath(), $"edgetune-bundle-{Guid.NewGuid():N}.toml");
            File.WriteAllText(configTemp, slotConfig);
            try
            {
                EdgeTune.Agent.Config.AgentConfig.Load(configTemp, checkFiles: false, requireToken: false);
                sources.Insert(0, new BundleSource(SlotConfig.FileName, configTemp));
                using var signingKey = parse.GetValue(key) is { } keyPath ? BundleKeys.LoadPrivate(keyPath) : null;
                var draft = new BundleDraft
                {
                    Version = v, Compatible = board, MinAgentVersion = min, Model = modelInBundle, Adapters = adapterPaths, Config = SlotConfig.FileName,
                    TrainingSetFingerprint = fp, Run = runId, ExportCard = cardInBundle, Health = health,
                };
                var manifest = BundleWriter.Create(outPath, draft, sources, signingKey, what => console.Error.WriteLine($"bundle: {what}"));
                console.Out.WriteLine($"wrote {outPath}: version {v} for {board}, {manifest.Files.Count} files, {manifest.PayloadBytes} bytes, " +
                    (signingKey is null ? "unsigned (sign it with 'edgetune bundle sign --key KEY')" : $"signed by key {BundleKeys.KeyId(signingKey)}"));
            }
            finally
            {
                File.Delete(configTemp);
            }
            return CliApp.Success;
        });
        return command;
    }

    private static string? FingerprintFromCard(string? cardFile)
    {
        if (cardFile is null) return null;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(cardFile));
            return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("training_set_fingerprint", out var f) && f.ValueKind == JsonValueKind.String ? f.GetString() : null;
        }
        catch (JsonException e) { throw new EdgeTuneException($"{cardFile}: the export card is not valid JSON (line {e.LineNumber + 1})"); }
    }

    private static Command Keygen(CliConsole console)
    {
        var output = new Option<string>("--out") { Description = "Writes OUT.key (private, mode 0600: keep it off devices and out of bundles) and OUT.pub (give it to devices as bundles.trust)", DefaultValueFactory = _ => "edgetune-signing" };
        var command = new Command("keygen", "Make an ECDSA P-256 signing key pair. Prints the key id.\n\nExample: edgetune bundle keygen --out release") { output };
        command.SetAction(parse =>
        {
            string stem = parse.GetValue(output)!;
            string id = BundleKeys.Generate(stem + ".key", stem + ".pub");
            console.Error.WriteLine($"wrote {stem}.key (private, 0600) and {stem}.pub (public)");
            console.Out.WriteLine(id);
            return CliApp.Success;
        });
        return command;
    }

    private static Command Sign(CliConsole console)
    {
        var bundle = new Argument<string>("bundle") { Description = "The .etb to sign (in place; an earlier signature is replaced)" };
        var key = new Option<string>("--key") { Description = "The private key (.key from 'edgetune bundle keygen')", Required = true };
        var command = new Command("sign", "Sign a bundle's manifest; the payload is checked against the manifest on the way.\n\nExample: edgetune bundle sign tuned.etb --key release.key") { bundle, key };
        command.SetAction(parse =>
        {
            using var k = BundleKeys.LoadPrivate(parse.GetValue(key)!);
            var signature = BundleWriter.Sign(parse.GetValue(bundle)!, k);
            console.Out.WriteLine($"signed {parse.GetValue(bundle)} with key {signature.KeyId}");
            return CliApp.Success;
        });
        return command;
    }

    private static Command Verify(CliConsole console)
    {
        var bundle = new Argument<string>("bundle") { Description = "The .etb to check" };
        var trust = new Option<string>("--trust") { Description = "A public key file, or a folder of *.pub", Required = true };
        var command = new Command("verify", "Check a bundle as a device would: the signature against trusted keys first, then every file's size and SHA-256.\n\nExample: edgetune bundle verify tuned.etb --trust release.pub") { bundle, trust };
        command.SetAction(parse =>
        {
            var keys = BundleKeys.LoadTrust(parse.GetValue(trust)!);
            using var reader = BundleReader.Open(parse.GetValue(bundle)!);
            var key = reader.VerifySignature(keys);
            reader.VerifyPayload();
            var m = reader.Manifest;
            console.Out.WriteLine($"ok: {reader.Path}: version {m.Version} for {m.Compatible}, signed by key {key.Id} ({key.File}); {m.Files.Count} files, {m.PayloadBytes} bytes match the manifest");
            return CliApp.Success;
        });
        return command;
    }

    private static Command Inspect(CliConsole console)
    {
        var bundle = new Argument<string>("bundle") { Description = "The .etb to describe" };
        var json = new Option<bool>("--json") { Description = "Print the manifest and signature as JSON" };
        var command = new Command("inspect", "Show a bundle's manifest (no signature check: use 'verify' for that).\n\nExample: edgetune bundle inspect tuned.etb --json") { bundle, json };
        command.SetAction(parse =>
        {
            using var reader = BundleReader.Open(parse.GetValue(bundle)!);
            var m = reader.Manifest;
            if (parse.GetValue(json))
            {
                ProfilesCommand.WriteJson(console.Out, w =>
                {
                    w.WriteStartObject();
                    w.WriteString("file", reader.Path);
                    w.WriteNumber("archive_bytes", reader.ArchiveBytes);
                    if (reader.Signature is { } s) { w.WriteStartObject("signature"); w.WriteString("algorithm", s.Algorithm); w.WriteString("key_id", s.KeyId); w.WriteEndObject(); }
                    else w.WriteNull("signature");
                    w.WritePropertyName("manifest");
                    using var doc = JsonDocument.Parse(reader.ManifestBytes);
                    doc.RootElement.WriteTo(w);
                    w.WriteEndObject();
                });
                return CliApp.Success;
            }
            var o = console.Out;
            o.WriteLine($"bundle       {reader.Path} ({reader.ArchiveBytes} bytes)");
            o.WriteLine($"version      {m.Version}");
            o.WriteLine($"compatible   {m.Compatible}");
            o.WriteLine($"min agent    {m.MinAgentVersion}");
            o.WriteLine($"created      {m.Created:yyyy-MM-dd HH:mm:ss}Z");
            o.WriteLine($"signature    {(reader.Signature is { } sig ? $"{sig.Algorithm}, key {sig.KeyId} (not checked here: edgetune bundle verify --trust)" : "none (unsigned: devices refuse it)")}");
            o.WriteLine($"model        {m.Model}");
            if (m.Adapters.Count > 0) o.WriteLine($"adapters     {string.Join(", ", m.Adapters)}");
            o.WriteLine($"config       {m.Config}");
            if (m.TrainingSetFingerprint is { } fp) o.WriteLine($"training set {fp}");
            if (m.Run is { } runOf) o.WriteLine($"run          {runOf}");
            if (m.ExportCard is { } c) o.WriteLine($"export card  {c}");
            if (m.Health is { } h) o.WriteLine($"health set   {h.Path} (threshold {h.Threshold:0.##})");
            o.WriteLine($"files        {m.Files.Count}, {m.PayloadBytes} bytes");
            foreach (var f in m.Files) o.WriteLine($"  {f.Size,14}  {f.Sha256[..16]}  {f.Path}");
            return CliApp.Success;
        });
        return command;
    }
}
