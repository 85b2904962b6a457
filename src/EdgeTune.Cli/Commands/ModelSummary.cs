using System.Globalization;
using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Formats.Gguf;

namespace EdgeTune.Cli.Commands;

/// <summary>What `inspect` reports about any model file or folder, whatever its format.</summary>
internal sealed record ModelSummary
{
    public required string Path { get; init; }
    public required string Format { get; init; }
    public long FileSize { get; init; }
    public string? Architecture { get; init; }
    public string? Name { get; init; }
    public string? License { get; init; }
    public string? FileType { get; init; }
    /// <summary>"ggml" (innermost dimension first) or "pytorch" (outermost first).</summary>
    public required string ShapeOrder { get; init; }
    public List<MetadataEntry> Metadata { get; init; } = [];
    public List<TensorEntry> Tensors { get; init; } = [];
    public List<string> Notes { get; init; } = [];

    public long ParameterCount => Tensors.Sum(t => t.Elements);

    internal sealed record MetadataEntry(string Key, string Type, string Display, GgufValue? Value, JsonElement? Json);

    internal sealed record TensorEntry(string Name, long[] Shape, string Type, long Bytes, string? File = null)
    {
        public long Elements => Shape.Aggregate(1L, (a, b) => a * b);
    }

    public static string Bytes(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        double v = bytes;
        int u = 0;
        while (v >= 1024 && u < units.Length - 1) { v /= 1024; u++; }
        return u == 0 ? $"{bytes} B" : string.Create(CultureInfo.InvariantCulture, $"{v:0.##} {units[u]}");
    }

    public static string Count(long n) => n switch
    {
        >= 1_000_000_000 => string.Create(CultureInfo.InvariantCulture, $"{n / 1e9:0.##} B"),
        >= 1_000_000 => string.Create(CultureInfo.InvariantCulture, $"{n / 1e6:0.##} M"),
        >= 1_000 => string.Create(CultureInfo.InvariantCulture, $"{n / 1e3:0.##} K"),
        _ => n.ToString(CultureInfo.InvariantCulture),
    };

    public void WriteText(TextWriter o, int maxTensors)
    {
        o.WriteLine($"{Path}");
        o.WriteLine($"  format:       {Format}");
        o.WriteLine($"  size:         {Bytes(FileSize)} ({FileSize} bytes)");
        o.WriteLine($"  architecture: {Architecture ?? "(not stated)"}");
        if (Name is not null) o.WriteLine($"  name:         {Name}");
        o.WriteLine($"  licence:      {License ?? "(not stated)"}");
        if (FileType is not null) o.WriteLine($"  file type:    {FileType}");
        o.WriteLine($"  parameters:   {Count(ParameterCount)} ({ParameterCount})");
        foreach (var note in Notes) o.WriteLine($"  note:         {note}");

        if (Metadata.Count > 0)
        {
            o.WriteLine();
            o.WriteLine($"metadata ({Metadata.Count} keys)");
            int keyWidth = Math.Min(48, Metadata.Max(m => m.Key.Length));
            int typeWidth = Metadata.Max(m => m.Type.Length);
            foreach (var m in Metadata) o.WriteLine($"  {m.Key.PadRight(keyWidth)}  {m.Type.PadRight(typeWidth)}  {m.Display}");
        }

        o.WriteLine();
        var byType = Tensors.GroupBy(t => t.Type).OrderByDescending(g => g.Sum(t => t.Bytes));
        o.WriteLine($"tensors ({Tensors.Count}; shapes {(ShapeOrder == "ggml" ? "innermost first, as ggml" : "outermost first, as PyTorch")}): " +
                    string.Join(", ", byType.Select(g => $"{g.Key} x{g.Count()} {Bytes(g.Sum(t => t.Bytes))}")));
        if (Tensors.Count == 0) return;
        var shown = maxTensors > 0 && Tensors.Count > maxTensors ? Tensors.Take(maxTensors).ToList() : Tensors;
        int nameWidth = Math.Min(56, shown.Max(t => t.Name.Length));
        int shapeWidth = shown.Max(t => ShapeText(t.Shape).Length);
        foreach (var t in shown)
            o.WriteLine($"  {t.Name.PadRight(nameWidth)}  {ShapeText(t.Shape).PadRight(shapeWidth)}  {t.Type,-5}  {Bytes(t.Bytes),10}{(t.File is null ? "" : "  " + t.File)}");
        if (shown.Count < Tensors.Count) o.WriteLine($"  ... {Tensors.Count - shown.Count} more (use --all)");
    }

    private static string ShapeText(long[] shape) => "[" + string.Join(", ", shape) + "]";

    public void WriteJson(Stream stream)
    {
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        w.WriteString("path", Path);
        w.WriteString("format", Format);
        w.WriteNumber("file_size", FileSize);
        WriteNullable(w, "architecture", Architecture);
        WriteNullable(w, "name", Name);
        WriteNullable(w, "license", License);
        WriteNullable(w, "file_type", FileType);
        w.WriteNumber("parameters", ParameterCount);
        w.WriteString("shape_order", ShapeOrder);
        w.WriteStartArray("notes");
        foreach (var n in Notes) w.WriteStringValue(n);
        w.WriteEndArray();
        w.WriteStartObject("metadata");
        foreach (var m in Metadata)
        {
            w.WritePropertyName(m.Key);
            if (m.Value is not null) WriteGgufValue(w, m.Value);
            else if (m.Json is { } j) j.WriteTo(w);
            else w.WriteStringValue(m.Display);
        }
        w.WriteEndObject();
        w.WriteStartArray("tensors");
        foreach (var t in Tensors)
        {
            w.WriteStartObject();
            w.WriteString("name", t.Name);
            w.WriteStartArray("shape");
            foreach (var d in t.Shape) w.WriteNumberValue(d);
            w.WriteEndArray();
            w.WriteString("type", t.Type);
            w.WriteNumber("bytes", t.Bytes);
            if (t.File is not null) w.WriteString("file", t.File);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void WriteNullable(Utf8JsonWriter w, string name, string? value)
    {
        if (value is null) w.WriteNull(name);
        else w.WriteString(name, value);
    }

    // Long arrays (vocabularies) are summarised: type, length and the first items.
    private const int JsonArrayItems = 16;

    private static void WriteGgufValue(Utf8JsonWriter w, GgufValue v)
    {
        if (v.IsArray)
        {
            var array = (Array)v.Value;
            if (array.Length > JsonArrayItems)
            {
                w.WriteStartObject();
                w.WriteString("type", v.Describe());
                w.WriteNumber("length", array.Length);
                w.WritePropertyName("first");
                WriteItems(w, array, JsonArrayItems);
                w.WriteEndObject();
            }
            else WriteItems(w, array, array.Length);
            return;
        }
        WriteScalar(w, v.Value);
    }

    private static void WriteItems(Utf8JsonWriter w, Array array, int count)
    {
        w.WriteStartArray();
        for (int i = 0; i < count; i++)
        {
            var item = array.GetValue(i)!;
            if (item is GgufValue nested) WriteGgufValue(w, nested);
            else WriteScalar(w, item);
        }
        w.WriteEndArray();
    }

    private static void WriteScalar(Utf8JsonWriter w, object value)
    {
        switch (value)
        {
            case string s: w.WriteStringValue(s); break;
            case bool b: w.WriteBooleanValue(b); break;
            case float f when float.IsFinite(f): w.WriteNumberValue(f); break;
            case double d when double.IsFinite(d): w.WriteNumberValue(d); break;
            case float or double: w.WriteStringValue(Convert.ToString(value, CultureInfo.InvariantCulture)); break;
            case ulong ul: w.WriteNumberValue(ul); break;
            default: w.WriteNumberValue(Convert.ToInt64(value, CultureInfo.InvariantCulture)); break;
        }
    }

    public static ModelSummary FromGguf(string path)
    {
        using var file = GgufFile.Open(path);
        var m = file.Metadata;
        string? fileType = m.Get("general.file_type") is { } ft && !ft.IsArray && ft.Type != GgufValueType.String
            ? Formats.Gguf.Quantize.LlamaFileTypes.Name((Formats.Gguf.Quantize.LlamaFileType)ft.AsInt64())
            : null;
        return new ModelSummary
        {
            Path = path,
            Format = $"GGUF v{file.Version} (alignment {file.Alignment}, tensor data at byte {file.DataOffset})",
            FileSize = file.FileSize,
            Architecture = file.Architecture,
            Name = m.Get("general.name")?.Value as string,
            License = m.Get("general.license")?.Value as string,
            FileType = fileType,
            ShapeOrder = "ggml",
            Metadata = m.Select(kv => new MetadataEntry(kv.Key, kv.Value.Describe(), kv.Value.ToDisplayString(), kv.Value, null)).ToList(),
            Tensors = file.Tensors.Select(t => new TensorEntry(t.Name, t.Shape, GgmlTypes.Name(t.Type), t.ByteLength)).ToList(),
        };
    }
}
