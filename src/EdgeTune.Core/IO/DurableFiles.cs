using System.Runtime.InteropServices;
using System.Text;

namespace EdgeTune.Core.IO;

/// <summary>
/// Replacing files so that a crash or power cut leaves the old version or the new one, never a torn one: write
/// aside in the same folder, fsync the file, rename over, fsync the folder (the rename itself is only durable
/// once the folder's entry is on disk).
/// </summary>
public static partial class DurableFiles
{
    /// <summary>Writes <paramref name="text"/> (UTF-8, no BOM) to <paramref name="path"/> atomically and durably.</summary>
    public static void WriteAllText(string path, string text) => WriteAllBytes(path, new UTF8Encoding(false).GetBytes(text));

    /// <summary>Writes <paramref name="bytes"/> to <paramref name="path"/> atomically and durably.</summary>
    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes)
    {
        string full = Path.GetFullPath(path);
        string aside = $"{full}.{Guid.NewGuid():N}.tmp";
        try
        {
            using (var file = new FileStream(aside, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                file.Write(bytes);
                file.Flush(flushToDisk: true);
            }
            File.Move(aside, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(aside); } catch (IOException) { }
            throw;
        }
        SyncFolder(Path.GetDirectoryName(full)!);
    }

    /// <summary>Flushes a file written by other code (a stream already closed) to the disk.</summary>
    public static void SyncFile(string path)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
        file.Flush(flushToDisk: true);
    }

    /// <summary>
    /// Makes a folder's entries (files created, renamed or deleted in it) durable. On Windows the file system
    /// journals metadata and a folder cannot be opened for this: nothing to do there.
    /// </summary>
    public static void SyncFolder(string folder)
    {
        if (OperatingSystem.IsWindows()) return;
        int fd = Open(folder, 0 /* O_RDONLY */);
        if (fd < 0) throw new IOException($"{folder}: cannot open the folder to sync it (errno {Marshal.GetLastPInvokeError()})");
        try
        {
            if (Fsync(fd) != 0) throw new IOException($"{folder}: fsync of the folder failed (errno {Marshal.GetLastPInvokeError()})");
        }
        finally { _ = Close(fd); }
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}
