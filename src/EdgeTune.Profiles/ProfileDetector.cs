using System.Runtime.InteropServices;
using EdgeTune.Profiles.Sensors;

namespace EdgeTune.Profiles;

/// <summary>Which profile describes the machine, and why.</summary>
public sealed record ProfileDetection(DeviceProfile? Profile, string Reason, DeviceTree DeviceTree, NvpModel? NvpModel, string? Architecture);

/// <summary>
/// Recognises the board: profiles whose <c>identity.device_tree_ids</c> match /proc/device-tree/compatible,
/// narrowed by <c>identity.detect_power_mode</c> (a firmware variant such as Super mode is told apart by the
/// modes its nvpmodel.conf defines); without a device-tree match, a profile that lists no ids serves as the
/// generic profile of the architecture.
/// </summary>
public static class ProfileDetector
{
    public static string HostArchitecture() => RuntimeInformation.OSArchitecture switch
    {
        Architecture.X64 => "x86_64",
        Architecture.Arm64 => "aarch64",
        var other => other.ToString().ToLowerInvariant(),
    };

    public static ProfileDetection Detect(SystemRoot root, IEnumerable<DeviceProfile> profiles, string? architecture = null)
    {
        // The board's own word (Linux 6.1+), the running machine when the root is "/", else unknown (a copy of a
        // board's files without /proc/sys/kernel/arch): then every profile is a candidate.
        string? arch = architecture ?? root.ReadText("/proc/sys/kernel/arch") ?? (root.Root == "/" ? HostArchitecture() : null);
        var tree = DeviceTree.Read(root);
        var nvp = NvpModel.Read(root);
        var sameArch = profiles.Where(p => arch is null || p.Identity.Architecture == arch).OrderBy(p => p.Name, StringComparer.Ordinal).ToList();

        var matched = sameArch.Where(p => p.Identity.DeviceTreeIds.Any(tree.Matches)).ToList();
        if (matched.Count > 0)
        {
            var variants = matched.Where(p => p.Identity.DetectPowerMode is { } mode && nvp?.Defines(mode) == true).ToList();
            var plain = matched.Where(p => p.Identity.DetectPowerMode is null).ToList();
            var chosen = variants.Count > 0 ? variants : plain;
            if (chosen.Count > 0)
            {
                var id = chosen[0].Identity.DeviceTreeIds.First(tree.Matches);
                string why = $"/proc/device-tree/compatible matches {id}";
                if (chosen[0].Identity.DetectPowerMode is { } m) why += $" and nvpmodel.conf defines {m}";
                if (chosen.Count > 1) why += $" (also matches: {string.Join(", ", chosen.Skip(1).Select(p => p.Name))})";
                return new ProfileDetection(chosen[0], why, tree, nvp, arch);
            }
        }

        // A profile with a discrete card's memory describes a training GPU (for `edgetune plan`), not this host.
        var generic = sameArch.Where(p => p.Identity.DeviceTreeIds.Count == 0 && p.Gpu?.Memory is null).ToList();
        if (generic.Count > 0 && arch is not null)
        {
            string why = tree.IsPresent
                ? $"no profile lists this board's device tree ({string.Join(", ", tree.Compatible)}); {generic[0].Name} is the generic {arch} profile"
                : $"no device tree; {generic[0].Name} is the generic {arch} profile";
            return new ProfileDetection(generic[0], why, tree, nvp, arch);
        }
        string reason = tree.IsPresent
            ? $"no {arch ?? "known"} profile lists this board's device tree ({string.Join(", ", tree.Compatible)})"
            : arch is null ? $"no device tree at {root.Map("/proc/device-tree")} and no /proc/sys/kernel/arch to go by"
            : $"no device tree at {root.Map("/proc/device-tree")} and no generic {arch} profile";
        return new ProfileDetection(null, reason, tree, nvp, arch);
    }
}
