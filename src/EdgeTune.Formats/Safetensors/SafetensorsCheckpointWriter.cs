using System.Text;
using System.Text.RegularExpressions;

namespace EdgeTune.Formats.Safetensors;

/// <summary>
/// Writes a checkpoint the way transformers' save_pretrained does: tensors split into shards of at most
/// maxShardBytes of tensor data, named model-0000i-of-0000n.safetensors, plus model.safetensors.index.json;
/// or a single model.safetensors, with no index, when everything fits in one shard.
/// </summary>
public sealed class SafetensorsCheckpointWriter
{
    private readonly List<Pending> _tensors = [];
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);

    public SafetensorsCheckpointWriter(long maxShardBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxShardBytes);
        MaxShardBytes = maxShardBytes;
    }

    public long MaxShardBytes { get; }

    /// <summary>"__metadata__" written into every shard (transformers writes {"format": "pt"}).</summary>
    public IDictionary<string, string> Metadata { get; } = new Dictionary<string, string>(StringComparer.Ordinal);

    /// <summary>See <see cref="SafetensorsWriter.AddTensor(string, SafetensorsDType, ReadOnlySpan{long}, Action{Stream})"/>.</summary>
    public void AddTensor(string name, SafetensorsDType dtype, ReadOnlySpan<long> shape, Action<Stream> writeData)
    {
        ArgumentNullException.ThrowIfNull(writeData);
        long byteLength = SafetensorsWriter.CheckDescriptor(name, dtype, shape);
        if (!_names.Add(name)) throw new ArgumentException($"tensor '{name}' was already added", nameof(name));
        _tensors.Add(new Pending(name, dtype, shape.ToArray(), byteLength, writeData));
    }

    /// <summary>Describes a tensor whose bytes are already in memory; their length is checked now.</summary>
    public void AddTensor(string name, SafetensorsDType dtype, ReadOnlySpan<long> shape, ReadOnlyMemory<byte> data)
    {
        SafetensorsWriter.CheckData(name, dtype, shape, data);
        AddTensor(name, dtype, shape, stream => stream.Write(data.Span));
    }

    /// <summary>
    /// Writes the shards and the index into folder (created if needed) and returns the paths written, index
    /// last. Shards from an earlier save with another shard count (prefix-0000i-of-0000m.safetensors), and a
    /// stale index when the model now fits one file, are deleted afterwards, as save_pretrained does, so the
    /// folder never mixes two saves.
    /// </summary>
    public IReadOnlyList<string> Write(string folder, string prefix = "model")
    {
        Directory.CreateDirectory(folder);
        var shards = Split();
        var written = new List<string>();
        string indexPath = Path.Combine(folder, $"{prefix}.safetensors.index.json");

        if (shards.Count <= 1)
        {
            string path = Path.Combine(folder, $"{prefix}.safetensors");
            WriteShard(path, shards.Count == 1 ? shards[0] : []);
            written.Add(path);
            if (File.Exists(indexPath)) File.Delete(indexPath);
        }
        else
        {
            var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
            for (int i = 0; i < shards.Count; i++)
            {
                string name = $"{prefix}-{i + 1:00000}-of-{shards.Count:00000}.safetensors";
                string path = Path.Combine(folder, name);
                WriteShard(path, shards[i]);
                written.Add(path);
                foreach (var tensor in shards[i]) weightMap[tensor.Name] = name;
            }
            WriteIndex(indexPath, weightMap, _tensors.Sum(t => t.ByteLength));
            written.Add(indexPath);
        }

        DeleteStaleShards(folder, prefix, written);
        return written;
    }

    /// <summary>
    /// huggingface_hub's split_state_dict_into_shards: in insertion order, start a new shard when the next
    /// tensor would overflow the current one; a tensor larger than the limit gets a shard of its own.
    /// </summary>
    private List<List<Pending>> Split()
    {
        var shards = new List<List<Pending>>();
        var current = new List<Pending>();
        long currentBytes = 0;
        foreach (var tensor in _tensors)
        {
            if (tensor.ByteLength > MaxShardBytes)
            {
                shards.Add([tensor]);
                continue;
            }
            if (currentBytes + tensor.ByteLength > MaxShardBytes)
            {
                shards.Add(current);
                current = [];
                currentBytes = 0;
            }
            current.Add(tensor);
            currentBytes += tensor.ByteLength;
        }
        if (current.Count > 0) shards.Add(current);
        return shards;
    }

    private void WriteShard(string path, List<Pending> tensors)
    {
        var writer = new SafetensorsWriter();
        foreach (var (key, value) in Metadata) writer.Metadata[key] = value;
        foreach (var tensor in tensors) writer.AddTensor(tensor.Name, tensor.DType, tensor.Shape, tensor.WriteData);
        writer.Write(path);
    }

    /// <summary>json.dumps(index, indent=2, sort_keys=True) + "\n", byte for byte, as transformers writes it.</summary>
    private static void WriteIndex(string path, Dictionary<string, string> weightMap, long totalSize)
    {
        var json = new StringBuilder();
        json.Append("{\n  \"metadata\": {\n    \"total_size\": ").Append(totalSize).Append("\n  },\n  \"weight_map\": {");
        bool first = true;
        foreach (var (name, shard) in weightMap.OrderBy(p => p.Key, SafetensorsJson.CodePointOrder))
        {
            json.Append(first ? "\n    " : ",\n    ");
            first = false;
            SafetensorsJson.AppendString(json, name, asciiOnly: true);
            json.Append(": ");
            SafetensorsJson.AppendString(json, shard, asciiOnly: true);
        }
        json.Append(first ? "}\n}\n" : "\n  }\n}\n");

        EdgeTune.Core.IO.DurableFiles.WriteAllBytes(path, Encoding.ASCII.GetBytes(json.ToString()));
    }

    private static void DeleteStaleShards(string folder, string prefix, List<string> written)
    {
        var keep = new HashSet<string>(written.Select(Path.GetFileName)!, StringComparer.Ordinal);
        var pattern = new Regex($"^{Regex.Escape(prefix)}-[0-9]{{5}}-of-[0-9]{{5}}\\.safetensors$", RegexOptions.CultureInvariant);
        foreach (string path in Directory.EnumerateFiles(folder, $"{prefix}-*.safetensors"))
        {
            string name = Path.GetFileName(path);
            if (pattern.IsMatch(name) && !keep.Contains(name)) File.Delete(path);
        }
    }

    private sealed record Pending(string Name, SafetensorsDType DType, long[] Shape, long ByteLength, Action<Stream> WriteData);
}
