using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace EdgeTune.Bundles;

/// <summary>manifest.sig: which key signed, and the ECDSA P-256 / SHA-256 signature (IEEE P1363 r‖s, base64) over manifest.json's bytes.</summary>
public sealed record BundleSignature(string Algorithm, string KeyId, byte[] Signature)
{
    public const string EcdsaP256 = "ecdsa-p256-sha256";
    public const int MaxBytes = 16 * 1024;

    public byte[] ToJson() => JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, string>
    {
        ["algorithm"] = Algorithm, ["key_id"] = KeyId, ["signature"] = Convert.ToBase64String(Signature),
    });

    public static BundleSignature Parse(byte[] json, string source)
    {
        string where = $"{source}: {BundleManifest.SignatureFileName}";
        try
        {
            using var doc = JsonDocument.Parse(json);
            var root = doc.RootElement;
            string Get(string key) => root.ValueKind == JsonValueKind.Object && root.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String
                ? v.GetString()! : throw new BundleException(BundleRefusal.Format, $"{where}: {key}: required (a string)");
            string algorithm = Get("algorithm");
            if (algorithm != EcdsaP256) throw new BundleException(BundleRefusal.Untrusted, $"{where}: algorithm '{algorithm}' is not supported (expected {EcdsaP256})");
            return new BundleSignature(algorithm, Get("key_id"), Convert.FromBase64String(Get("signature")));
        }
        catch (JsonException) { throw new BundleException(BundleRefusal.Format, $"{where}: not valid JSON"); }
        catch (FormatException) { throw new BundleException(BundleRefusal.Format, $"{where}: signature: not base64"); }
    }
}

/// <summary>A public key the device trusts, named by its id (the first 16 hex digits of the SHA-256 of its SubjectPublicKeyInfo).</summary>
public sealed class TrustedKey(string id, string file, ECDsa key)
{
    public string Id { get; } = id;
    public string File { get; } = file;
    internal ECDsa Key { get; } = key;
}

/// <summary>Key pairs (PEM: PKCS#8 private, SubjectPublicKeyInfo public), signing and the trust set.</summary>
public static class BundleKeys
{
    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    public static string KeyId(ECDsa key) => Convert.ToHexStringLower(SHA256.HashData(key.ExportSubjectPublicKeyInfo()))[..16];

    /// <summary>Writes NAME.key (private, mode 0600 from the moment it exists) and NAME.pub; refuses to overwrite either.</summary>
    public static string Generate(string privatePath, string publicPath)
    {
        foreach (var p in new[] { privatePath, publicPath })
            if (System.IO.File.Exists(p)) throw new BundleException($"{p}: already exists (a key is never overwritten; remove it or choose another --out)");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        WriteNew(privatePath, key.ExportPkcs8PrivateKeyPem() + "\n", OwnerOnly);
        WriteNew(publicPath, key.ExportSubjectPublicKeyInfoPem() + "\n", OwnerOnly | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        return KeyId(key);
    }

    private static void WriteNew(string path, string text, UnixFileMode mode)
    {
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = mode;
        using var stream = new FileStream(path, options);
        stream.Write(Encoding.ASCII.GetBytes(text));
        stream.Flush(true);
    }

    public static ECDsa LoadPrivate(string path)
    {
        string pem = ReadPem(path);
        if (!pem.Contains("PRIVATE KEY-----", StringComparison.Ordinal)) throw new BundleException($"{path}: not a private key (give the .key file that 'edgetune bundle keygen' wrote)");
        return Import(path, pem);
    }

    public static TrustedKey LoadPublic(string path)
    {
        string pem = ReadPem(path);
        if (pem.Contains("PRIVATE KEY-----", StringComparison.Ordinal))
            throw new BundleException($"{path}: holds a private key; trust the public key (.pub) instead, private keys stay off devices");
        if (!pem.Contains("-----BEGIN PUBLIC KEY-----", StringComparison.Ordinal)) throw new BundleException($"{path}: not a PEM public key");
        var key = Import(path, pem);
        return new TrustedKey(KeyId(key), path, key);
    }

    /// <summary>A public key file, or every *.pub in a folder.</summary>
    public static IReadOnlyList<TrustedKey> LoadTrust(string fileOrFolder)
    {
        if (Directory.Exists(fileOrFolder))
        {
            var keys = Directory.GetFiles(fileOrFolder, "*.pub").Order(StringComparer.Ordinal).Select(LoadPublic).ToList();
            if (keys.Count == 0) throw new BundleException($"{fileOrFolder}: no *.pub key files in the trust folder");
            return keys;
        }
        if (!System.IO.File.Exists(fileOrFolder)) throw new BundleException($"{fileOrFolder}: no such key file or folder");
        return [LoadPublic(fileOrFolder)];
    }

    private static string ReadPem(string path)
    {
        if (!System.IO.File.Exists(path)) throw new BundleException($"{path}: no such key file");
        if (new FileInfo(path).Length > 64 * 1024) throw new BundleException($"{path}: too large to be a key file");
        return System.IO.File.ReadAllText(path);
    }

    private static ECDsa Import(string path, string pem)
    {
        var key = ECDsa.Create();
        try { key.ImportFromPem(pem); }
        catch (Exception e) when (e is ArgumentException or CryptographicException) { key.Dispose(); throw new BundleException($"{path}: not a readable key ({e.Message})"); }
        if (key.KeySize != 256) { key.Dispose(); throw new BundleException($"{path}: an ECDSA P-256 key is expected (this one has {key.KeySize} bits)"); }
        return key;
    }

    public static BundleSignature Sign(byte[] manifest, ECDsa key) =>
        new(BundleSignature.EcdsaP256, KeyId(key), key.SignData(manifest, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation));

    /// <summary>The trusted key that made <paramref name="signature"/> over <paramref name="manifest"/>, or a refusal.</summary>
    public static TrustedKey Verify(byte[] manifest, BundleSignature? signature, IReadOnlyList<TrustedKey> trust, string source)
    {
        if (signature is null) throw new BundleException(BundleRefusal.Unsigned, $"{source}: the bundle is not signed (sign it with 'edgetune bundle sign --key KEY'); unsigned bundles are never installed");
        var key = trust.FirstOrDefault(k => k.Id == signature.KeyId)
            ?? throw new BundleException(BundleRefusal.Untrusted, $"{source}: signed by key {signature.KeyId}, which is not trusted (trusted: {string.Join(", ", trust.Select(k => k.Id))})");
        if (!key.Key.VerifyData(manifest, signature.Signature, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation))
            throw new BundleException(BundleRefusal.Untrusted, $"{source}: the signature does not match the manifest (key {key.Id}): the manifest was changed after signing");
        return key;
    }
}
