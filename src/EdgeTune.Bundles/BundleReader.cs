using System.Formats.Tar;
using System.Security.Cryptography;

namespace EdgeTune.Bundles;

/// <summary>
/// Reads a bundle without trusting it. <see cref="Open"/> reads only manifest.json and manifest.sig (each size-checked
/// before it is read) and refuses an archive longer than its manifest accounts for; nothing of the payload is read
/// until the caller has checked the signature. <see cref="ExtractTo"/> then takes the payload entries strictly in
/// manifest order: each must be a regular file with the listed name and size (checked from its header before a byte
/// of it is read) and hash to the listed SHA-256; links, devices, extra entries and escaping names are refused.
/// </summary>
public sealed class BundleReader : IDisposable
{
    private const int Block = 512;

    /// <summary>GNU tar pads archives to 20-block records; anything beyond that slack is refused.</summary>
    private const int RecordSlack = 20 * Block;

    private readonly FileStream _stream;
    private readonly TarReader _tar;
    private long _nextHeader;
    private TarEntry? _pending;
    private bool _payloadRead;

    public string Path { get; }
    public BundleManifest Manifest { get; }
    public byte[] ManifestBytes { get; }
    public BundleSignature? Signature { get; }
    public long ArchiveBytes { get; }

    private BundleReader(string path, FileStream stream, TarReader tar, BundleManifest manifest, byte[] manifestBytes, BundleSignature? signature, TarEntry? pending, long nextHeader)
    {
        _nextHeader = nextHeader;
        Path = path;
        _stream = stream;
        _tar = tar;
        Manifest = manifest;
        ManifestBytes = manifestBytes;
        Signature = signature;
        _pending = pending;
        ArchiveBytes = stream.Length;
    }

    public static BundleReader Open(string path)
    {
        if (!File.Exists(path)) throw new BundleException($"{path}: no such bundle file");
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        try
        {
            var tar = new TarReader(stream, leaveOpen: true);
            long header = 0;
            var first = Next(tar, stream, path, ref header) ?? throw new BundleException($"{path}: empty archive (not a bundle)");
            if (first.Name != BundleManifest.FileName) throw new BundleException($"{path}: the first entry is '{BundleManifest.Printable(first.Name)}', not {BundleManifest.FileName} (not an EdgeTune bundle)");
            byte[] manifestBytes = ReadSmall(first, BundleManifest.MaxBytes, stream, path);
            CheckPadding(stream, manifestBytes.Length, BundleManifest.FileName, path);
            var manifest = BundleManifest.Parse(manifestBytes, path);
            BundleSignature? signature = null;
            long signatureEntryBytes = 0;
            var second = Next(tar, stream, path, ref header);
            if (second?.Name == BundleManifest.SignatureFileName)
            {
                byte[] sig = ReadSmall(second, BundleSignature.MaxBytes, stream, path);
                CheckPadding(stream, sig.Length, BundleManifest.SignatureFileName, path);
                signature = BundleSignature.Parse(sig, path);
                signatureEntryBytes = Block + Padded(sig.Length);
                second = Next(tar, stream, path, ref header);
            }
            long expected = Block + Padded(manifestBytes.Length) + signatureEntryBytes + manifest.Files.Sum(f => Block + Padded(f.Size)) + 2 * Block;
            long allowed = (expected + RecordSlack - 1) / RecordSlack * RecordSlack;
            if (stream.Length > allowed)
                throw new BundleException(BundleRefusal.Oversize, $"{path}: the archive is {stream.Length} bytes, larger than its manifest accounts for ({expected} bytes): refused");
            return new BundleReader(path, stream, tar, manifest, manifestBytes, signature, second, header);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>Checks the signature against the trusted keys; call before reading the payload.</summary>
    public TrustedKey VerifySignature(IReadOnlyList<TrustedKey> trust) => BundleKeys.Verify(ManifestBytes, Signature, trust, Path);

    /// <summary>
    /// Unpacks the payload into an empty folder, each file fsynced; throws on the first mismatch (the caller discards
    /// the folder). <paramref name="extracted"/> hears of each file once it is complete.
    /// </summary>
    public void ExtractTo(string folder, Action<BundleFile>? extracted = null)
    {
        string root = System.IO.Path.GetFullPath(folder);
        ReadPayload((file, content) =>
        {
            string target = System.IO.Path.GetFullPath(System.IO.Path.Combine(root, file.Path));
            // CheckPath already refused escaping names; this guards the join itself.
            if (!target.StartsWith(root + System.IO.Path.DirectorySeparatorChar, StringComparison.Ordinal))
                throw new BundleException(BundleRefusal.UnsafePath, $"{Path}: {file.Path}: escapes the slot");
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(target)!);
            using var output = new FileStream(target, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
            content(output);
            output.Flush(true);
            extracted?.Invoke(file);
        });
    }

    /// <summary>Reads every payload file and checks its size and hash, writing nothing.</summary>
    public void VerifyPayload() => ReadPayload((_, content) => content(Stream.Null));

    /// <summary>Copies the payload, unchanged, into another archive (re-signing).</summary>
    internal void CopyPayload(TarWriter writer) => ReadPayload((file, content) =>
    {
        // Spooled through a temporary file, not memory: models are gigabytes.
        string temp = System.IO.Path.GetTempFileName();
        try
        {
            using (var f = new FileStream(temp, FileMode.Create, FileAccess.ReadWrite, FileShare.None, 1 << 16, FileOptions.DeleteOnClose))
            {
                content(f);
                f.Position = 0;
                BundleWriter.AddEntry(writer, BundleManifest.PayloadPrefix + file.Path, f);
            }
        }
        finally { File.Delete(temp); }
    });

    /// <summary>
    /// Visits each payload file in manifest order; <paramref name="visit"/> gets the file and a function that copies
    /// the checked bytes to a stream (it throws if they do not match the manifest).
    /// </summary>
    private void ReadPayload(Action<BundleFile, Action<Stream>> visit)
    {
        if (_payloadRead) throw new InvalidOperationException("the payload can be read once per BundleReader");
        _payloadRead = true;
        for (int i = 0; i < Manifest.Files.Count; i++)
        {
            var file = Manifest.Files[i];
            var entry = i == 0 ? _pending : Next(_tar, _stream, Path, ref _nextHeader);
            string expectedName = BundleManifest.PayloadPrefix + file.Path;
            if (entry is null) throw new BundleException(BundleRefusal.Tampered, $"{Path}: the archive ends before {expectedName} (entry {i + 1} of {Manifest.Files.Count})");
            CheckEntry(entry, expectedName);
            if (entry.Length != file.Size)
                throw new BundleException(entry.Length > file.Size ? BundleRefusal.Oversize : BundleRefusal.Tampered,
                    $"{Path}: {expectedName} is {entry.Length} bytes in the archive, the manifest says {file.Size}: refused before reading it");
            visit(file, output =>
            {
                CopyChecked(entry, file, output);
                CheckPadding(_stream, file.Size, file.Path, Path);
            });
        }
        long end = _stream.Position;
        var extra = Manifest.Files.Count == 0 ? _pending : Next(_tar, _stream, Path, ref _nextHeader);
        if (extra is not null)
            throw new BundleException(BundleRefusal.Oversize, $"{Path}: the archive holds '{BundleManifest.Printable(extra.Name)}', which the manifest does not list: refused");
        // Only zeros may follow (the end-of-archive blocks and record padding, at most RecordSlack bytes by Open's check).
        _stream.Position = end;
        int b;
        while ((b = _stream.ReadByte()) >= 0)
            if (b != 0) throw new BundleException(BundleRefusal.Tampered, $"{Path}: at byte {_stream.Position - 1}: data after the last entry: refused");
    }

    /// <summary>The zeros that fill an entry's data to a 512-byte block: a flipped byte there is tampering too.</summary>
    private static void CheckPadding(FileStream stream, long size, string what, string path)
    {
        int pad = (int)(Padded(size) - size);
        if (pad == 0) return;
        long at = stream.Position;
        Span<byte> bytes = stackalloc byte[Block];
        int n = stream.ReadAtLeast(bytes[..pad], pad, throwOnEndOfStream: false);
        if (n < pad) throw new BundleException(BundleRefusal.Tampered, $"{path}: the archive ends inside the padding after {what} (truncated)");
        int bad = bytes[..pad].IndexOfAnyExcept((byte)0);
        if (bad >= 0) throw new BundleException(BundleRefusal.Tampered, $"{path}: at byte {at + bad}: the padding after {what} is not zero: refused");
    }

    private void CheckEntry(TarEntry entry, string expectedName)
    {
        string name = BundleManifest.Printable(entry.Name);
        string? kind = entry.EntryType switch
        {
            TarEntryType.RegularFile or TarEntryType.V7RegularFile => null,
            TarEntryType.SymbolicLink => $"a symbolic link to '{BundleManifest.Printable(entry.LinkName)}'",
            TarEntryType.HardLink => $"a hard link to '{BundleManifest.Printable(entry.LinkName)}'",
            TarEntryType.Directory => "a directory entry",
            var t => $"a {t} entry",
        };
        if (kind is not null) throw new BundleException(BundleRefusal.UnsafePath, $"{Path}: entry '{name}' is {kind}; a bundle holds regular files only: refused");
        if (entry.Name.StartsWith('/') || entry.Name.Split('/').Contains(".."))
            throw new BundleException(BundleRefusal.UnsafePath, $"{Path}: entry '{name}' escapes the slot: refused");
        if (entry.Name != expectedName)
            throw new BundleException(BundleRefusal.Tampered, $"{Path}: entry '{name}' where the manifest lists '{expectedName}' next: refused");
    }

    private void CopyChecked(TarEntry entry, BundleFile file, Stream output)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var data = entry.DataStream;
        byte[] buffer = new byte[1 << 20];
        long left = file.Size;
        while (left > 0)
        {
            int n;
            try { n = data is null ? 0 : data.Read(buffer, 0, (int)Math.Min(buffer.Length, left)); }
            catch (EndOfStreamException) { n = 0; }
            if (n == 0) throw new BundleException(BundleRefusal.Tampered, $"{Path}: {file.Path}: the archive ends {left} bytes early (truncated)");
            hash.AppendData(buffer, 0, n);
            output.Write(buffer, 0, n);
            left -= n;
        }
        string actual = Convert.ToHexStringLower(hash.GetHashAndReset());
        if (actual != file.Sha256)
            throw new BundleException(BundleRefusal.Tampered, $"{Path}: {file.Path}: SHA-256 {actual[..16]}… does not match the manifest's {file.Sha256[..16]}… (the file was changed): refused");
    }

    /// <summary>
    /// The next entry, whose header must sit exactly at <paramref name="header"/> (one ustar block per entry: no
    /// extension headers) and carry a correct checksum (TarReader does not check it); advances past its data.
    /// </summary>
    private static TarEntry? Next(TarReader tar, FileStream stream, string path, ref long header)
    {
        TarEntry? entry;
        try { entry = tar.GetNextEntry(copyData: false); }
        catch (Exception e) when (e is InvalidDataException or FormatException or EndOfStreamException or ArgumentException or OverflowException)
        {
            throw new BundleException(BundleRefusal.Format, $"{path}: at byte {header}: not a readable tar entry ({e.Message})");
        }
        if (entry is null) return null;
        Span<byte> block = stackalloc byte[Block];
        if (RandomAccess.Read(stream.SafeFileHandle, block, header) != Block)
            throw new BundleException(BundleRefusal.Tampered, $"{path}: at byte {header}: the archive ends inside a header (truncated)");
        long sum = 0;
        for (int i = 0; i < Block; i++) sum += i is >= 148 and < 156 ? (byte)' ' : block[i];
        var field = System.Text.Encoding.ASCII.GetString(block.Slice(148, 8)).Trim(' ', '\0');
        long stored;
        try { stored = Convert.ToInt64(field, 8); }
        catch (Exception e) when (e is FormatException or ArgumentException or OverflowException) { stored = -1; }
        if (stored != sum)
            throw new BundleException(BundleRefusal.Tampered, $"{path}: at byte {header}: the header of '{BundleManifest.Printable(entry.Name)}' has a wrong checksum (changed or not a plain ustar header): refused");
        if (!block.Slice(257, 6).SequenceEqual("ustar\0"u8) || !block.Slice(263, 2).SequenceEqual("00"u8))
            throw new BundleException(BundleRefusal.Format, $"{path}: at byte {header}: '{BundleManifest.Printable(entry.Name)}' is not a plain ustar entry (bundles use no extension headers): refused");
        header += Block + (entry.EntryType is TarEntryType.RegularFile or TarEntryType.V7RegularFile ? Padded(entry.Length) : 0);
        return entry;
    }

    private static byte[] ReadSmall(TarEntry entry, int max, FileStream stream, string path)
    {
        if (entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile))
            throw new BundleException(BundleRefusal.UnsafePath, $"{path}: {entry.Name} is not a regular file: refused");
        if (entry.Length > max) throw new BundleException(BundleRefusal.Oversize, $"{path}: {entry.Name} is {entry.Length} bytes, more than the {max} allowed: refused before reading it");
        if (entry.Length > stream.Length) throw new BundleException(BundleRefusal.Tampered, $"{path}: {entry.Name} claims {entry.Length} bytes, more than the archive holds (truncated)");
        var bytes = new byte[entry.Length];
        if (entry.DataStream is { } data)
        {
            try { data.ReadExactly(bytes); }
            catch (EndOfStreamException) { throw new BundleException(BundleRefusal.Tampered, $"{path}: {entry.Name}: the archive ends early (truncated)"); }
        }
        return bytes;
    }

    private static long Padded(long size) => (size + Block - 1) / Block * Block;

    public void Dispose()
    {
        _tar.Dispose();
        _stream.Dispose();
    }
}
