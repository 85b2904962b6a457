using System.Text.Json;
using System.Text.Json.Serialization;

namespace EdgeTune.Agent.Bundles;

/// <summary>What the slots' state file remembers between runs.</summary>
public sealed record SlotState
{
    /// <summary>The slot last marked good (null before the first successful install).</summary>
    [JsonPropertyName("good")] public string? Good { get; init; }

    /// <summary>Starts of the agent on the active slot while it was not yet marked good.</summary>
    [JsonPropertyName("attempts")] public int Attempts { get; init; }

    [JsonPropertyName("last_outcome")] public string? LastOutcome { get; init; }
    [JsonPropertyName("last_reason")] public string? LastReason { get; init; }
    [JsonPropertyName("last_version")] public string? LastVersion { get; init; }
}

/// <summary>
/// The A/B slots under the state directory: <c>slots/a</c>, <c>slots/b</c>, the <c>current</c> symlink naming the
/// active one (switched by renaming a new link over it, which is atomic), and <c>bundles.json</c> holding the slot
/// last marked good and the boot-attempt count. The link is the truth about what is active; the state file says
/// whether that is confirmed. Every write is fsynced and renamed into place, so a power cut at any point leaves
/// either the old or the new link, never none, and a slot is only made active after it was completely unpacked.
/// </summary>
public sealed class SlotStore(string stateDir)
{
    public static readonly string[] Slots = ["a", "b"];

    public string StateDir { get; } = Path.GetFullPath(stateDir);
    public string CurrentLink => Path.Combine(StateDir, "current");
    private string StateFile => Path.Combine(StateDir, "bundles.json");

    public string SlotPath(string slot) => Path.Combine(StateDir, "slots", slot);

    /// <summary>The slot the current link names, or null when no bundle was ever switched to.</summary>
    public string? Active
    {
        get
        {
            var info = new FileInfo(CurrentLink);
            if (info.LinkTarget is not { } target) return null;
            string name = Path.GetFileName(target.TrimEnd('/'));
            return Slots.Contains(name) ? name : null;
        }
    }

    public string Inactive => Active == "a" ? "b" : "a";

    /// <summary>The active slot has not been confirmed by a health check yet.</summary>
    public bool Pending => Active is { } active && active != Read().Good;

    public SlotState Read()
    {
        if (!File.Exists(StateFile)) return new SlotState();
        try { return JsonSerializer.Deserialize<SlotState>(File.ReadAllBytes(StateFile)) ?? new SlotState(); }
        catch (JsonException e) { throw new IOException($"{StateFile}: unreadable slot state ({e.Message}); remove it to trust the current link"); }
    }

    public void Write(SlotState state)
    {
        Directory.CreateDirectory(StateDir);
        string temp = StateFile + ".tmp";
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            JsonSerializer.Serialize(stream, state);
            stream.Flush(true);
        }
        File.Move(temp, StateFile, overwrite: true);
        FsyncDirectory(StateDir);
    }

    /// <summary>Empties the inactive slot for an unpack (whatever a cut-off earlier install left there goes).</summary>
    public string PrepareInactive()
    {
        string path = SlotPath(Inactive);
        if (Directory.Exists(path)) Directory.Delete(path, recursive: true);
        Directory.CreateDirectory(path);
        return path;
    }

    /// <summary>Points the current link at <paramref name="slot"/>, or removes it (null: serve the configuration's own model).</summary>
    public void Switch(string? slot)
    {
        Directory.CreateDirectory(StateDir);
        if (slot is null)
        {
            if (new FileInfo(CurrentLink).LinkTarget is not null) File.Delete(CurrentLink);
            FsyncDirectory(StateDir);
            return;
        }
        string temp = CurrentLink + ".new";
        File.Delete(temp); // a link left by a cut-off switch (no error when there is none)
        File.CreateSymbolicLink(temp, Path.Combine("slots", slot)); // relative: the state directory may be moved or mounted elsewhere
        // rename(2) replaces the old link atomically. File.Move cannot: it insists its source is a file, and a link to a folder is not.
        if (Rename(temp, CurrentLink) != 0)
            throw new IOException($"{CurrentLink}: could not switch to slot {slot} (errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()})");
        FsyncDirectory(StateDir);
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "rename", SetLastError = true)]
    private static extern int Rename([System.Runtime.InteropServices.MarshalAs(System.Runtime.InteropServices.UnmanagedType.LPUTF8Str)] string from,
        [System.Runtime.InteropServices.MarshalAs(System.Runtime.InteropServices.UnmanagedType.LPUTF8Str)] string to);

    /// <summary>Makes the directory entries (renames) durable, not only the files' bytes.</summary>
    private static void FsyncDirectory(string path)
    {
        if (OperatingSystem.IsWindows()) return;
        try
        {
            using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, FileOptions.None);
            RandomAccess.FlushToDisk(handle);
        }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException)
        {
            // Some file systems refuse to open a directory for fsync; the rename itself is still atomic.
        }
    }
}
