using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace EdgeTune.Bundles;

/// <summary>One payload file: where it goes in the slot, its size and SHA-256 (lower-case hex).</summary>
public sealed record BundleFile(string Path, long Size, string Sha256);

/// <summary>The optional scored health set: JSONL lines {"prompt", "expected"}; the share answered exactly must reach the threshold.</summary>
public sealed record HealthSet(string Path, double Threshold);

/// <summary>
/// manifest.json, the signed heart of a bundle: what it is for (<see cref="Compatible"/>, <see cref="MinAgentVersion"/>),
/// what it holds (<see cref="Files"/>, each with size and SHA-256) and which of those files are the model, the adapters
/// and the agent configuration. The signature covers these exact bytes, so every file is bound through its hash.
/// </summary>
public sealed partial record BundleManifest
{
    public const string FormatName = "edgetune-bundle/1";
    public const string FileName = "manifest.json";
    public const string SignatureFileName = "manifest.sig";
    public const string PayloadPrefix = "payload/";

    /// <summary>Manifests larger than this are refused before they are read.</summary>
    public const int MaxBytes = 1 << 20;

    public const int MaxFiles = 10_000;
    public const int MaxPathLength = 240;

    public required string Version { get; init; }
    public required string Compatible { get; init; }
    public required string MinAgentVersion { get; init; }
    public DateTimeOffset Created { get; init; }
    /// <summary>The model: a GGUF file or a folder (a prefix of payload paths).</summary>
    public required string Model { get; init; }
    public IReadOnlyList<string> Adapters { get; init; } = [];
    /// <summary>The agent configuration supplying [model] settings on the device (paths relative to the slot).</summary>
    public required string Config { get; init; }
    public string? TrainingSetFingerprint { get; init; }
    /// <summary>The run in the workstation's registry the model came from (`edgetune runs show RUN`).</summary>
    public string? Run { get; init; }
    public string? ExportCard { get; init; }
    public HealthSet? Health { get; init; }
    public required IReadOnlyList<BundleFile> Files { get; init; }

    public long PayloadBytes => Files.Sum(f => f.Size);

    public byte[] ToJson()
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("format", FormatName);
            w.WriteString("version", Version);
            w.WriteString("compatible", Compatible);
            w.WriteString("min_agent_version", MinAgentVersion);
            w.WriteString("created", Created.ToUniversalTime().ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture));
            w.WriteString("model", Model);
            w.WriteStartArray("adapters");
            foreach (var a in Adapters) w.WriteStringValue(a);
            w.WriteEndArray();
            w.WriteString("config", Config);
            if (TrainingSetFingerprint is { } fp) w.WriteString("training_set_fingerprint", fp);
            if (Run is { } run) w.WriteString("run", run);
            if (ExportCard is { } card) w.WriteString("export_card", card);
            if (Health is { } h)
            {
                w.WriteStartObject("health");
                w.WriteString("scored_set", h.Path);
                w.WriteNumber("threshold", h.Threshold);
                w.WriteEndObject();
            }
            w.WriteStartArray("files");
            foreach (var f in Files)
            {
                w.WriteStartObject();
                w.WriteString("path", f.Path);
                w.WriteNumber("size", f.Size);
                w.WriteString("sha256", f.Sha256);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        buffer.WriteByte((byte)'\n');
        return buffer.ToArray();
    }

    /// <summary>Parses and validates manifest bytes; <paramref name="source"/> names the bundle in messages.</summary>
    public static BundleManifest Parse(ReadOnlySpan<byte> json, string source)
    {
        string where = $"{source}: {FileName}";
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json.ToArray(), new JsonDocumentOptions { MaxDepth = 8 }); }
        catch (JsonException e) { throw new BundleException(BundleRefusal.Format, $"{where}: not valid JSON at byte {e.BytePositionInLine} of line {e.LineNumber + 1}"); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw Bad(where, "(root)", "expected a JSON object");
            string format = Str(root, "format", where);
            if (format != FormatName) throw Bad(where, "format", $"'{format}' is not {FormatName} (a newer edgetune may have written it)");
            var files = new List<BundleFile>();
            if (!root.TryGetProperty("files", out var filesElement) || filesElement.ValueKind != JsonValueKind.Array) throw Bad(where, "files", "required (an array)");
            if (filesElement.GetArrayLength() > MaxFiles) throw Bad(where, "files", $"more than {MaxFiles} files");
            var seen = new HashSet<string>(StringComparer.Ordinal);
            int i = 0;
            foreach (var f in filesElement.EnumerateArray())
            {
                string key = $"files[{i++}]";
                if (f.ValueKind != JsonValueKind.Object) throw Bad(where, key, "expected an object");
                string path = Str(f, "path", where, key + ".");
                CheckPath(path, where, key + ".path");
                if (!seen.Add(path)) throw Bad(where, key + ".path", $"'{path}' is listed twice");
                if (!f.TryGetProperty("size", out var size) || !size.TryGetInt64(out long bytes) || bytes < 0) throw Bad(where, key + ".size", "required (a non-negative integer)");
                string sha = Str(f, "sha256", where, key + ".");
                if (!Sha256Pattern().IsMatch(sha)) throw Bad(where, key + ".sha256", "expected 64 lower-case hex digits");
                files.Add(new BundleFile(path, bytes, sha));
            }
            // A file and a folder of the same name cannot both be unpacked.
            foreach (var f in files)
                for (int slash = f.Path.IndexOf('/', StringComparison.Ordinal); slash > 0; slash = f.Path.IndexOf('/', slash + 1))
                    if (seen.Contains(f.Path[..slash])) throw Bad(where, "files", $"'{f.Path[..slash]}' is both a file and a folder");

            string version = Str(root, "version", where);
            CheckVersion(version, where, "version");
            string minAgent = Str(root, "min_agent_version", where);
            CheckVersion(minAgent, where, "min_agent_version");
            string compatible = Str(root, "compatible", where);
            if (compatible.Length == 0) throw Bad(where, "compatible", "empty");
            string model = Str(root, "model", where);
            if (!seen.Contains(model) && !seen.Any(p => p.StartsWith(model + "/", StringComparison.Ordinal))) throw Bad(where, "model", $"'{model}' is not among the files");
            string config = Str(root, "config", where);
            if (!seen.Contains(config)) throw Bad(where, "config", $"'{config}' is not among the files");
            var adapters = new List<string>();
            if (root.TryGetProperty("adapters", out var adaptersElement))
            {
                if (adaptersElement.ValueKind != JsonValueKind.Array) throw Bad(where, "adapters", "expected an array of paths");
                foreach (var a in adaptersElement.EnumerateArray())
                {
                    string p = a.ValueKind == JsonValueKind.String ? a.GetString()! : throw Bad(where, "adapters", "expected an array of paths");
                    if (!seen.Contains(p)) throw Bad(where, "adapters", $"'{p}' is not among the files");
                    adapters.Add(p);
                }
            }
            string? card = OptStr(root, "export_card", where);
            if (card is not null && !seen.Contains(card)) throw Bad(where, "export_card", $"'{card}' is not among the files");
            HealthSet? health = null;
            if (root.TryGetProperty("health", out var h))
            {
                string set = h.ValueKind == JsonValueKind.Object ? Str(h, "scored_set", where, "health.") : throw Bad(where, "health", "expected an object");
                if (!seen.Contains(set)) throw Bad(where, "health.scored_set", $"'{set}' is not among the files");
                if (!h.TryGetProperty("threshold", out var t) || !t.TryGetDouble(out double threshold) || threshold is < 0 or > 1) throw Bad(where, "health.threshold", "required (a number in 0..1)");
                health = new HealthSet(set, threshold);
            }
            DateTimeOffset created = default;
            if (OptStr(root, "created", where) is { } c && !DateTimeOffset.TryParse(c, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out created))
                throw Bad(where, "created", $"'{c}' is not a date and time");
            return new BundleManifest
            {
                Version = version, Compatible = compatible, MinAgentVersion = minAgent, Created = created, Model = model, Adapters = adapters,
                Config = config, TrainingSetFingerprint = OptStr(root, "training_set_fingerprint", where), Run = OptStr(root, "run", where), ExportCard = card, Health = health, Files = files,
            };
        }
    }

    /// <summary>
    /// A payload path stays inside the slot: relative, '/'-separated, no empty, '.' or '..' segments, no backslash or
    /// control characters, at most <see cref="MaxPathLength"/> characters.
    /// </summary>
    public static void CheckPath(string path, string where, string key)
    {
        string? problem =
            path.Length == 0 ? "empty"
            : path.Length > MaxPathLength ? $"longer than {MaxPathLength} characters"
            : path[0] == '/' ? "is absolute"
            : path.Contains('\\', StringComparison.Ordinal) ? "contains a backslash"
            : path.Any(char.IsControl) ? "contains a control character"
            : path.Split('/').Any(s => s is "" or "." or "..") ? "has an empty, '.' or '..' segment"
            : null;
        if (problem is not null) throw new BundleException(BundleRefusal.UnsafePath, $"{where}: {key}: path '{Printable(path)}' escapes the slot ({problem})");
    }

    public static void CheckVersion(string version, string where, string key)
    {
        if (!VersionPattern().IsMatch(version)) throw Bad(where, key, $"'{version}' is not a version such as 1.2.0 or 1.2.0-rc.1");
    }

    /// <summary>Orders versions: numeric dotted parts (missing parts are 0), then a release after its pre-releases.</summary>
    public static int CompareVersions(string a, string b)
    {
        static (long[] Numbers, string? Pre) Split(string v)
        {
            int dash = v.IndexOf('-', StringComparison.Ordinal);
            string core = dash < 0 ? v : v[..dash];
            return (core.Split('.').Select(p => long.Parse(p, CultureInfo.InvariantCulture)).ToArray(), dash < 0 ? null : v[(dash + 1)..]);
        }
        var (x, xp) = Split(a);
        var (y, yp) = Split(b);
        for (int i = 0; i < Math.Max(x.Length, y.Length); i++)
        {
            int c = (i < x.Length ? x[i] : 0).CompareTo(i < y.Length ? y[i] : 0);
            if (c != 0) return c;
        }
        if (xp is null || yp is null) return (xp is null ? 1 : 0) - (yp is null ? 1 : 0);
        return string.CompareOrdinal(xp, yp);
    }

    internal static string Printable(string s)
    {
        var b = new StringBuilder();
        foreach (char c in s.Length > 120 ? s[..120] + "…" : s) b.Append(char.IsControl(c) ? $"\\x{(int)c:x2}" : c);
        return b.ToString();
    }

    private static BundleException Bad(string where, string key, string problem) => new(BundleRefusal.Format, $"{where}: {key}: {problem}");

    private static string Str(JsonElement e, string name, string where, string prefix = "") =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()! : throw Bad(where, prefix + name, "required (a string)");

    private static string? OptStr(JsonElement e, string name, string where) =>
        !e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null ? null
        : v.ValueKind == JsonValueKind.String ? v.GetString() : throw Bad(where, name, "expected a string");

    [GeneratedRegex("^[0-9a-f]{64}$")]
    private static partial Regex Sha256Pattern();

    [GeneratedRegex(@"^[0-9]{1,9}(\.[0-9]{1,9}){0,3}(-[0-9A-Za-z.]{1,40})?$")]
    private static partial Regex VersionPattern();
}
