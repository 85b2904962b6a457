using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Formats.Safetensors;

namespace EdgeTune.Cli.Commands;

/// <summary>`inspect` for safetensors files and Hugging Face checkpoint folders.</summary>
internal static class CheckpointSummary
{
    public static ModelSummary FromSafetensors(string path)
    {
        using var file = SafetensorsFile.Open(path);
        var config = ReadConfig(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, "config.json"), required: false);
        return new ModelSummary
        {
            Path = path,
            Format = $"safetensors ({file.Tensors.Count} tensors)",
            FileSize = file.Length,
            Architecture = Architecture(config),
            Name = file.Metadata.GetValueOrDefault("name"),
            License = file.Metadata.GetValueOrDefault("license"),
            ShapeOrder = "pytorch",
            Metadata = file.Metadata.Select(kv => new ModelSummary.MetadataEntry(kv.Key, "string", kv.Value, null, null)).ToList(),
            Tensors = file.Tensors.Select(t => new ModelSummary.TensorEntry(t.Name, t.Shape, t.DType.Name(), t.ByteLength)).ToList(),
            Notes = config is null ? [] : ["architecture read from config.json beside the file"],
        };
    }

    public static ModelSummary FromFolder(string folder)
    {
        string configPath = Path.Combine(folder, "config.json");
        var config = ReadConfig(configPath, required: true)!.Value;
        bool hasWeights = File.Exists(Path.Combine(folder, SafetensorsCheckpoint.SingleFileName))
                          || File.Exists(Path.Combine(folder, SafetensorsCheckpoint.IndexFileName));
        if (!hasWeights)
        {
            string hint = Directory.EnumerateFiles(folder, "*.bin").Any()
                ? " (it has PyTorch .bin weights; EdgeTune reads safetensors only: re-save the model with safe_serialization=True)"
                : "";
            throw new EdgeTuneException($"{folder}: no {SafetensorsCheckpoint.SingleFileName} or {SafetensorsCheckpoint.IndexFileName}{hint}");
        }

        using var checkpoint = SafetensorsCheckpoint.Open(folder);
        bool sharded = checkpoint.Shards.Count > 1 || checkpoint.IndexPath is not null;
        var notes = new List<string>();
        foreach (var name in new[] { "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "generation_config.json" })
            if (File.Exists(Path.Combine(folder, name))) notes.Add($"has {name}");
        foreach (var unlisted in checkpoint.UnlistedTensors) notes.Add($"warning: {unlisted}");

        return new ModelSummary
        {
            Path = folder,
            Format = sharded ? $"Hugging Face checkpoint, {checkpoint.Shards.Count} safetensors shards" : "Hugging Face checkpoint, one safetensors file",
            FileSize = Directory.EnumerateFiles(folder).Sum(f => new FileInfo(f).Length),
            Architecture = Architecture(config),
            Name = config.TryGetProperty("_name_or_path", out var n) && n.ValueKind == JsonValueKind.String && n.GetString() is { Length: > 0 } s
                ? s
                : Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder))),
            License = License(folder),
            ShapeOrder = "pytorch",
            Metadata = config.EnumerateObject()
                .Select(p => new ModelSummary.MetadataEntry(p.Name, JsonKind(p.Value), Display(p.Value), null, p.Value.Clone()))
                .ToList(),
            Tensors = checkpoint.Tensors
                .Select(t => new ModelSummary.TensorEntry(t.Name, t.Shape, t.DType.Name(), t.ByteLength, sharded ? Path.GetFileName(checkpoint.GetShard(t.Name).Path) : null))
                .ToList(),
            Notes = notes,
        };
    }

    private static JsonElement? ReadConfig(string path, bool required)
    {
        if (!File.Exists(path))
        {
            if (required) throw new EdgeTuneException($"{Path.GetDirectoryName(path)}: no config.json, so this is not a Hugging Face checkpoint folder");
            return null;
        }
        var bytes = File.ReadAllBytes(path);
        try
        {
            using var doc = JsonDocument.Parse(bytes, new JsonDocumentOptions { AllowTrailingCommas = true });
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new FileFormatException(path, "at byte 0", "config.json must hold a JSON object");
            return doc.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new FileFormatException(path, $"line {(e.LineNumber ?? 0) + 1}, column {(e.BytePositionInLine ?? 0) + 1}", "invalid JSON");
        }
    }

    private static string? Architecture(JsonElement? config)
    {
        if (config is not { } c) return null;
        string? modelType = c.TryGetProperty("model_type", out var mt) && mt.ValueKind == JsonValueKind.String ? mt.GetString() : null;
        string? arch = c.TryGetProperty("architectures", out var a) && a.ValueKind == JsonValueKind.Array && a.GetArrayLength() > 0
            ? a[0].GetString()
            : null;
        return (modelType, arch) switch
        {
            (not null, not null) => $"{modelType} ({arch})",
            _ => modelType ?? arch,
        };
    }

    /// <summary>The licence a Hugging Face folder states: the model card's front matter, else a LICENSE file.</summary>
    private static string? License(string folder)
    {
        string card = Path.Combine(folder, "README.md");
        if (File.Exists(card))
        {
            using var reader = new StreamReader(card);
            if (reader.ReadLine()?.Trim() == "---")
            {
                for (int i = 0; i < 200 && reader.ReadLine() is { } line && line.Trim() != "---"; i++)
                {
                    if (line.StartsWith("license:", StringComparison.OrdinalIgnoreCase))
                        return line["license:".Length..].Trim().Trim('"', '\'');
                }
            }
        }
        var licenseFile = Directory.EnumerateFiles(folder).FirstOrDefault(f =>
            Path.GetFileName(f).StartsWith("LICENSE", StringComparison.OrdinalIgnoreCase));
        return licenseFile is null ? null : $"see {Path.GetFileName(licenseFile)}";
    }

    private static string JsonKind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Number => "number",
        JsonValueKind.String => "string",
        JsonValueKind.True or JsonValueKind.False => "bool",
        JsonValueKind.Array => "array",
        JsonValueKind.Object => "object",
        _ => "null",
    };

    private static string Display(JsonElement e)
    {
        string text = e.GetRawText().ReplaceLineEndings(" ");
        return text.Length > 120 ? text[..117] + "..." : text;
    }
}
