using System.Text.Json;
using EdgeTune.Core;

namespace EdgeTune.Formats.Safetensors;

/// <summary>A tensor found in a shard whose index does not list it there; ignored, reported as a warning.</summary>
public sealed record SafetensorsUnlistedTensor(string Shard, string Name)
{
    public override string ToString() =>
        $"{Shard}: key '{SafetensorsJson.OneLine(Name)}': tensor is not listed for this shard in the index; ignored";
}

/// <summary>
/// A Hugging Face checkpoint: one model.safetensors, or shards listed by model.safetensors.index.json
/// ({"metadata": {"total_size": N}, "weight_map": {"tensor": "model-00001-of-00002.safetensors"}}). Each shard
/// is opened (memory-mapped) once; tensors are looked up by name across all of them.
/// </summary>
public sealed class SafetensorsCheckpoint : IDisposable
{
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";

    /// <summary>Index files list a few thousand tensors; anything this big is not one.</summary>
    private const long MaxIndexBytes = 100_000_000;

    private readonly Dictionary<string, (SafetensorsFile Shard, SafetensorsTensorInfo Tensor)> _byName;

    private SafetensorsCheckpoint(string? indexPath, List<SafetensorsFile> shards, Dictionary<string, string>? weightMap,
        long? totalSize, List<SafetensorsUnlistedTensor> unlisted)
    {
        IndexPath = indexPath;
        Shards = shards;
        TotalSize = totalSize;
        UnlistedTensors = unlisted;
        _byName = new(StringComparer.Ordinal);
        var tensors = new List<SafetensorsTensorInfo>();
        foreach (var shard in shards)
        {
            string shardName = System.IO.Path.GetFileName(shard.Path);
            foreach (var tensor in shard.Tensors)
            {
                if (weightMap is not null && weightMap.GetValueOrDefault(tensor.Name) != shardName) continue;
                _byName.Add(tensor.Name, (shard, tensor));
                tensors.Add(tensor);
            }
        }
        Tensors = tensors;
    }

    /// <summary>The index file, or null for a single-file checkpoint.</summary>
    public string? IndexPath { get; }

    /// <summary>The open files: shards in file-name order, or the one file.</summary>
    public IReadOnlyList<SafetensorsFile> Shards { get; }

    /// <summary>All tensors: shard by shard in file-name order, each shard's in file order.</summary>
    public IReadOnlyList<SafetensorsTensorInfo> Tensors { get; }

    /// <summary>metadata.total_size of the index (sum of tensor bytes, as transformers writes it), if given.</summary>
    public long? TotalSize { get; }

    /// <summary>Tensors present in a shard but not listed for it by the index (warnings; they are not exposed).</summary>
    public IReadOnlyList<SafetensorsUnlistedTensor> UnlistedTensors { get; }

    private string Source => IndexPath ?? Shards[0].Path;

    /// <summary>
    /// Opens a folder (its model.safetensors.index.json if present, else its model.safetensors), an index file
    /// (name ending in .json) or a single safetensors file.
    /// </summary>
    public static SafetensorsCheckpoint Open(string path)
    {
        if (Directory.Exists(path))
        {
            string index = System.IO.Path.Combine(path, IndexFileName);
            if (File.Exists(index)) return OpenIndex(index);
            string single = System.IO.Path.Combine(path, SingleFileName);
            if (File.Exists(single)) return OpenSingle(single);
            throw new EdgeTuneException($"{path}: no {IndexFileName} or {SingleFileName} in this folder");
        }
        return path.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? OpenIndex(path) : OpenSingle(path);
    }

    private static SafetensorsCheckpoint OpenSingle(string path) =>
        new(null, [SafetensorsFile.Open(path)], null, null, []);

    private static SafetensorsCheckpoint OpenIndex(string indexPath)
    {
        var (weightMap, totalSize) = ReadIndex(indexPath);
        string folder = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(indexPath))!;
        var shards = new List<SafetensorsFile>();
        try
        {
            var unlisted = new List<SafetensorsUnlistedTensor>();
            foreach (var group in weightMap.GroupBy(p => p.Value).OrderBy(g => g.Key, StringComparer.Ordinal))
            {
                string shardPath = System.IO.Path.Combine(folder, group.Key);
                if (!File.Exists(shardPath))
                    throw FileFormatException.AtKey(indexPath, SafetensorsJson.OneLine(group.First().Key),
                        $"shard file '{group.Key}' does not exist ({shardPath})");
                var shard = SafetensorsFile.Open(shardPath);
                shards.Add(shard);
                foreach (var (tensor, _) in group)
                {
                    if (!shard.Contains(tensor))
                        throw FileFormatException.AtKey(indexPath, SafetensorsJson.OneLine(tensor),
                            $"tensor is not in its shard '{group.Key}'");
                }
                foreach (var tensor in shard.Tensors)
                {
                    if (weightMap.GetValueOrDefault(tensor.Name) != group.Key)
                        unlisted.Add(new SafetensorsUnlistedTensor(group.Key, tensor.Name));
                }
            }
            return new SafetensorsCheckpoint(indexPath, shards, weightMap, totalSize, unlisted);
        }
        catch
        {
            foreach (var shard in shards) shard.Dispose();
            throw;
        }
    }

    /// <summary>Reads and checks the index: weight_map of tensor name to a plain file name in the same folder.</summary>
    private static (Dictionary<string, string> WeightMap, long? TotalSize) ReadIndex(string indexPath)
    {
        byte[] bytes;
        try
        {
            long length = new FileInfo(indexPath).Length;
            if (length > MaxIndexBytes)
                throw FileFormatException.AtOffset(indexPath, 0, $"index is {length} bytes; too large for a checkpoint index");
            bytes = File.ReadAllBytes(indexPath);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new EdgeTuneException($"{indexPath}: no such file", e);
        }

        // Tolerate a UTF-8 byte order mark, which some editors add; offsets stay file offsets.
        int start = bytes.AsSpan().StartsWith("\uFEFF"u8) ? 3 : 0;
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(bytes.AsMemory(start));
        }
        catch (JsonException e)
        {
            throw FileFormatException.AtOffset(indexPath, start + SafetensorsJson.ErrorPosition(e, bytes.AsSpan(start)), SafetensorsJson.Describe(e));
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw FileFormatException.AtOffset(indexPath, start, "index must be a JSON object");

            long? totalSize = null;
            Dictionary<string, string>? weightMap = null;
            foreach (var property in root.EnumerateObject())
            {
                if (property.NameEquals("metadata"))
                    totalSize = ReadTotalSize(indexPath, property.Value);
                else if (property.NameEquals("weight_map"))
                {
                    if (weightMap is not null) throw FileFormatException.AtKey(indexPath, "weight_map", "appears twice");
                    weightMap = ReadWeightMap(indexPath, property.Value);
                }
            }
            return (weightMap ?? throw FileFormatException.AtKey(indexPath, "weight_map", "missing"), totalSize);
        }
    }

    private static long? ReadTotalSize(string indexPath, JsonElement metadata)
    {
        if (metadata.ValueKind != JsonValueKind.Object)
            throw FileFormatException.AtKey(indexPath, "metadata", "must be an object");
        if (!metadata.TryGetProperty("total_size", out var total)) return null;
        // transformers writes an integer; some tools write it as a float with no fraction.
        if (total.ValueKind == JsonValueKind.Number && total.TryGetInt64(out long exact)) return exact;
        if (total.ValueKind == JsonValueKind.Number && total.TryGetDouble(out double approx) && approx >= 0 && approx < 9e18 && approx == Math.Floor(approx))
            return (long)approx;
        throw FileFormatException.AtKey(indexPath, "metadata.total_size", "must be a non-negative integer");
    }

    private static Dictionary<string, string> ReadWeightMap(string indexPath, JsonElement map)
    {
        if (map.ValueKind != JsonValueKind.Object)
            throw FileFormatException.AtKey(indexPath, "weight_map", "must be an object of tensor name to shard file name");
        var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var entry in map.EnumerateObject())
        {
            string name = SafetensorsJson.OneLine(entry.Name);
            if (entry.Value.ValueKind != JsonValueKind.String)
                throw FileFormatException.AtKey(indexPath, name, "weight_map value must be a shard file name");
            string shard = entry.Value.GetString()!;
            // Shards live next to the index; a path here could reach any file on the machine.
            if (shard.Length == 0 || shard is "." or ".." || shard.IndexOfAny(['/', '\\']) >= 0
                || shard.IndexOfAny(System.IO.Path.GetInvalidFileNameChars()) >= 0)
                throw FileFormatException.AtKey(indexPath, name, $"shard '{SafetensorsJson.OneLine(shard)}' is not a plain file name");
            if (!weightMap.TryAdd(entry.Name, shard))
                throw FileFormatException.AtKey(indexPath, name, "listed twice in weight_map");
        }
        return weightMap;
    }

    public bool Contains(string name) => _byName.ContainsKey(name);

    public SafetensorsTensorInfo GetTensor(string name) => Find(name).Tensor;

    /// <summary>The open shard holding a tensor.</summary>
    public SafetensorsFile GetShard(string name) => Find(name).Shard;

    public SafetensorsTensorData GetData(string name)
    {
        var (shard, tensor) = Find(name);
        return shard.GetData(tensor);
    }

    public ReadOnlySpan<byte> GetBytes(string name) => GetData(name).Span;

    public UnmanagedMemoryStream OpenRead(string name) => GetData(name).OpenRead();

    public void ReadAsFloat32(string name, Span<float> destination) => GetShard(name).ReadAsFloat32(name, destination);

    public void ReadAsFloat32(string name, long firstElement, Span<float> destination) =>
        GetShard(name).ReadAsFloat32(name, firstElement, destination);

    private (SafetensorsFile Shard, SafetensorsTensorInfo Tensor) Find(string name) =>
        _byName.TryGetValue(name, out var found)
            ? found
            : throw FileFormatException.AtKey(Source, SafetensorsJson.OneLine(name), "no tensor of this name in the checkpoint");

    public void Dispose()
    {
        foreach (var shard in Shards) shard.Dispose();
    }
}
