using System.Runtime.InteropServices;

namespace EdgeTune.Core.IO;

/// <summary>
/// Replaces a folder's files together: the new version is built whole in a hidden sibling
/// (.NAME.edgetune-new: a copy of the current files, then the caller's changes), every file and folder in it is
/// fsynced, and it takes the folder's place in one step. On Linux that step is renameat2(RENAME_EXCHANGE), which
/// swaps the two atomically, so the folder holds the old version or the new one at every instant. Elsewhere (or
/// on a file system without it) the folder is renamed to .NAME.edgetune-old and the new one into its place;
/// a crash between the two renames leaves the folder missing and its old version beside it, which
/// <see cref="Recover"/> (run by every writer before it reads the folder) puts back.
/// </summary>
public static partial class FolderSwap
{
    /// <param name="folder">The folder to replace (created when absent).</param>
    /// <param name="rewritten">Top-level file names the caller writes from scratch: not copied into the new version.</param>
    /// <param name="write">Writes the changes into the new version's folder (its path is the argument).</param>
    public static void Replace(string folder, IReadOnlyCollection<string> rewritten, Action<string> write)
    {
        string full = Full(folder), parent = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(parent);
        Recover(full);
        string aside = Sibling(full, "new");
        Directory.CreateDirectory(aside);
        try
        {
            if (Directory.Exists(full)) CopyTree(full, aside, rewritten.ToHashSet(StringComparer.Ordinal));
            write(aside);
            SyncTree(aside);
        }
        catch
        {
            Directory.Delete(aside, true); // the folder itself was never touched
            throw;
        }
        CrashPoints.Pass("folder.written");
        if (!Directory.Exists(full))
        {
            Directory.Move(aside, full);
            DurableFiles.SyncFolder(parent);
            CrashPoints.Pass("folder.swapped");
            return;
        }
        if (Exchange(aside, full))
        {
            DurableFiles.SyncFolder(parent);
            CrashPoints.Pass("folder.swapped");
            Directory.Delete(aside, true); // the old version, now
            return;
        }
        string old = Sibling(full, "old");
        Directory.Move(full, old);
        CrashPoints.Pass("folder.moved-aside");
        Directory.Move(aside, full);
        DurableFiles.SyncFolder(parent);
        CrashPoints.Pass("folder.swapped");
        Directory.Delete(old, true);
    }

    /// <summary>
    /// Undoes what a crash interrupted: a folder missing with its old version beside it gets that version back;
    /// a half-built or superseded new version is removed.
    /// </summary>
    public static void Recover(string folder)
    {
        string full = Full(folder), old = Sibling(full, "old"), aside = Sibling(full, "new");
        if (Directory.Exists(old))
        {
            if (Directory.Exists(full)) Directory.Delete(old, true); // the swap finished; only the clean-up did not
            else
            {
                Directory.Move(old, full);
                DurableFiles.SyncFolder(Path.GetDirectoryName(full)!);
            }
        }
        if (Directory.Exists(aside)) Directory.Delete(aside, true);
    }

    private static string Full(string folder) => Path.GetFullPath(Path.TrimEndingDirectorySeparator(folder));

    private static string Sibling(string full, string role) =>
        Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.edgetune-{role}");

    private static void CopyTree(string from, string to, HashSet<string> skipTopLevel)
    {
        foreach (var file in Directory.EnumerateFiles(from))
            if (!skipTopLevel.Contains(Path.GetFileName(file))) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        foreach (var dir in Directory.EnumerateDirectories(from))
        {
            string target = Path.Combine(to, Path.GetFileName(dir));
            Directory.CreateDirectory(target);
            CopyTree(dir, target, []);
        }
    }

    /// <summary>Flushes every file under <paramref name="folder"/> and every folder's entries to the disk.</summary>
    public static void SyncTree(string folder)
    {
        foreach (var file in Directory.EnumerateFiles(folder)) DurableFiles.SyncFile(file);
        foreach (var dir in Directory.EnumerateDirectories(folder)) SyncTree(dir);
        DurableFiles.SyncFolder(folder);
    }

    /// <summary>Swaps two paths atomically (Linux renameat2 RENAME_EXCHANGE); false where that is not available.</summary>
    private static bool Exchange(string a, string b)
    {
        if (!OperatingSystem.IsLinux()) return false;
        try { return RenameAt2(AtCurrentDirectory, a, AtCurrentDirectory, b, RenameExchange) == 0; }
        catch (EntryPointNotFoundException) { return false; } // a C library without renameat2
    }

    private const int AtCurrentDirectory = -100;
    private const uint RenameExchange = 2;

    [LibraryImport("libc", EntryPoint = "renameat2", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int RenameAt2(int oldDirectory, string oldPath, int newDirectory, string newPath, uint flags);
}
