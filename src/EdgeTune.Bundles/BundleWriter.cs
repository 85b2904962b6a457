using System.Formats.Tar;
using System.Security.Cryptography;

namespace EdgeTune.Bundles;

/// <summary>What goes into a bundle besides its files: the manifest fields the author chooses.</summary>
public sealed record BundleDraft
{
    public required string Version { get; init; }
    public required string Compatible { get; init; }
    public required string MinAgentVersion { get; init; }
    public required string Model { get; init; }
    public IReadOnlyList<string> Adapters { get; init; } = [];
    public required string Config { get; init; }
    public string? TrainingSetFingerprint { get; init; }
    /// <summary>The run (edgetune runs) the model came from, for lineage.</summary>
    public string? Run { get; init; }
    public string? ExportCard { get; init; }
    public HealthSet? Health { get; init; }
}

/// <summary>One file to pack: its path in the slot and where its bytes are now.</summary>
public sealed record BundleSource(string Path, string SourceFile);

/// <summary>
/// Writes bundles: a ustar archive of manifest.json, then manifest.sig when signed, then payload/PATH for every
/// file in manifest order. Written beside the target and renamed into place once complete and fsynced.
/// </summary>
public static class BundleWriter
{
    public static BundleManifest Create(string outPath, BundleDraft draft, IReadOnlyList<BundleSource> sources, ECDsa? signingKey = null, Action<string>? progress = null)
    {
        var files = new List<BundleFile>();
        foreach (var s in sources)
        {
            BundleManifest.CheckPath(s.Path, outPath, "file");
            if (!File.Exists(s.SourceFile)) throw new BundleException($"{s.SourceFile}: no such file");
            progress?.Invoke($"hashing {s.Path}");
            using var input = File.OpenRead(s.SourceFile);
            files.Add(new BundleFile(s.Path, input.Length, Convert.ToHexStringLower(SHA256.HashData(input))));
        }
        var manifest = new BundleManifest
        {
            Version = draft.Version, Compatible = draft.Compatible, MinAgentVersion = draft.MinAgentVersion, Created = DateTimeOffset.UtcNow,
            Model = draft.Model, Adapters = draft.Adapters, Config = draft.Config, TrainingSetFingerprint = draft.TrainingSetFingerprint, Run = draft.Run,
            ExportCard = draft.ExportCard, Health = draft.Health, Files = files,
        };
        byte[] manifestBytes = manifest.ToJson();
        BundleManifest.Parse(manifestBytes, outPath); // the same checks a device will make
        var signature = signingKey is null ? null : BundleKeys.Sign(manifestBytes, signingKey);
        WriteAtomically(outPath, writer =>
        {
            WriteHeader(writer, manifestBytes, signature);
            for (int i = 0; i < sources.Count; i++)
            {
                progress?.Invoke($"packing {sources[i].Path}");
                using var input = File.OpenRead(sources[i].SourceFile);
                if (input.Length != files[i].Size) throw new BundleException($"{sources[i].SourceFile}: changed while the bundle was written");
                AddEntry(writer, BundleManifest.PayloadPrefix + sources[i].Path, input);
            }
        });
        // A source that changed between hashing and packing would make a bundle every device refuses: check now.
        using var check = BundleReader.Open(outPath);
        try { check.VerifyPayload(); }
        catch (BundleException e) { File.Delete(outPath); throw new BundleException($"{outPath}: a source file changed while it was packed ({e.Message})"); }
        return manifest;
    }

    /// <summary>Signs (or re-signs) a bundle in place; the payload is checked against the manifest on the way.</summary>
    public static BundleSignature Sign(string bundlePath, ECDsa key)
    {
        BundleSignature signature;
        string temp = bundlePath + ".signing";
        using (var reader = BundleReader.Open(bundlePath))
        {
            signature = BundleKeys.Sign(reader.ManifestBytes, key);
            WriteAtomically(temp, writer =>
            {
                WriteHeader(writer, reader.ManifestBytes, signature);
                reader.CopyPayload(writer);
            });
        }
        File.Move(temp, bundlePath, overwrite: true);
        EdgeTune.Core.IO.DurableFiles.SyncFolder(Path.GetDirectoryName(Path.GetFullPath(bundlePath))!);
        return signature;
    }

    private static void WriteHeader(TarWriter writer, byte[] manifest, BundleSignature? signature)
    {
        AddEntry(writer, BundleManifest.FileName, new MemoryStream(manifest));
        if (signature is not null) AddEntry(writer, BundleManifest.SignatureFileName, new MemoryStream(signature.ToJson()));
    }

    internal static void AddEntry(TarWriter writer, string name, Stream data)
    {
        try
        {
            var entry = new UstarTarEntry(TarEntryType.RegularFile, name)
            {
                Mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead,
                ModificationTime = DateTimeOffset.UnixEpoch,
                DataStream = data,
            };
            writer.WriteEntry(entry);
        }
        catch (ArgumentException) { throw new BundleException($"{name}: the path is too long for the bundle's tar format (at most 100 characters per file name and 255 in all)"); }
    }

    private static void WriteAtomically(string path, Action<TarWriter> write)
    {
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        string temp = full + $".{Environment.ProcessId}.tmp";
        try
        {
            using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
            {
                using (var writer = new TarWriter(stream, TarEntryFormat.Ustar, leaveOpen: true)) write(writer);
                stream.Flush(true);
            }
            File.Move(temp, full, overwrite: true);
            EdgeTune.Core.IO.DurableFiles.SyncFolder(Path.GetDirectoryName(full)!);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }
}
