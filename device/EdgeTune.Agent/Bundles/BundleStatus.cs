using System.Globalization;
using System.Text;

namespace EdgeTune.Agent.Bundles;

/// <summary>Install outcomes for /metrics: counts by outcome, the latest one with its reason, the active bundle.</summary>
public sealed class BundleStatus(SlotStore? store = null)
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, long> _outcomes = new(StringComparer.Ordinal);
    private InstallResult? _last;

    public InstallResult? Last { get { lock (_lock) return _last; } }

    public void Record(InstallResult result)
    {
        lock (_lock)
        {
            _outcomes[result.Outcome] = _outcomes.GetValueOrDefault(result.Outcome) + 1;
            _last = result;
        }
    }

    public void Write(StringBuilder s)
    {
        lock (_lock)
        {
            s.Append("# HELP edgetune_bundle_installs_total Bundle installs by outcome (installed, rolled_back, refused) since the agent started.\n# TYPE edgetune_bundle_installs_total counter\n");
            foreach (var outcome in new[] { InstallResult.Installed, InstallResult.RolledBack, InstallResult.Refused })
                s.Append(CultureInfo.InvariantCulture, $"edgetune_bundle_installs_total{{outcome=\"{outcome}\"}} {_outcomes.GetValueOrDefault(outcome)}\n");
            // After a restart the latest outcome comes from the slot state file (a boot-time rollback, say).
            var state = store?.Read();
            string? outcome2 = _last?.Outcome ?? state?.LastOutcome;
            if (outcome2 is not null)
            {
                string reason = _last is not null ? _last.Reason ?? "" : state?.LastReason ?? "";
                s.Append("# HELP edgetune_bundle_last_install The latest install's outcome and, when it failed, why.\n# TYPE edgetune_bundle_last_install gauge\n");
                s.Append(CultureInfo.InvariantCulture, $"edgetune_bundle_last_install{{outcome=\"{outcome2}\",code=\"{Escape(_last?.Code ?? "")}\",reason=\"{Escape(reason)}\"}} 1\n");
            }
        }
        if (store?.Active is { } active)
        {
            string version = new FileInfo(Path.Combine(store.SlotPath(active), EdgeTune.Bundles.BundleManifest.FileName)).Exists
                ? TryVersion(store, active) : "";
            s.Append("# HELP edgetune_bundle_active The bundle being served: its slot, version and whether its health check has confirmed it.\n# TYPE edgetune_bundle_active gauge\n");
            s.Append(CultureInfo.InvariantCulture, $"edgetune_bundle_active{{slot=\"{active}\",version=\"{Escape(version)}\",confirmed=\"{(store.Pending ? 0 : 1)}\"}} 1\n");
        }
    }

    private static string TryVersion(SlotStore store, string slot)
    {
        string path = Path.Combine(store.SlotPath(slot), EdgeTune.Bundles.BundleManifest.FileName);
        try { return EdgeTune.Bundles.BundleManifest.Parse(File.ReadAllBytes(path), path).Version; }
        catch (EdgeTune.Bundles.BundleException) { return ""; }
    }

    private static string Escape(string s) => s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);
}
