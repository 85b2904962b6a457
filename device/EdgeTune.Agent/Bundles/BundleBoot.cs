// An install logs a handful of lines; evaluating their arguments is not worth guarding.
#pragma warning disable CA1873
using EdgeTune.Agent.Config;
using EdgeTune.Agent.Serving;

namespace EdgeTune.Agent.Bundles;

/// <summary>
/// What the agent serves when it starts: the active slot's model when a bundle was installed, else the
/// configuration's own. Boot counting lives here: each start on an unconfirmed slot counts; after
/// bundles.boot_attempts such starts (the agent died each time before the health check confirmed the slot)
/// the slot last marked good is started instead.
/// </summary>
public static class BundleBoot
{
    /// <summary>Loads the configuration and resolves the slot to serve (Program's one call).</summary>
    public static AgentConfig Load(string configPath, Action<string> log)
    {
        var config = AgentConfig.Load(configPath, checkFiles: false);
        var store = new SlotStore(config.Bundles.StateDir);
        if (store.Active is null) return AgentConfig.Load(configPath); // no bundle: as before, the model files must exist
        var state = store.Read();
        if (store.Pending)
        {
            if (state.Attempts >= config.Bundles.BootAttempts)
            {
                string reason = $"the agent stopped {state.Attempts} times on slot {store.Active} before its health check confirmed it (bundles.boot_attempts = {config.Bundles.BootAttempts})";
                log($"rolling back to {(state.Good is null ? "the configured model" : $"slot {state.Good}")}: {reason}");
                store.Switch(state.Good);
                store.Write(state with { Attempts = 0, LastOutcome = InstallResult.RolledBack, LastReason = reason });
                return state.Good is null ? AgentConfig.Load(configPath) : SlotConfig.Apply(config, store.SlotPath(state.Good));
            }
            store.Write(state with { Attempts = state.Attempts + 1 });
            log($"slot {store.Active} is on trial: start {state.Attempts + 1} of {config.Bundles.BootAttempts} before its health check");
        }
        try
        {
            return SlotConfig.Apply(config, store.SlotPath(store.Active!));
        }
        catch (AgentConfigException e) when (store.Pending)
        {
            // An unconfirmed slot whose configuration does not load never gets a health check: go back at once.
            log($"rolling back: slot {store.Active} does not load ({e.Message})");
            store.Switch(state.Good);
            store.Write(state with { Attempts = 0, LastOutcome = InstallResult.RolledBack, LastReason = e.Message });
            return state.Good is null ? AgentConfig.Load(configPath) : SlotConfig.Apply(config, store.SlotPath(state.Good));
        }
    }
}

/// <summary>After a start on an unconfirmed slot: once the model is loaded, run the health check and mark good or roll back.</summary>
public sealed class BundleConfirmService(AgentConfig config, ModelHost host, BundleInstaller installer, ILogger<BundleConfirmService> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var store = installer.Store;
        if (!store.Pending) return;
        string slot = store.Active!;
        while (!host.Ready && host.LoadError is null) await Task.Delay(100, stoppingToken);
        var state = store.Read();
        try
        {
            if (host.Runtime is not { } runtime) throw new HealthCheckException($"the model did not load: {host.LoadError}");
            var manifestPath = Path.Combine(store.SlotPath(slot), EdgeTune.Bundles.BundleManifest.FileName);
            var manifest = EdgeTune.Bundles.BundleManifest.Parse(File.ReadAllBytes(manifestPath), manifestPath);
            await HealthCheck.CheckAsync(runtime, config.Bundles.CanaryPrompt, manifest.Health, store.SlotPath(slot),
                TimeSpan.FromSeconds(config.Bundles.HealthTimeoutSeconds), installer.Server.ExclusiveAsync, stoppingToken);
            store.Write(state with { Good = slot, Attempts = 0, LastOutcome = InstallResult.Installed, LastVersion = manifest.Version });
            logger.LogInformation("slot {Slot} passed its health check after a restart and is marked good", slot);
        }
        catch (Exception e) when (e is HealthCheckException or EdgeTune.Bundles.BundleException or IOException)
        {
            await installer.RollBackAsync(state.Good, e.Message, null, stoppingToken);
        }
    }
}
