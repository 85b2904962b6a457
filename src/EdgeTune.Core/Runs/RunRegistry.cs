using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using EdgeTune.Core.IO;

namespace EdgeTune.Core.Runs;

/// <summary>A file a run produced or read, with its hash (so a later run can tell whether it is the same).</summary>
public sealed record RunArtifact(string Name, string Path, string? Sha256, long Bytes);

/// <summary>A metric with its 95% interval, as `eval` reports it.</summary>
public sealed record RunMetric(double Value, double? Low = null, double? High = null);

/// <summary>
/// One line of the registry: a `train`, `eval` or `export` run (what went in, what came out, its metrics), or a
/// `promotion` (which run became champion, against whom, with what evidence, or who forced it).
/// </summary>
public sealed record RunRecord
{
    public required string Id { get; init; }
    public required string Kind { get; init; }
    public DateTimeOffset Time { get; init; } = DateTimeOffset.UtcNow;
    public string? Command { get; init; }
    public string? Recipe { get; init; }
    public string? RecipeSha256 { get; init; }
    /// <summary>The recipe's text at the time (compare diffs it; the file may have changed since).</summary>
    public string? RecipeText { get; init; }
    public string? Base { get; init; }
    public string? BaseSha256 { get; init; }
    /// <summary>Data files by role (train, eval, test, manifest) → SHA-256.</summary>
    public Dictionary<string, string> Data { get; init; } = [];
    public string? Parent { get; init; }
    /// <summary>Metrics by name ("tuned.exact_match", "final_loss").</summary>
    public Dictionary<string, RunMetric> Metrics { get; init; } = [];
    public List<RunArtifact> Artifacts { get; init; } = [];
    public string? Toolkit { get; init; }
    public string? User { get; init; }
    // Promotion records.
    public string? Run { get; init; }
    public string? Against { get; init; }
    public string? Metric { get; init; }
    public double? Difference { get; init; }
    public double? PValue { get; init; }
    public string? Test { get; init; }
    public string? ForcedBy { get; init; }
    public string? Note { get; init; }
}

/// <summary>
/// The project's run registry: an append-only JSONL file (runs.jsonl) with a folder per run for the files kept with
/// it (answers of an eval), under `runs/` of the working directory, or EDGETUNE_RUNS, or --registry. Appends take an
/// exclusive lock and are fsynced, so concurrent commands interleave whole lines and a crash loses at most the
/// line being written (a torn last line is skipped on reading, and said).
/// </summary>
public sealed class RunRegistry
{
    public const string EnvironmentVariable = "EDGETUNE_RUNS";
    public const string FileName = "runs.jsonl";

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public RunRegistry(string folder) => Folder = System.IO.Path.GetFullPath(folder);

    /// <summary>--registry when given, else EDGETUNE_RUNS, else runs/ of the working directory.</summary>
    public static RunRegistry Locate(string? option) =>
        new(option ?? (Environment.GetEnvironmentVariable(EnvironmentVariable) is { Length: > 0 } env ? env : "runs"));

    public string Folder { get; }
    public string Path => System.IO.Path.Combine(Folder, FileName);

    /// <summary>A folder for files kept with run <paramref name="id"/> (created).</summary>
    public string RunFolder(string id)
    {
        string dir = System.IO.Path.Combine(Folder, id);
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>A new id: time plus randomness, sortable by time ("20261203-041502-7f3a").</summary>
    public static string NewId(DateTimeOffset time) =>
        $"{time.UtcDateTime:yyyyMMdd-HHmmss}-{Convert.ToHexString(RandomNumberGenerator.GetBytes(2)).ToLowerInvariant()}";

    public void Append(RunRecord record)
    {
        Directory.CreateDirectory(Folder);
        byte[] line = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(record, Json) + "\n");
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                using var file = new FileStream(Path, FileMode.Append, FileAccess.Write, FileShare.Read);
                file.Write(line);
                file.Flush(flushToDisk: true);
                break;
            }
            catch (IOException) when (attempt < 50)
            {
                Thread.Sleep(20 + Random.Shared.Next(30)); // another command is appending
            }
        }
        DurableFiles.SyncFolder(Folder);
    }

    /// <summary>Every record in order. A line that does not parse is an error naming the line, unless it is the torn last one.</summary>
    public IReadOnlyList<RunRecord> ReadAll(Action<string>? warn = null)
    {
        if (!File.Exists(Path)) return [];
        var lines = File.ReadAllLines(Path);
        var records = new List<RunRecord>(lines.Length);
        for (int i = 0; i < lines.Length; i++)
        {
            if (lines[i].Length == 0) continue;
            try
            {
                records.Add(JsonSerializer.Deserialize<RunRecord>(lines[i], Json) ?? throw new JsonException("null"));
            }
            catch (JsonException e)
            {
                if (i == lines.Length - 1) { warn?.Invoke($"{Path}:{i + 1}: an incomplete last line (an interrupted write) is skipped"); continue; }
                throw new EdgeTuneException($"{Path}:{i + 1}: not a run record ({e.Message.Split('.')[0]})");
            }
            catch (NotSupportedException e)
            {
                throw new EdgeTuneException($"{Path}:{i + 1}: not a run record ({e.Message.Split('.')[0]})");
            }
        }
        return records;
    }

    /// <summary>The run with this id, or the only one whose id starts with it.</summary>
    public RunRecord Find(string id, IReadOnlyList<RunRecord>? records = null)
    {
        records ??= ReadAll();
        var runs = records.Where(r => r.Kind != "promotion").ToList();
        if (runs.FirstOrDefault(r => r.Id == id) is { } exact) return exact;
        var matches = runs.Where(r => r.Id.StartsWith(id, StringComparison.Ordinal)).ToList();
        return matches.Count switch
        {
            1 => matches[0],
            0 => throw new EdgeTuneException($"{Path}: no run '{id}' (`edgetune runs list` shows them)"),
            _ => throw new EdgeTuneException($"{Path}: '{id}' names {matches.Count} runs ({string.Join(", ", matches.Take(4).Select(m => m.Id))}); give more of the id"),
        };
    }

    /// <summary>The current champion: the run of the last promotion, or null.</summary>
    public static string? Champion(IReadOnlyList<RunRecord> records) => records.LastOrDefault(r => r.Kind == "promotion")?.Run;

    /// <summary>SHA-256 of a file, hex; cached in the registry by path, size and modification time (bases are gigabytes).</summary>
    public string Sha256(string file)
    {
        var info = new FileInfo(file);
        string key = $"{info.FullName}|{info.Length}|{info.LastWriteTimeUtc.Ticks}";
        string cacheFile = System.IO.Path.Combine(Folder, "hash-cache.json");
        var cache = _hashCache ??= ReadHashCache(cacheFile);
        if (cache.TryGetValue(key, out var known)) return known;
        string hash;
        using (var stream = File.OpenRead(file)) hash = Convert.ToHexString(SHA256.HashData(stream)).ToLowerInvariant();
        if (info.Length >= 64 << 20)
        {
            cache[key] = hash;
            Directory.CreateDirectory(Folder);
            DurableFiles.WriteAllText(cacheFile, JsonSerializer.Serialize(cache));
        }
        return hash;
    }

    private Dictionary<string, string>? _hashCache; // read once per registry, not once per hashed file

    private static Dictionary<string, string> ReadHashCache(string cacheFile)
    {
        try
        {
            return File.Exists(cacheFile) ? JsonSerializer.Deserialize<Dictionary<string, string>>(File.ReadAllText(cacheFile)) ?? [] : [];
        }
        catch (JsonException) { return []; } // a damaged cache is only a cache
    }

    /// <summary>SHA-256 of a file or of a folder's files (names and contents, in order); null when it does not exist.</summary>
    public string? HashOf(string? path)
    {
        if (path is null) return null;
        if (File.Exists(path)) return Sha256(path);
        if (!Directory.Exists(path)) return null;
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var f in Directory.EnumerateFiles(path, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            sha.AppendData(Encoding.UTF8.GetBytes(System.IO.Path.GetRelativePath(path, f) + "\n" + Sha256(f) + "\n"));
        }
        return Convert.ToHexString(sha.GetHashAndReset()).ToLowerInvariant();
    }

    /// <summary>An artifact record for a file or folder that exists; null otherwise.</summary>
    public RunArtifact? Artifact(string name, string? path)
    {
        if (path is null || (!File.Exists(path) && !Directory.Exists(path))) return null;
        long bytes = File.Exists(path) ? new FileInfo(path).Length : Directory.EnumerateFiles(path, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
        return new RunArtifact(name, System.IO.Path.GetFullPath(path), HashOf(path), bytes);
    }
}
