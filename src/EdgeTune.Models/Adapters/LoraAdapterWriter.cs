using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Safetensors;
using EdgeTune.Models.Architectures;

namespace EdgeTune.Models.Adapters;

/// <summary>
/// Writes a trained LoRA adapter in the two formats its consumers read: a GGUF adapter for llama.cpp
/// (convert_lora_to_gguf.py's layout) and a PEFT folder for Hugging Face. Pairs are named by GGUF weight name
/// (blk.N.attn_q.weight), A [r, in] and B [out, r] row-major, with B's Q/K rows in <paramref name="layout"/>.
/// </summary>
public static class LoraAdapterWriter
{
    private static readonly Dictionary<string, string> HfModule = new(StringComparer.Ordinal)
    {
        ["attn_q"] = "q_proj", ["attn_k"] = "k_proj", ["attn_v"] = "v_proj", ["attn_output"] = "o_proj",
        ["ffn_gate"] = "gate_proj", ["ffn_up"] = "up_proj", ["ffn_down"] = "down_proj",
    };

    /// <summary>
    /// general.type = adapter, adapter.type = lora, adapter.lora.alpha; lora_a ne = [in, r], lora_b ne = [r, out].
    /// llama.cpp scales by alpha/r, so an rsLoRA adapter (scale alpha/√r) stores alpha·√r.
    /// </summary>
    public static void WriteGguf(string path, ModelConfig config, IReadOnlyList<LoraPair> pairs, double alpha, bool rsLora, AdapterLayout layout, string? name = null)
    {
        var specs = TensorMap.Tensors(config).ToDictionary(s => s.GgufName, StringComparer.Ordinal);
        int rank = CheckRank(pairs);
        var writer = new GgufWriter();
        writer.Metadata.Set("general.architecture", GgufValue.String(config.Architecture));
        writer.Metadata.Set("general.type", GgufValue.String("adapter"));
        if (name is not null) writer.Metadata.Set("general.name", GgufValue.String(name));
        writer.Metadata.Set("adapter.type", GgufValue.String("lora"));
        writer.Metadata.Set("adapter.lora.alpha", GgufValue.F32((float)(rsLora ? alpha * Math.Sqrt(rank) : alpha)));
        foreach (var p in pairs)
        {
            var spec = Spec(specs, p);
            var b = layout == AdapterLayout.HuggingFace && spec.PermuteHeads > 0 && config.GgufPermutesQk
                ? LoraAdapter.PermuteRows(p.B, (int)p.Out, rank, spec.PermuteHeads, toGguf: true) : p.B;
            writer.AddTensor(p.Name + ".lora_a", GgmlType.F32, [p.In, rank], Bytes(p.A));
            writer.AddTensor(p.Name + ".lora_b", GgmlType.F32, [rank, p.Out], Bytes(b));
        }
        writer.Write(path);
    }

    /// <summary>adapter_config.json and adapter_model.safetensors with PEFT's tensor names (base_model.model.&lt;HF name&gt;.lora_A.weight).</summary>
    public static void WritePeft(string folder, ModelConfig config, IReadOnlyList<LoraPair> pairs, double alpha, bool rsLora, double dropout,
        AdapterLayout layout, string baseModel)
    {
        var specs = TensorMap.Tensors(config).ToDictionary(s => s.GgufName, StringComparer.Ordinal);
        int rank = CheckRank(pairs);
        Directory.CreateDirectory(folder);
        var writer = new SafetensorsWriter();
        writer.Metadata["format"] = "pt";
        var modules = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var p in pairs.OrderBy(p => Spec(specs, p).HfName, StringComparer.Ordinal))
        {
            var spec = Spec(specs, p);
            string stem = spec.HfName[..^".weight".Length];
            modules.Add(HfModule[p.Name.Split('.')[2]]);
            var b = layout == AdapterLayout.Gguf && spec.PermuteHeads > 0 && config.GgufPermutesQk
                ? LoraAdapter.PermuteRows(p.B, (int)p.Out, rank, spec.PermuteHeads, toGguf: false) : p.B;
            writer.AddTensor($"base_model.model.{stem}.lora_A.weight", SafetensorsDType.F32, [rank, p.In], Bytes(p.A));
            writer.AddTensor($"base_model.model.{stem}.lora_B.weight", SafetensorsDType.F32, [p.Out, rank], Bytes(b));
        }
        writer.Write(Path.Combine(folder, "adapter_model.safetensors"));
        var configJson = new Dictionary<string, object?>
        {
            ["peft_type"] = "LORA",
            ["task_type"] = "CAUSAL_LM",
            ["base_model_name_or_path"] = baseModel,
            ["r"] = rank,
            ["lora_alpha"] = alpha,
            ["lora_dropout"] = dropout,
            ["use_rslora"] = rsLora,
            ["bias"] = "none",
            ["fan_in_fan_out"] = false,
            ["inference_mode"] = true,
            ["init_lora_weights"] = true,
            ["target_modules"] = modules.ToArray(),
        };
        File.WriteAllText(Path.Combine(folder, "adapter_config.json"), JsonSerializer.Serialize(configJson, new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    private static TensorSpec Spec(Dictionary<string, TensorSpec> specs, LoraPair p) =>
        specs.TryGetValue(p.Name, out var s) ? s : throw new EdgeTuneException($"adapter pair '{p.Name}' names no weight of this model");

    private static int CheckRank(IReadOnlyList<LoraPair> pairs)
    {
        if (pairs.Count == 0) throw new EdgeTuneException("an adapter needs at least one LoRA pair");
        int rank = pairs[0].Rank;
        foreach (var p in pairs)
        {
            if (p.Rank != rank) throw new EdgeTuneException(string.Create(CultureInfo.InvariantCulture, $"adapter pair '{p.Name}' has rank {p.Rank}, the others {rank}"));
            if (p.A.Length != (long)rank * p.In || p.B.Length != (long)rank * p.Out)
                throw new EdgeTuneException($"adapter pair '{p.Name}': A or B does not hold r·in or out·r values");
        }
        return rank;
    }

    private static ReadOnlyMemory<byte> Bytes(float[] values) => MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
}
