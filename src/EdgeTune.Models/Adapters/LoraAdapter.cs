using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Safetensors;
using EdgeTune.Models.Architectures;

namespace EdgeTune.Models.Adapters;

/// <summary>Which row order an adapter's B matrices follow for Q and K (they differ only for llama.cpp's "llama" graph).</summary>
public enum AdapterLayout
{
    /// <summary>PyTorch/PEFT rows (rotate_half halves per head).</summary>
    HuggingFace,
    /// <summary>llama.cpp rows (Q/K permuted to interleaved pairs for "llama").</summary>
    Gguf,
}

/// <summary>
/// One adapted weight: A [r, in] and B [out, r], row-major as PyTorch holds them, and W' = W + Scale·B·A.
/// <see cref="Name"/> is the base weight's name in the adapter's own naming (HF for PEFT, GGUF for GGUF).
/// </summary>
public sealed record LoraPair(string Name, int Rank, long In, long Out, float[] A, float[] B);

/// <summary>
/// A LoRA adapter read from a PEFT folder (adapter_config.json + adapter_model.safetensors) or a GGUF adapter
/// (convert_lora_to_gguf.py's layout). It is merged into the base weights as they are read, so the reference
/// forward itself stays unchanged: W' = W + scale·B·A, with scale = alpha/r (alpha/√r for rsLoRA; a GGUF
/// stores rsLoRA's alpha already multiplied by √r, so llama.cpp's alpha/r gives the same).
/// </summary>
public sealed class LoraAdapter
{
    /// <summary>The linear layers an adapter may target, HF module name → GGUF tensor stem.</summary>
    private static readonly Dictionary<string, string> Targets = new(StringComparer.Ordinal)
    {
        ["q_proj"] = "attn_q", ["k_proj"] = "attn_k", ["v_proj"] = "attn_v", ["o_proj"] = "attn_output",
        ["gate_proj"] = "ffn_gate", ["up_proj"] = "ffn_up", ["down_proj"] = "ffn_down",
    };

    private LoraAdapter(string path, AdapterLayout layout, string? architecture, float scale, IReadOnlyList<LoraPair> pairs)
    {
        Path = path;
        Layout = layout;
        Architecture = architecture;
        Scale = scale;
        Pairs = pairs;
    }

    /// <summary>The adapter's file (the safetensors file of a PEFT folder), named in errors.</summary>
    public string Path { get; }
    public AdapterLayout Layout { get; }
    /// <summary>general.architecture of a GGUF adapter (null for PEFT, which does not say).</summary>
    public string? Architecture { get; }
    /// <summary>The factor on B·A (alpha/r, or alpha/√r for rsLoRA).</summary>
    public float Scale { get; }
    public IReadOnlyList<LoraPair> Pairs { get; }

    /// <summary>A PEFT folder or a .gguf adapter, told apart by whether <paramref name="path"/> is a folder.</summary>
    public static LoraAdapter Open(string path)
    {
        if (Directory.Exists(path)) return FromPeft(path);
        if (!File.Exists(path)) throw new EdgeTuneException($"{path}: no such adapter file or folder (a PEFT folder or a GGUF adapter)");
        return FromGguf(path);
    }

    public static LoraAdapter FromPeft(string folder)
    {
        string configPath = System.IO.Path.Combine(folder, "adapter_config.json");
        string weightsPath = System.IO.Path.Combine(folder, "adapter_model.safetensors");
        if (!File.Exists(configPath)) throw new EdgeTuneException($"{configPath}: no such file (a PEFT adapter folder holds adapter_config.json)");
        if (!File.Exists(weightsPath)) throw new EdgeTuneException($"{weightsPath}: no such file (a PEFT adapter folder holds adapter_model.safetensors)");

        var (rank, alpha, rsLora, targets) = ReadPeftConfig(configPath);
        float scale = (float)(rsLora ? alpha / Math.Sqrt(rank) : alpha / rank);

        using var file = SafetensorsFile.Open(weightsPath);
        var aOf = new Dictionary<string, SafetensorsTensorInfo>(StringComparer.Ordinal);
        var bOf = new Dictionary<string, SafetensorsTensorInfo>(StringComparer.Ordinal);
        foreach (var t in file.Tensors)
        {
            // PEFT saves base_model.model.<the base model's own key with .weight replaced by .lora_A.weight>.
            const string prefix = "base_model.model.";
            string name = t.Name.StartsWith(prefix, StringComparison.Ordinal) ? t.Name[prefix.Length..] : t.Name;
            if (name.EndsWith(".lora_A.weight", StringComparison.Ordinal)) aOf[name[..^".lora_A.weight".Length] + ".weight"] = t;
            else if (name.EndsWith(".lora_B.weight", StringComparison.Ordinal)) bOf[name[..^".lora_B.weight".Length] + ".weight"] = t;
            else throw new FileFormatException(weightsPath, $"tensor '{t.Name}'", "is not a LoRA A/B matrix (only lora_A/lora_B of linear layers are supported)");
        }

        var pairs = new List<LoraPair>();
        foreach (var (name, a) in aOf.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            if (!bOf.Remove(name, out var b)) throw new FileFormatException(weightsPath, $"tensor '{a.Name}'", "has no matching lora_B");
            string module = name.Split('.')[^2];
            if (!Targets.ContainsKey(module))
                throw new FileFormatException(weightsPath, $"tensor '{a.Name}'", $"targets '{module}', which is not supported (supported: {string.Join(", ", Targets.Keys)})");
            if (targets is not null && !targets.Contains(module))
                throw new FileFormatException(weightsPath, $"tensor '{a.Name}'", $"targets '{module}', which adapter_config.json's target_modules does not list");
            if (a.Shape.Length != 2 || a.Shape[0] != rank)
                throw new FileFormatException(weightsPath, $"tensor '{a.Name}'", $"shape [{string.Join(", ", a.Shape)}] is not [r={rank}, in] (per-module ranks are not supported)");
            if (b.Shape.Length != 2 || b.Shape[1] != rank)
                throw new FileFormatException(weightsPath, $"tensor '{b.Name}'", $"shape [{string.Join(", ", b.Shape)}] is not [out, r={rank}]");
            var av = new float[a.Shape[0] * a.Shape[1]];
            var bv = new float[b.Shape[0] * b.Shape[1]];
            file.ReadAsFloat32(a.Name, av);
            file.ReadAsFloat32(b.Name, bv);
            pairs.Add(new LoraPair(name, rank, a.Shape[1], b.Shape[0], av, bv));
        }
        if (bOf.Count > 0) throw new FileFormatException(weightsPath, $"tensor '{bOf.Values.First().Name}'", "has no matching lora_A");
        if (pairs.Count == 0) throw new FileFormatException(weightsPath, "tensors", "no LoRA matrices found");
        return new LoraAdapter(weightsPath, AdapterLayout.HuggingFace, null, scale, pairs);
    }

    private static (int Rank, double Alpha, bool RsLora, HashSet<string>? Targets) ReadPeftConfig(string path)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(path)); }
        catch (JsonException e) { throw new EdgeTuneException($"{path}: line {e.LineNumber + 1}: malformed JSON: {e.Message.Split('\n')[0]}", e); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw FileFormatException.AtOffset(path, 0, "adapter_config.json must be a JSON object");
            JsonElement? Get(string key) => root.TryGetProperty(key, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;
            if (Get("peft_type") is { } type && type.GetString() != "LORA")
                throw FileFormatException.AtKey(path, "peft_type", $"'{type}' is not supported (LORA only)");
            int rank = Get("r") is { ValueKind: JsonValueKind.Number } r && r.TryGetInt32(out int ri) && ri > 0
                ? ri : throw FileFormatException.AtKey(path, "r", "must be a positive integer");
            // PEFT's default lora_alpha is 8.
            double alpha = Get("lora_alpha") switch
            {
                null => 8,
                { ValueKind: JsonValueKind.Number } v => v.GetDouble(),
                { } v => throw FileFormatException.AtKey(path, "lora_alpha", $"must be a number, not {v}"),
            };
            bool rs = Get("use_rslora") switch
            {
                null => false,
                { ValueKind: JsonValueKind.True } => true,
                { ValueKind: JsonValueKind.False } => false,
                { } v => throw FileFormatException.AtKey(path, "use_rslora", $"must be true or false, not {v}"),
            };
            HashSet<string>? targets = Get("target_modules") switch
            {
                // A string is a regex (or "all-linear"); the tensors themselves then say what is adapted.
                null or { ValueKind: JsonValueKind.String } => null,
                { ValueKind: JsonValueKind.Array } v => v.EnumerateArray().Select(e => e.GetString() ?? "").ToHashSet(StringComparer.Ordinal),
                { } v => throw FileFormatException.AtKey(path, "target_modules", $"must be a list or a string, not {v.ValueKind}"),
            };
            foreach (var t in targets ?? [])
                if (!Targets.ContainsKey(t))
                    throw FileFormatException.AtKey(path, "target_modules", $"'{t}' is not supported (supported: {string.Join(", ", Targets.Keys)})");
            return (rank, alpha, rs, targets);
        }
    }

    public static LoraAdapter FromGguf(string path)
    {
        using var file = GgufFile.Open(path);
        var m = file.Metadata;
        if (m.GetString("general.type") != "adapter")
            throw FileFormatException.AtKey(path, "general.type", $"is '{m.GetString("general.type") ?? "(missing)"}', not 'adapter' (is this a model rather than an adapter?)");
        if (m.GetString("adapter.type") is { } kind && kind != "lora")
            throw FileFormatException.AtKey(path, "adapter.type", $"'{kind}' is not supported (lora only)");
        double alpha = m.Get("adapter.lora.alpha") is { } av ? av.AsDouble() : 0;

        var pairs = new List<LoraPair>();
        int rank = 0;
        foreach (var a in file.Tensors)
        {
            if (a.Name.EndsWith(".lora_b", StringComparison.Ordinal)) continue;
            if (!a.Name.EndsWith(".lora_a", StringComparison.Ordinal))
                throw new FileFormatException(path, $"tensor '{a.Name}'", "is not a LoRA matrix (<name>.weight.lora_a / .lora_b)");
            string name = a.Name[..^".lora_a".Length];
            var b = file.FindTensor(name + ".lora_b") ?? throw new FileFormatException(path, $"tensor '{a.Name}'", "has no matching lora_b");
            string stem = name.Split('.') is [_, _, var s, "weight"] ? s : "";
            if (!Targets.ContainsValue(stem))
                throw new FileFormatException(path, $"tensor '{a.Name}'", $"targets a weight that is not supported (supported: {string.Join(", ", Targets.Values)} of blk.N)");
            // ggml ne = [in, r] for A and [r, out] for B: row-major these are PyTorch's [r, in] and [out, r].
            if (a.Shape.Length != 2 || b.Shape.Length != 2 || a.Shape[1] != b.Shape[0])
                throw new FileFormatException(path, $"tensor '{b.Name}'", $"ne [{string.Join(", ", b.Shape)}] does not fit lora_a ne [{string.Join(", ", a.Shape)}] (expected [r, out] with r = lora_a ne[1])");
            int r = (int)b.Shape[0];
            if (rank != 0 && r != rank) throw new FileFormatException(path, $"tensor '{b.Name}'", $"rank {r} differs from the other tensors' {rank}");
            rank = r;
            var A = new float[a.ElementCount];
            var B = new float[b.ElementCount];
            file.ReadRows(a, 0, A);
            file.ReadRows(b, 0, B);
            pairs.Add(new LoraPair(name, r, a.Shape[0], b.Shape[1], A, B));
        }
        foreach (var b in file.Tensors.Where(t => t.Name.EndsWith(".lora_b", StringComparison.Ordinal)))
            if (file.FindTensor(b.Name[..^".lora_b".Length] + ".lora_a") is null) throw new FileFormatException(path, $"tensor '{b.Name}'", "has no matching lora_a");
        if (pairs.Count == 0) throw new FileFormatException(path, "tensors", "no LoRA matrices found");
        // llama.cpp (llama-adapter.cpp): scale = alpha ? alpha / rank : 1.
        float scale = alpha == 0 ? 1f : (float)(alpha / rank);
        return new LoraAdapter(path, AdapterLayout.Gguf, m.GetString("general.architecture"), scale, pairs);
    }

    /// <summary>
    /// The merge for a model: a function from (GGUF weight name, weights as read) to the adapted weights.
    /// <paramref name="modelLayout"/> says whether the model's Q/K rows are HF's or GGUF's; B's rows are
    /// permuted when the two layouts differ. Every adapter tensor is checked against the model here, up front.
    /// </summary>
    public Func<string, float[], float[]> Bind(ModelConfig config, IReadOnlyList<TensorSpec> specs, AdapterLayout modelLayout)
    {
        if (Architecture is not null && Architecture != config.Architecture)
            throw FileFormatException.AtKey(Path, "general.architecture", $"adapter for '{Architecture}' cannot be applied to a '{config.Architecture}' model");
        var byName = specs.ToDictionary(s => Layout == AdapterLayout.HuggingFace ? s.HfName : s.GgufName, StringComparer.Ordinal);
        var merges = new Dictionary<string, (LoraPair Pair, int PermuteHeads)>(StringComparer.Ordinal);
        foreach (var p in Pairs)
        {
            string where = Layout == AdapterLayout.HuggingFace ? $"base_model.model.{p.Name[..^".weight".Length]}.lora_A.weight" : p.Name + ".lora_a";
            if (!byName.TryGetValue(p.Name, out var spec))
                throw new FileFormatException(Path, $"tensor '{where}'", $"targets '{p.Name}', which this {config.Architecture} model ({config.Layers} layers) does not have");
            if (spec.Shape[0] != p.Out || spec.Shape[1] != p.In)
                throw new FileFormatException(Path, $"tensor '{where}'",
                    $"adapts [out {p.Out}, in {p.In}] but the base weight '{p.Name}' is [{spec.Shape[0]}, {spec.Shape[1]}]");
            // HF ↔ GGUF differ only by the Q/K permutation, and only on the output rows, which are B's.
            int heads = Layout == modelLayout ? 0 : spec.PermuteHeads;
            merges[spec.GgufName] = (p, heads);
        }
        return (ggufName, w) =>
        {
            if (!merges.TryGetValue(ggufName, out var m)) return w;
            var b = m.PermuteHeads == 0 ? m.Pair.B : PermuteRows(m.Pair.B, (int)m.Pair.Out, m.Pair.Rank, m.PermuteHeads, toGguf: modelLayout == AdapterLayout.Gguf);
            Merge(w, m.Pair.A, b, m.Pair.Rank, (int)m.Pair.In, Scale);
            return w;
        };
    }

    /// <summary>B's rows moved between layouts: HF row i is GGUF row PermutedRow(i).</summary>
    internal static float[] PermuteRows(float[] b, int rows, int rank, int heads, bool toGguf)
    {
        var result = new float[b.Length];
        for (int i = 0; i < rows; i++)
        {
            int j = TensorMap.PermutedRow(i, rows, heads);
            var (from, to) = toGguf ? (i, j) : (j, i);
            Array.Copy(b, from * rank, result, to * rank, rank);
        }
        return result;
    }

    /// <summary>w[o, :] += scale · Σ_k b[o, k] · a[k, :] (w: [out, in], a: [r, in], b: [out, r]).</summary>
    private static void Merge(float[] w, float[] a, float[] b, int rank, int inDim, float scale)
    {
        int outDim = w.Length / inDim;
        Parallel.For(0, outDim, o =>
        {
            var row = w.AsSpan(o * inDim, inDim);
            for (int k = 0; k < rank; k++)
                System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(a.AsSpan(k * inDim, inDim), scale * b[o * rank + k], row, row);
        });
    }
}
