// An install logs a handful of lines; evaluating their arguments is not worth guarding.
#pragma warning disable CA1873
using EdgeTune.Inference;
using EdgeTune.Agent.Config;
using EdgeTune.Agent.Serving;
using EdgeTune.Bundles;

namespace EdgeTune.Agent.Bundles;

/// <summary>The outcome of one install: <c>installed</c>, <c>rolled_back</c> (switched, unhealthy, switched back) or <c>refused</c> (nothing switched).</summary>
public sealed record InstallResult(string Outcome, string? Version, string? Slot, string? Reason, string? Code)
{
    public bool Ok => Outcome == Installed;
    /// <summary>The share of the bundle's scored health set answered exactly (null: no scored set, or not installed).</summary>
    public double? Score { get; init; }
    public const string Installed = "installed";
    public const string RolledBack = "rolled_back";
    public const string Refused = "refused";
}

/// <summary>Where the installer gets a model served: the running agent's ModelHost, or (offline) a runtime of its own.</summary>
public interface ISlotServer
{
    /// <summary>Loads and serves <paramref name="config"/>'s model; throws when it does not load.</summary>
    Task<IInferenceModel> ServeAsync(AgentConfig config, CancellationToken cancellationToken);

    /// <summary>Runs one generation with the runtime to itself (behind requests being answered).</summary>
    Task<GenerationResult> ExclusiveAsync(Func<Task<GenerationResult>> generate, CancellationToken cancellationToken);
}

/// <summary>
/// Installs a signed bundle into the inactive slot: check (signature first, before any payload byte is read; then
/// board, agent version, downgrade, disk space), unpack, switch the current link, load, health check, mark good.
/// Any failure after the switch switches back to the slot last marked good and serves it again. The field log is
/// never opened here: an install cannot lose a record.
/// </summary>
public sealed class BundleInstaller(AgentConfig device, ISlotServer server, ILogger logger, BundleStatus status)
{
    /// <summary>Free space kept beyond the payload, so an install cannot fill the disk the field log lives on.</summary>
    public const long SpaceMargin = 64L << 20;

    public static string AgentVersion => typeof(BundleInstaller).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    /// <summary>Set by tests of power loss: the installer stops at this point (unpack, switch, switched) until killed.</summary>
    public const string PauseVariable = "EDGETUNE_AGENT_PAUSE_AT";

    /// <summary>
    /// One install at a time per state directory within this process (the lock file covers other processes). Keyed
    /// by the directory, not process-wide: two agents in one process (tests, the demo beside fleet agents) each
    /// install into their own slots and must not refuse each other as busy.
    /// </summary>
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, SemaphoreSlim> InstallsByStateDir = new(StringComparer.Ordinal);

    private readonly SemaphoreSlim _oneAtATime = InstallsByStateDir.GetOrAdd(Path.GetFullPath(device.Bundles.StateDir), _ => new SemaphoreSlim(1, 1));

    public SlotStore Store { get; } = new(device.Bundles.StateDir);
    public ISlotServer Server => server;

    public async Task<InstallResult> InstallAsync(string bundlePath, bool allowDowngrade, CancellationToken cancellationToken)
    {
        if (!await _oneAtATime.WaitAsync(0, cancellationToken))
            return Done(new InstallResult(InstallResult.Refused, null, null, "another install is in progress", "busy"));
        try
        {
            Directory.CreateDirectory(Store.StateDir);
            // Across processes too: the command line and the running agent never install at once.
            using var lockFile = TryLock();
            if (lockFile is null) return Done(new InstallResult(InstallResult.Refused, null, null, $"another install holds {Path.Combine(Store.StateDir, "install.lock")}", "busy"));
            return await InstallLockedAsync(bundlePath, allowDowngrade, cancellationToken);
        }
        finally
        {
            _oneAtATime.Release();
        }
    }

    private async Task<InstallResult> InstallLockedAsync(string bundlePath, bool allowDowngrade, CancellationToken cancellationToken)
    {
        string? target = null;
        BundleManifest manifest;
        AgentConfig candidate;
        var state = Store.Read();
        try
        {
            if (device.Bundles.Trust is not { } trustPath)
                throw new BundleException(BundleRefusal.Unsigned, $"{device.File}: bundles.trust is not set: without trusted keys no bundle is installed");
            var trust = BundleKeys.LoadTrust(trustPath);
            using var reader = BundleReader.Open(bundlePath);
            var key = reader.VerifySignature(trust); // before anything from the payload is read or believed
            manifest = reader.Manifest;
            logger.LogInformation("bundle {Path}: version {Version} for {Board}, signed by {Key}", bundlePath, manifest.Version, manifest.Compatible, key.Id);
            CheckCompatible(manifest, bundlePath, allowDowngrade);
            if (Store.Pending)
                throw new BundleException(BundleRefusal.Format, $"slot {Store.Active} is not confirmed yet (its health check is running); install again once it is");
            long free = new DriveInfo(Store.StateDir).AvailableFreeSpace;
            if (free < manifest.PayloadBytes + SpaceMargin)
                throw new BundleException(BundleRefusal.NoSpace, $"{bundlePath}: needs {manifest.PayloadBytes + SpaceMargin} bytes free in {Store.StateDir} (payload and a {SpaceMargin >> 20} MiB margin), {free} are");

            target = Store.Inactive;
            string folder = Store.PrepareInactive();
            logger.LogInformation("unpacking {Files} files ({Bytes} bytes) into slot {Slot}", manifest.Files.Count, manifest.PayloadBytes, target);
            bool paused = false;
            reader.ExtractTo(folder, _ =>
            {
                if (!paused) { paused = true; PauseIfAsked("unpack"); }
            });
            File.WriteAllBytes(Path.Combine(folder, BundleManifest.FileName), reader.ManifestBytes);
            candidate = SlotConfig.Apply(device, folder);
        }
        catch (Exception e) when (e is BundleException or AgentConfigException or IOException or UnauthorizedAccessException)
        {
            if (target is not null) TryDelete(Store.SlotPath(target));
            string code = e is BundleException b ? b.Code : e is AgentConfigException ? "bad_config" : "io_error";
            logger.LogError("bundle {Path} refused: {Reason}", bundlePath, e.Message);
            Store.Write(state with { LastOutcome = InstallResult.Refused, LastReason = e.Message, LastVersion = null });
            return Done(new InstallResult(InstallResult.Refused, null, null, e.Message, code));
        }

        // The switch: first remember that the new slot is on trial (one start so far), then swap the link.
        string? good = state.Good ?? Store.Active;
        Store.Write(state with { Good = good, Attempts = 1 });
        PauseIfAsked("switch");
        Store.Switch(target);
        PauseIfAsked("switched");
        logger.LogInformation("switched to slot {Slot} (version {Version}); checking its health", target, manifest.Version);
        double? score;
        try
        {
            var runtime = await server.ServeAsync(candidate, cancellationToken);
            score = await HealthCheck.CheckAsync(runtime, device.Bundles.CanaryPrompt, manifest.Health, Store.SlotPath(target),
                TimeSpan.FromSeconds(device.Bundles.HealthTimeoutSeconds), server.ExclusiveAsync, cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            string reason = e is HealthCheckException ? e.Message : $"the model did not load: {e.Message}";
            await RollBackAsync(good, reason, manifest.Version, cancellationToken);
            return Done(new InstallResult(InstallResult.RolledBack, manifest.Version, good, reason, e is HealthCheckException ? "health_check_failed" : "model_load_failed"));
        }
        Store.Write(new SlotState { Good = target, Attempts = 0, LastOutcome = InstallResult.Installed, LastVersion = manifest.Version });
        logger.LogInformation("slot {Slot} marked good: version {Version} is serving", target, manifest.Version);
        return Done(new InstallResult(InstallResult.Installed, manifest.Version, target, null, null) { Score = score });
    }

    /// <summary>Switches back to the slot last marked good (none: the configuration's own model) and serves it.</summary>
    public async Task RollBackAsync(string? good, string reason, string? failedVersion, CancellationToken cancellationToken)
    {
        logger.LogError("rolling back to {Slot}: {Reason}", good is null ? "the configured model" : $"slot {good}", reason);
        Store.Switch(good);
        Store.Write(new SlotState { Good = good, Attempts = 0, LastOutcome = InstallResult.RolledBack, LastReason = reason, LastVersion = failedVersion });
        try
        {
            await server.ServeAsync(good is null ? device : SlotConfig.Apply(device, Store.SlotPath(good)), cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            logger.LogError("the previous model did not load either: {Message}", e.Message);
        }
    }

    /// <summary>Compatibility gates, in the order a user fixes them: board, agent version, downgrade.</summary>
    private void CheckCompatible(BundleManifest manifest, string bundlePath, bool allowDowngrade)
    {
        string board = device.Bundles.Board
            ?? throw new BundleException(BundleRefusal.WrongBoard, $"{device.File}: bundles.board is not set: the agent cannot check the bundle's compatible '{manifest.Compatible}'");
        if (manifest.Compatible != board)
            throw new BundleException(BundleRefusal.WrongBoard, $"{bundlePath}: built for board '{manifest.Compatible}', this device is '{board}': refused");
        if (BundleManifest.CompareVersions(AgentVersion, manifest.MinAgentVersion) < 0)
            throw new BundleException(BundleRefusal.AgentTooOld, $"{bundlePath}: needs agent {manifest.MinAgentVersion} or newer, this agent is {AgentVersion}: refused");
        if (Store.Active is { } active && InstalledVersion(active) is { } installed && BundleManifest.CompareVersions(manifest.Version, installed) < 0 && !allowDowngrade)
            throw new BundleException(BundleRefusal.Downgrade, $"{bundlePath}: version {manifest.Version} is older than the installed {installed}: refused (pass --allow-downgrade to roll back on purpose)");
    }

    /// <summary>The version of the bundle in <paramref name="slot"/>, from the manifest kept there.</summary>
    public string? InstalledVersion(string slot)
    {
        string path = Path.Combine(Store.SlotPath(slot), BundleManifest.FileName);
        if (!File.Exists(path)) return null;
        try { return BundleManifest.Parse(File.ReadAllBytes(path), path).Version; }
        catch (BundleException) { return null; }
    }

    private InstallResult Done(InstallResult result)
    {
        status.Record(result);
        return result;
    }

    private FileStream? TryLock()
    {
        try { return new FileStream(Path.Combine(Store.StateDir, "install.lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None); }
        catch (IOException) { return null; }
    }

    private static void PauseIfAsked(string point)
    {
        if (Environment.GetEnvironmentVariable(PauseVariable) != point) return;
        Console.Error.WriteLine($"edgetune-agent: paused at {point}");
        Console.Error.Flush();
        Thread.Sleep(Timeout.Infinite);
    }

    private static void TryDelete(string folder)
    {
        try { if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true); }
        catch (IOException) { }
    }
}
