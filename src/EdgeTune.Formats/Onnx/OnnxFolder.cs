using System.Text.Json;
using EdgeTune.Core;

namespace EdgeTune.Formats.Onnx;

/// <summary>The decoder facts genai_config.json states, which the graph must agree with.</summary>
public sealed record GenAiDecoderConfig(string Type, string Filename, int Layers, int Heads, int KvHeads, int HeadSize, int HiddenSize, int VocabSize, int ContextLength,
    string PastKeyNames, string PastValueNames, string PresentKeyNames, string PresentValueNames)
{
    public int? BosTokenId { get; init; }
    /// <summary>model.eos_token_id (a number or a list): the ids that end generation.</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
}

/// <summary>
/// An ONNX Runtime GenAI model folder, checked before any runtime sees it: genai_config.json is there and
/// complete, every op of model.onnx is one a CPU runtime knows, the graph's inputs, outputs and attention
/// agree with the config, and every external tensor lies inside its data file. Each failure is one line
/// naming the file and the place (key, byte offset, tensor).
/// </summary>
public static class OnnxFolder
{
    public const string ConfigFile = "genai_config.json";

    /// <summary>The ops (domain, type) a llama-family decoder from GenAI's model builder or our exporter uses.</summary>
    private static readonly HashSet<(string Domain, string Op)> KnownOps =
    [
        .. new[]
        {
            "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Neg", "Sigmoid", "Tanh", "Erf", "Softmax", "MatMul", "Gemm", "Gather", "Reshape", "Shape",
            "Concat", "Slice", "Squeeze", "Unsqueeze", "Transpose", "Cast", "ReduceSum", "ReduceMean", "Constant", "ConstantOfShape", "Expand",
            "Where", "Equal", "Less", "Greater", "Range", "Split", "Identity", "LayerNormalization", "SimplifiedLayerNormalization",
            "RMSNormalization", "Max", "Min", "Trilu", "ScatterND", "GatherND", "And", "Or", "Not",
        }.Select(op => ("", op)),
        .. new[]
        {
            "GroupQueryAttention", "MatMulNBits", "SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization",
            "RotaryEmbedding", "MultiHeadAttention", "FastGelu", "QuickGelu", "Gelu", "GatherBlockQuantized",
        }.Select(op => ("com.microsoft", op)),
    ];

    public static (GenAiDecoderConfig Config, OnnxGraph Graph) Validate(string folder)
    {
        if (!Directory.Exists(folder)) throw new EdgeTuneException($"{folder}: no such folder (an ONNX model folder holds genai_config.json, model.onnx and its data)");
        var config = ReadConfig(folder);
        string modelPath = Path.Combine(folder, config.Filename);
        var (graph, _, where) = OnnxModelFile.Read(modelPath);

        foreach (var node in graph.Nodes)
            if (!KnownOps.Contains((node.Domain, node.OpType)))
                throw FileFormatException.AtOffset(modelPath, where.Nodes[node],
                    $"node '{node.Name}' uses op '{node.OpType}'{(node.Domain.Length > 0 ? $" of domain '{node.Domain}'" : "")}, which is not an op of a llama-family decoder that ONNX Runtime runs");

        CheckInterface(modelPath, graph, where, config);
        foreach (var node in graph.Nodes) CheckAttributes(modelPath, graph, where, node, config);
        CheckData(folder, modelPath, graph, where);
        return (config, graph);
    }

    private static void CheckInterface(string modelPath, OnnxGraph graph, OnnxModelFile.Positions where, GenAiDecoderConfig c)
    {
        string configPath = ConfigFile;
        OnnxValueInfo Input(string name) => graph.Inputs.FirstOrDefault(v => v.Name == name)
            ?? throw FileFormatException.AtOffset(modelPath, 0, $"graph has no input '{name}', which {configPath} names");
        OnnxValueInfo Output(string name) => graph.Outputs.FirstOrDefault(v => v.Name == name)
            ?? throw FileFormatException.AtOffset(modelPath, 0, $"graph has no output '{name}', which {configPath} names");
        Input("input_ids");
        Input("attention_mask");
        var logits = Output("logits");
        if (logits.Shape.Count != 3 || logits.Shape[2].Value is long v && v != c.VocabSize)
            throw FileFormatException.AtOffset(modelPath, where.Values[logits], $"output 'logits' has shape [{string.Join(", ", logits.Shape)}] but {configPath} says vocab_size {c.VocabSize}");
        void Cache(OnnxValueInfo cache)
        {
            if (cache.Shape.Count != 4 || cache.Shape[1].Value is long kv && kv != c.KvHeads || cache.Shape[3].Value is long d && d != c.HeadSize)
                throw FileFormatException.AtOffset(modelPath, where.Values[cache],
                    $"'{cache.Name}' has shape [{string.Join(", ", cache.Shape)}] but {configPath} says [batch, num_key_value_heads {c.KvHeads}, sequence, head_size {c.HeadSize}]");
        }
        for (int i = 0; i < c.Layers; i++)
        {
            Cache(Input(Name(c.PastKeyNames, i)));
            Cache(Input(Name(c.PastValueNames, i)));
            Cache(Output(Name(c.PresentKeyNames, i)));
            Cache(Output(Name(c.PresentValueNames, i)));
        }
        string extra = Name(c.PastKeyNames, c.Layers);
        if (graph.Inputs.FirstOrDefault(v => v.Name == extra) is { } more)
            throw FileFormatException.AtOffset(modelPath, where.Values[more], $"input '{extra}' is one layer more than {configPath}'s num_hidden_layers {c.Layers}");
    }

    private static string Name(string pattern, int layer) => pattern.Replace("%d", layer.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);

    private static void CheckAttributes(string modelPath, OnnxGraph graph, OnnxModelFile.Positions where, OnnxNode node, GenAiDecoderConfig c)
    {
        long? Int(string name) => node.Attributes.FirstOrDefault(a => a.Name == name)?.Value as long?;
        FileFormatException Bad(string problem) => FileFormatException.AtOffset(modelPath, where.Nodes[node], $"node '{node.Name}': {problem}");
        if (node.OpType == "GroupQueryAttention")
        {
            if (Int("num_heads") != c.Heads || Int("kv_num_heads") != c.KvHeads)
                throw Bad($"num_heads {Int("num_heads")}, kv_num_heads {Int("kv_num_heads")} contradict {ConfigFile} (num_attention_heads {c.Heads}, num_key_value_heads {c.KvHeads})");
        }
        else if (node.OpType == "MatMulNBits" && node.Inputs.Count >= 3)
        {
            long k = Int("K") ?? throw Bad("attribute K is missing"), n = Int("N") ?? throw Bad("attribute N is missing");
            long bits = Int("bits") ?? 4, bs = Int("block_size") ?? throw Bad("attribute block_size is missing");
            if (bs < 16 || (bs & (bs - 1)) != 0) throw Bad($"block_size {bs} is not a power of two ≥ 16");
            long blocks = (k + bs - 1) / bs;
            var b = graph.Initializers.FirstOrDefault(t => t.Name == node.Inputs[1]);
            var s = graph.Initializers.FirstOrDefault(t => t.Name == node.Inputs[2]);
            if (b is not null && !b.Dims.SequenceEqual([n, blocks, bs * bits / 8]))
                throw Bad($"B '{b.Name}' has shape [{string.Join(", ", b.Dims)}], but K {k}, N {n}, block_size {bs} need [{n}, {blocks}, {bs * bits / 8}]");
            if (s is not null && s.Elements != n * blocks)
                throw Bad($"scales '{s.Name}' has shape [{string.Join(", ", s.Dims)}], but K {k}, N {n}, block_size {bs} need [{n}, {blocks}]");
        }
        else if (node.OpType == "Gather" && node.Inputs.Count == 2 && node.Inputs[1] == "input_ids"
                 && graph.Initializers.FirstOrDefault(t => t.Name == node.Inputs[0]) is { Dims.Count: 2 } table
                 && (table.Dims[0] != c.VocabSize || table.Dims[1] != c.HiddenSize))
            throw Bad($"embedding '{table.Name}' is [{string.Join(", ", table.Dims)}] but {ConfigFile} says vocab_size {c.VocabSize}, hidden_size {c.HiddenSize}");
    }

    private static void CheckData(string folder, string modelPath, OnnxGraph graph, OnnxModelFile.Positions where)
    {
        var sizes = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var t in graph.Initializers)
        {
            int size = OnnxDataTypes.Size(t.Type);
            if (size == 0) throw FileFormatException.AtOffset(modelPath, where.Initializers[t], $"initializer '{t.Name}' has data type {(int)t.Type}, which a decoder does not use");
            if (t.Dims.Any(d => d < 0)) throw FileFormatException.AtOffset(modelPath, where.Initializers[t], $"initializer '{t.Name}' has a negative dimension");
            long bytes = t.Elements * size;
            if (t.External is { } ext)
            {
                if (ext.File.Length == 0 || Path.IsPathRooted(ext.File) || ext.File.Split('/', '\\').Contains(".."))
                    throw FileFormatException.AtOffset(modelPath, where.Initializers[t], $"initializer '{t.Name}' points at '{ext.File}', which is not a file inside the model folder");
                string dataPath = Path.Combine(folder, ext.File);
                if (!sizes.TryGetValue(ext.File, out long fileSize))
                {
                    var info = new FileInfo(dataPath);
                    if (!info.Exists) throw FileFormatException.AtOffset(modelPath, where.Initializers[t], $"initializer '{t.Name}' is stored in '{ext.File}', which does not exist");
                    sizes[ext.File] = fileSize = info.Length;
                }
                long length = ext.Length < 0 ? bytes : ext.Length;
                if (length != bytes)
                    throw FileFormatException.AtOffset(modelPath, where.Initializers[t], $"initializer '{t.Name}' [{string.Join(", ", t.Dims)}] of {t.Type} needs {bytes} bytes, its external length says {length}");
                if (ext.Offset < 0 || ext.Offset > fileSize - length)
                    throw new FileFormatException(dataPath, $"tensor '{t.Name}'", $"needs bytes {ext.Offset}..{ext.Offset + length} but the file has {fileSize} bytes (truncated?)");
            }
            else if ((t.Raw?.LongLength ?? 0) != bytes)
                throw FileFormatException.AtOffset(modelPath, where.Initializers[t], $"initializer '{t.Name}' [{string.Join(", ", t.Dims)}] needs {bytes} bytes of data, it holds {t.Raw?.LongLength ?? 0}");
        }
    }

    public static GenAiDecoderConfig ReadConfig(string folder)
    {
        string path = Path.Combine(folder, ConfigFile);
        if (!File.Exists(path)) throw new EdgeTuneException($"{path}: no such file (ONNX Runtime GenAI needs it beside model.onnx; export with 'edgetune export onnx')");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(path)); }
        catch (JsonException e) { throw new FileFormatException(path, $"line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1}", "malformed JSON"); }
        using (doc)
        {
            JsonElement Get(JsonElement e, string key, string at) =>
                e.ValueKind == JsonValueKind.Object && e.TryGetProperty(key, out var v) ? v : throw FileFormatException.AtKey(path, at, "is missing");
            int Int(JsonElement e, string key, string at) =>
                Get(e, key, at) is { ValueKind: JsonValueKind.Number } v && v.TryGetInt32(out int i) && i > 0 ? i : throw FileFormatException.AtKey(path, at, "must be a positive integer");
            string Str(JsonElement e, string key, string at, string? fallback = null) =>
                e.ValueKind == JsonValueKind.Object && e.TryGetProperty(key, out var v)
                    ? v.ValueKind == JsonValueKind.String && v.GetString()!.Length > 0 ? v.GetString()! : throw FileFormatException.AtKey(path, at, "must be a non-empty string")
                    : fallback ?? throw FileFormatException.AtKey(path, at, "is missing");
            var model = Get(doc.RootElement, "model", "model");
            var decoder = Get(model, "decoder", "model.decoder");
            var inputs = Get(decoder, "inputs", "model.decoder.inputs");
            var outputs = Get(decoder, "outputs", "model.decoder.outputs");
            string filename = Str(decoder, "filename", "model.decoder.filename");
            if (Path.IsPathRooted(filename) || filename.Contains("..", StringComparison.Ordinal))
                throw FileFormatException.AtKey(path, "model.decoder.filename", $"'{filename}' is not a file inside the folder");
            int heads = Int(decoder, "num_attention_heads", "model.decoder.num_attention_heads");
            int kvHeads = Int(decoder, "num_key_value_heads", "model.decoder.num_key_value_heads");
            if (heads % kvHeads != 0) throw FileFormatException.AtKey(path, "model.decoder.num_key_value_heads", $"{kvHeads} does not divide num_attention_heads {heads}");
            return new GenAiDecoderConfig(
                Str(model, "type", "model.type"), filename,
                Int(decoder, "num_hidden_layers", "model.decoder.num_hidden_layers"), heads, kvHeads,
                Int(decoder, "head_size", "model.decoder.head_size"), Int(decoder, "hidden_size", "model.decoder.hidden_size"),
                Int(model, "vocab_size", "model.vocab_size"), Int(model, "context_length", "model.context_length"),
                Str(inputs, "past_key_names", "model.decoder.inputs.past_key_names", "past_key_values.%d.key"),
                Str(inputs, "past_value_names", "model.decoder.inputs.past_value_names", "past_key_values.%d.value"),
                Str(outputs, "present_key_names", "model.decoder.outputs.present_key_names", "present.%d.key"),
                Str(outputs, "present_value_names", "model.decoder.outputs.present_value_names", "present.%d.value"))
            {
                BosTokenId = model.TryGetProperty("bos_token_id", out var bos) && bos.TryGetInt32(out int b) ? b : null,
                EosTokenIds = !model.TryGetProperty("eos_token_id", out var eos) ? []
                    : eos.ValueKind == JsonValueKind.Array
                        ? eos.EnumerateArray().Select(e => e.TryGetInt32(out int i) ? i : throw FileFormatException.AtKey(path, "model.eos_token_id", $"must hold integers, not {e}")).ToList()
                        : eos.TryGetInt32(out int single) ? [single] : throw FileFormatException.AtKey(path, "model.eos_token_id", "must be an integer or a list of integers"),
            };
        }
    }
}
