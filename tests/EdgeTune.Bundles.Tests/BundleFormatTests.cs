using System.Formats.Tar;
using System.Security.Cryptography;
using System.Text;
using EdgeTune.Bundles;
using EdgeTune.Testing;

namespace EdgeTune.Bundles.Tests;

/// <summary>Builds small bundles, honest ones with BundleWriter and hostile ones by hand.</summary>
internal sealed class Fixture : IDisposable
{
    public TempDir Dir { get; } = new();
    public ECDsa Key { get; } = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    public IReadOnlyList<TrustedKey> Trust { get; }

    public Fixture()
    {
        File.WriteAllText(Dir.File("trusted.pub"), Key.ExportSubjectPublicKeyInfoPem());
        Trust = BundleKeys.LoadTrust(Dir.File("trusted.pub"));
    }

    public static BundleDraft Draft(string version = "1.0.0") => new()
    {
        Version = version, Compatible = "jetson-orin-nano-8gb", MinAgentVersion = "0.1.0", Model = "model/m.gguf", Config = "agent.toml",
    };

    /// <summary>A signed bundle of a config and a 700-byte "model" (one full block and a padded one).</summary>
    public string Honest(string name = "b.etb", bool sign = true)
    {
        File.WriteAllText(Dir.File("agent.toml"), "[model]\npath = \"model/m.gguf\"\n");
        var model = new byte[700];
        new Random(3).NextBytes(model);
        File.WriteAllBytes(Dir.File("m.gguf"), model);
        string path = Dir.File(name);
        BundleWriter.Create(path, Draft(), [new BundleSource("agent.toml", Dir.File("agent.toml")), new BundleSource("model/m.gguf", Dir.File("m.gguf"))], sign ? Key : null);
        return path;
    }

    public sealed record RawEntry(string Name, byte[] Data, TarEntryType Type = TarEntryType.RegularFile, string? Link = null);

    /// <summary>A bundle written entry by entry, signed with <paramref name="signer"/> (null: unsigned), whatever its manifest says.</summary>
    public string Raw(string name, string manifestJson, IEnumerable<RawEntry> payload, ECDsa? signer, byte[]? appended = null)
    {
        string path = Dir.File(name);
        byte[] manifest = Encoding.UTF8.GetBytes(manifestJson);
        using (var stream = File.Create(path))
        {
            using (var writer = new TarWriter(stream, TarEntryFormat.Ustar, leaveOpen: true))
            {
                writer.WriteEntry(new UstarTarEntry(TarEntryType.RegularFile, "manifest.json") { DataStream = new MemoryStream(manifest) });
                if (signer is not null)
                    writer.WriteEntry(new UstarTarEntry(TarEntryType.RegularFile, "manifest.sig") { DataStream = new MemoryStream(BundleKeys.Sign(manifest, signer).ToJson()) });
                foreach (var e in payload)
                {
                    var entry = new UstarTarEntry(e.Type, e.Name);
                    if (e.Link is not null) entry.LinkName = e.Link;
                    if (e.Type == TarEntryType.RegularFile) entry.DataStream = new MemoryStream(e.Data);
                    writer.WriteEntry(entry);
                }
            }
            if (appended is not null) stream.Write(appended);
        }
        return path;
    }

    public static string Manifest(params (string Path, byte[] Data)[] files) =>
        Encoding.UTF8.GetString(new BundleManifest
        {
            Version = "1.0.0", Compatible = "jetson-orin-nano-8gb", MinAgentVersion = "0.1.0", Model = files[0].Path, Config = files[0].Path,
            Files = files.Select(f => new BundleFile(f.Path, f.Data.Length, Convert.ToHexStringLower(SHA256.HashData(f.Data)))).ToList(),
        }.ToJson());

    /// <summary>Everything a device does before switching: open, signature, every file's bytes.</summary>
    public void Check(string path)
    {
        using var reader = BundleReader.Open(path);
        reader.VerifySignature(Trust);
        string into = Dir.File("slot-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(into);
        reader.ExtractTo(into);
    }

    public BundleException Refused(string path) => Assert.Throws<BundleException>(() => Check(path));

    public void Dispose()
    {
        Key.Dispose();
        Dir.Dispose();
    }
}

public sealed class BundleFormatTests
{
    [Fact]
    public void A_signed_bundle_unpacks_to_the_exact_files()
    {
        using var f = new Fixture();
        string path = f.Honest();
        using var reader = BundleReader.Open(path);
        Assert.Equal(f.Trust[0].Id, reader.VerifySignature(f.Trust).Id);
        Directory.CreateDirectory(f.Dir.File("slot"));
        reader.ExtractTo(f.Dir.File("slot"));
        Assert.Equal(File.ReadAllBytes(f.Dir.File("m.gguf")), File.ReadAllBytes(f.Dir.File("slot/model/m.gguf")));
        Assert.Equal("1.0.0", reader.Manifest.Version);
        Assert.Equal("jetson-orin-nano-8gb", reader.Manifest.Compatible);
        Assert.Equal(2, reader.Manifest.Files.Count);
    }

    [Fact]
    public void A_byte_flipped_anywhere_is_refused()
    {
        using var f = new Fixture();
        byte[] original = File.ReadAllBytes(f.Honest());
        string path = f.Dir.File("flipped.etb");
        var messages = new HashSet<string>();
        var accepted = new List<int>();
        File.WriteAllBytes(path, original);
        void Poke(int at, byte value)
        {
            using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Write);
            RandomAccess.Write(handle, new[] { value }, at);
        }
        for (int i = 0; i < original.Length; i++)
        {
            Poke(i, (byte)(original[i] ^ 0x01));
            try
            {
                // Open, signature, every file's size and hash (the unpack differs only in writing the bytes).
                using var reader = BundleReader.Open(path);
                reader.VerifySignature(f.Trust);
                reader.VerifyPayload();
                accepted.Add(i);
            }
            catch (BundleException e) { messages.Add(e.Refusal.ToString()); }
            Poke(i, original[i]);
        }
        Assert.True(accepted.Count == 0, $"{accepted.Count} flipped bytes were accepted, at offsets {string.Join(", ", accepted.Take(40))}");
        // A flip in a payload file is named for what it is; others show as format errors, a bad signature or padding.
        Assert.Contains(BundleRefusal.Tampered.ToString(), messages);
        Assert.Contains(BundleRefusal.Untrusted.ToString(), messages);

        var model = (byte[])original.Clone();
        int at = original.AsSpan().IndexOf(File.ReadAllBytes(f.Dir.File("m.gguf")).AsSpan(0, 64)) + 300;
        model[at] ^= 0x80;
        File.WriteAllBytes(path, model);
        var refused = f.Refused(path);
        Assert.Equal(BundleRefusal.Tampered, refused.Refusal);
        Assert.Contains("model/m.gguf: SHA-256", refused.Message);
        Assert.Contains("does not match the manifest", refused.Message);
    }

    [Fact]
    public void A_manifest_changed_after_signing_is_refused()
    {
        using var f = new Fixture();
        byte[] bytes = File.ReadAllBytes(f.Honest());
        int at = bytes.AsSpan().IndexOf("\"1.0.0\""u8);
        bytes[at + 1] = (byte)'9'; // version 9.0.0: still valid JSON, still the same length
        File.WriteAllBytes(f.Dir.File("b.etb"), bytes);
        var e = f.Refused(f.Dir.File("b.etb"));
        Assert.Equal(BundleRefusal.Untrusted, e.Refusal);
        Assert.Contains("the signature does not match the manifest", e.Message);
    }

    [Fact]
    public void A_bundle_signed_by_an_untrusted_key_is_refused()
    {
        using var f = new Fixture();
        using var stranger = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        string path = f.Honest();
        BundleWriter.Sign(path, stranger);
        var e = f.Refused(path);
        Assert.Equal(BundleRefusal.Untrusted, e.Refusal);
        Assert.Contains($"signed by key {BundleKeys.KeyId(stranger)}, which is not trusted", e.Message);
    }

    [Fact]
    public void An_unsigned_bundle_is_refused()
    {
        using var f = new Fixture();
        var e = f.Refused(f.Honest(sign: false));
        Assert.Equal(BundleRefusal.Unsigned, e.Refusal);
        Assert.Contains("the bundle is not signed", e.Message);
    }

    [Theory]
    [InlineData("../evil.gguf", "escapes the slot")]
    [InlineData("model/../../evil.gguf", "escapes the slot")]
    [InlineData("/etc/passwd", "escapes the slot (is absolute)")]
    [InlineData("model\\..\\evil", "escapes the slot (contains a backslash)")]
    public void A_signed_manifest_with_an_escaping_path_is_refused(string path, string message)
    {
        using var f = new Fixture();
        byte[] data = "x"u8.ToArray();
        string bundle = f.Raw("escape.etb", Fixture.Manifest((path, data)), [new Fixture.RawEntry("payload/" + path, data)], f.Key);
        var e = Assert.Throws<BundleException>(() => BundleReader.Open(bundle));
        Assert.Equal(BundleRefusal.UnsafePath, e.Refusal);
        Assert.Contains(message, e.Message);
    }

    [Theory]
    [InlineData(TarEntryType.SymbolicLink, "is a symbolic link to '/etc/shadow'")]
    [InlineData(TarEntryType.HardLink, "is a hard link to '/etc/shadow'")]
    public void Link_entries_are_refused(TarEntryType type, string message)
    {
        using var f = new Fixture();
        byte[] data = [];
        string bundle = f.Raw("link.etb", Fixture.Manifest(("model.gguf", data)), [new Fixture.RawEntry("payload/model.gguf", data, type, "/etc/shadow")], f.Key);
        var e = f.Refused(bundle);
        Assert.Equal(BundleRefusal.UnsafePath, e.Refusal);
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void An_entry_named_other_than_the_manifest_says_is_refused()
    {
        using var f = new Fixture();
        byte[] data = "x"u8.ToArray();
        string bundle = f.Raw("swap.etb", Fixture.Manifest(("model.gguf", data)), [new Fixture.RawEntry("payload/../model.gguf", data)], f.Key);
        var e = f.Refused(bundle);
        Assert.Equal(BundleRefusal.UnsafePath, e.Refusal);
        Assert.Contains("escapes the slot", e.Message);
    }

    [Fact]
    public void An_archive_larger_than_its_manifest_says_is_refused()
    {
        using var f = new Fixture();
        byte[] data = "x"u8.ToArray();
        string bundle = f.Raw("big.etb", Fixture.Manifest(("model.gguf", data)), [new Fixture.RawEntry("payload/model.gguf", data)], f.Key, appended: new byte[1 << 20]);
        var e = Assert.Throws<BundleException>(() => BundleReader.Open(bundle));
        Assert.Equal(BundleRefusal.Oversize, e.Refusal);
        Assert.Contains("larger than its manifest accounts for", e.Message);
    }

    [Fact]
    public void An_entry_the_manifest_does_not_list_is_refused()
    {
        using var f = new Fixture();
        byte[] data = "x"u8.ToArray();
        string bundle = f.Raw("extra.etb", Fixture.Manifest(("model.gguf", data)),
            [new Fixture.RawEntry("payload/model.gguf", data), new Fixture.RawEntry("payload/extra.sh", "rm -rf /"u8.ToArray())], f.Key);
        var e = f.Refused(bundle);
        Assert.Equal(BundleRefusal.Oversize, e.Refusal);
        Assert.Contains("'payload/extra.sh', which the manifest does not list", e.Message);
    }

    [Fact]
    public void An_entry_larger_than_listed_is_refused_before_it_is_read()
    {
        using var f = new Fixture();
        byte[] listed = new byte[1000];
        string bundle = f.Raw("grown.etb", Fixture.Manifest(("model.gguf", listed)), [new Fixture.RawEntry("payload/model.gguf", new byte[3000])], f.Key);
        var e = f.Refused(bundle);
        Assert.Equal(BundleRefusal.Oversize, e.Refusal);
        Assert.Contains("is 3000 bytes in the archive, the manifest says 1000: refused before reading it", e.Message);
    }

    [Fact]
    public void A_huge_manifest_is_refused_before_it_is_read()
    {
        using var f = new Fixture();
        string bundle = f.Raw("hugemanifest.etb", new string(' ', BundleManifest.MaxBytes + 1), [], null);
        var e = Assert.Throws<BundleException>(() => BundleReader.Open(bundle));
        Assert.Contains($"more than the {BundleManifest.MaxBytes} allowed: refused before reading it", e.Message);
    }

    [Fact]
    public void A_truncated_bundle_is_refused()
    {
        using var f = new Fixture();
        byte[] bytes = File.ReadAllBytes(f.Honest());
        File.WriteAllBytes(f.Dir.File("short.etb"), bytes[..(bytes.Length - 1500)]);
        var e = f.Refused(f.Dir.File("short.etb"));
        Assert.Equal(BundleRefusal.Tampered, e.Refusal);
    }

    [Fact]
    public void Not_a_bundle_is_one_clear_line()
    {
        using var f = new Fixture();
        File.WriteAllText(f.Dir.File("notes.txt"), "hello");
        var e = Assert.Throws<BundleException>(() => BundleReader.Open(f.Dir.File("notes.txt")));
        Assert.StartsWith(f.Dir.File("notes.txt") + ":", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Signing_again_replaces_the_signature_and_keeps_the_payload()
    {
        using var f = new Fixture();
        string path = f.Honest(sign: false);
        var signature = BundleWriter.Sign(path, f.Key);
        Assert.Equal(f.Trust[0].Id, signature.KeyId);
        f.Check(path);
        BundleWriter.Sign(path, f.Key);
        f.Check(path);
    }

    [Theory]
    [InlineData("1.2.0", "1.10.0", -1)]
    [InlineData("2.0", "1.9.9", 1)]
    [InlineData("1.0.0", "1.0", 0)]
    [InlineData("1.0.0-rc.1", "1.0.0", -1)]
    [InlineData("1.0.0-rc.2", "1.0.0-rc.10", 1)] // pre-release tags compare as text, as documented
    public void Versions_order_numerically(string a, string b, int sign) =>
        Assert.Equal(sign, Math.Sign(BundleManifest.CompareVersions(a, b)));
}

public sealed class BundleKeyTests
{
    [Fact]
    public void Keygen_writes_the_private_key_0600_and_never_overwrites()
    {
        using var dir = new TempDir();
        string id = BundleKeys.Generate(dir.File("k.key"), dir.File("k.pub"));
        if (!OperatingSystem.IsWindows()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(dir.File("k.key")));
        Assert.Equal(id, BundleKeys.LoadPublic(dir.File("k.pub")).Id);
        using var key = BundleKeys.LoadPrivate(dir.File("k.key"));
        Assert.Equal(id, BundleKeys.KeyId(key));
        var e = Assert.Throws<BundleException>(() => BundleKeys.Generate(dir.File("k.key"), dir.File("other.pub")));
        Assert.Contains("already exists", e.Message);
    }

    [Fact]
    public void A_private_key_is_not_accepted_as_trust_and_a_public_key_cannot_sign()
    {
        using var dir = new TempDir();
        BundleKeys.Generate(dir.File("k.key"), dir.File("k.pub"));
        Assert.Contains("holds a private key", Assert.Throws<BundleException>(() => BundleKeys.LoadTrust(dir.File("k.key"))).Message);
        Assert.Contains("not a private key", Assert.Throws<BundleException>(() => BundleKeys.LoadPrivate(dir.File("k.pub"))).Message);
        Assert.Contains("no *.pub key files", Assert.Throws<BundleException>(() => BundleKeys.LoadTrust(Directory.CreateDirectory(dir.File("empty")).FullName)).Message);
    }
}
