using System.Globalization;
using System.Runtime.InteropServices;
using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Safetensors;
using EdgeTune.Models.Adapters;
using EdgeTune.Models.Architectures;
using EdgeTune.Models.Reference;
using EdgeTune.Testing;
using Xunit.Abstractions;
using EdgeTune.Core.Numerics;

namespace EdgeTune.Models.Tests;

/// <summary>
/// LoRA adapters: a PEFT adapter on the reference model equals a checkpoint merged by hand, and the same adapter
/// written as a GGUF adapter gives llama.cpp's logits (adapter attached there, not merged) on the converted model.
/// </summary>
public sealed class AdapterTests(TinyModels models, ITestOutputHelper output) : IClassFixture<TinyModels>
{
    private const int Rank = 8;
    private const double Alpha = 16;
    private static readonly string[] Modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    public static TheoryData<string, bool> Cases => new()
    {
        { "llama-gqa-tied-llama3rope", false },
        { "llama-gqa-tied-llama3rope", true },
        { "qwen2-gqa-tied", false },
        { "qwen2-gqa-tied", true },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Peft_adapter_equals_the_hand_merged_checkpoint(string name, bool rsLora)
    {
        using var dir = new TempDir();
        var o = TinyModels.Cases[name];
        var (hf, gguf) = models.Get(name);
        var lora = RandomLora(o);
        string peft = WritePeft(dir.File("peft"), lora, rsLora);
        string merged = WriteMerged(dir.File("merged"), hf, o, lora, Scale(rsLora));

        var prompt = TinyHfCheckpoint.Prompt(64, o.Vocab, seed: 21);
        var expected = ReferenceModel.FromHuggingFace(merged).Forward(prompt);
        var adapter = LoraAdapter.Open(peft);
        double onHf = LogitDistance.RelativeL2(ReferenceModel.FromHuggingFace(hf, adapter: adapter).Forward(prompt), expected);
        // On the GGUF, B's Q/K rows must follow llama.cpp's permuted layout.
        double onGguf = LogitDistance.RelativeL2(ReferenceModel.FromGguf(gguf, adapter: adapter).Forward(prompt), expected);
        double effect = LogitDistance.RelativeL2(ReferenceModel.FromHuggingFace(hf).Forward(prompt), expected);
        output.WriteLine($"{name} rsLoRA={rsLora}: PEFT on HF vs merged {onHf:E2}, PEFT on GGUF vs merged {onGguf:E2}; the adapter moves the logits by {effect:E2}");
        Assert.True(effect > 0.05, $"the adapter barely changes the logits ({effect:E2}); the test would prove nothing");
        Assert.True(onHf <= 1e-5, $"HF: relative L2 {onHf:E2}");
        Assert.True(onGguf <= 1e-5, $"GGUF: relative L2 {onGguf:E2}");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Gguf_adapter_in_llama_cpp_equals_the_reference(string name, bool rsLora)
    {
        using var dir = new TempDir();
        var o = TinyModels.Cases[name];
        var (hf, gguf) = models.Get(name);
        var lora = RandomLora(o);
        string ggufAdapter = WriteGgufAdapter(dir.File("adapter.gguf"), hf, lora, rsLora);
        var adapter = LoraAdapter.Open(ggufAdapter);
        Assert.Equal(Scale(rsLora), adapter.Scale, 5);

        var prompt = TinyHfCheckpoint.Prompt(64, o.Vocab, seed: 22);
        var ours = ReferenceModel.FromGguf(gguf, adapter: adapter).Forward(prompt);
        var llama = LlamaCpp.AllLogits(gguf, prompt, ggufAdapter);
        double vsLlama = LogitDistance.RelativeL2(ours, llama);
        // The GGUF adapter on the HF folder needs the inverse permutation; the merged checkpoint is the judge.
        string merged = WriteMerged(dir.File("merged"), hf, o, lora, Scale(rsLora));
        double onHf = LogitDistance.RelativeL2(ReferenceModel.FromHuggingFace(hf, adapter: adapter).Forward(prompt),
            ReferenceModel.FromHuggingFace(merged).Forward(prompt));
        output.WriteLine($"{name} rsLoRA={rsLora}: ours (GGUF + GGUF adapter) vs llama.cpp with the adapter attached {vsLlama:E2}; GGUF adapter on HF vs merged {onHf:E2}");
        Assert.True(vsLlama <= 1e-3, $"vs llama.cpp: relative L2 {vsLlama:E2}");
        Assert.True(onHf <= 1e-5, $"GGUF adapter on HF: relative L2 {onHf:E2}");
    }

    [Fact]
    public void Missing_adapter_weights_name_the_file()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir.File("peft"));
        File.WriteAllText(dir.File("peft/adapter_config.json"), """{"peft_type": "LORA", "r": 8, "lora_alpha": 16}""");
        var e = Assert.Throws<EdgeTuneException>(() => LoraAdapter.Open(dir.File("peft")));
        Assert.Equal($"{dir.File("peft/adapter_model.safetensors")}: no such file (a PEFT adapter folder holds adapter_model.safetensors)", e.Message);
    }

    [Fact]
    public void Shape_mismatch_and_unknown_target_name_file_and_tensor()
    {
        using var dir = new TempDir();
        var o = TinyModels.Cases["llama-mha"];
        var (hf, _) = models.Get("llama-mha");
        var lora = RandomLora(o);
        string peft = WritePeft(dir.File("peft"), lora.Select(p => p.Name.Contains("layers.1.mlp.up_proj", StringComparison.Ordinal) ? p with { A = Gaussian([Rank, 48], 1) } : p).ToList(), false);
        var e = Assert.Throws<FileFormatException>(() => ReferenceModel.FromHuggingFace(hf, adapter: LoraAdapter.Open(peft)));
        Assert.Equal($"{dir.File("peft/adapter_model.safetensors")}: tensor 'base_model.model.model.layers.1.mlp.up_proj.lora_A.weight': " +
                     "adapts [out 128, in 48] but the base weight 'model.layers.1.mlp.up_proj.weight' is [128, 64]", e.Message);

        string beyond = WritePeft(dir.File("beyond"), [.. lora, lora[0] with { Name = "model.layers.7.self_attn.q_proj.weight" }], false);
        e = Assert.Throws<FileFormatException>(() => ReferenceModel.FromHuggingFace(hf, adapter: LoraAdapter.Open(beyond)));
        Assert.Contains("tensor 'base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight': targets 'model.layers.7.self_attn.q_proj.weight', which this llama model (2 layers) does not have", e.Message);

        string embed = WritePeft(dir.File("embed"), [lora[0] with { Name = "model.layers.0.self_attn.rotary.weight" }], false);
        e = Assert.Throws<FileFormatException>(() => LoraAdapter.Open(embed));
        Assert.Contains("targets 'rotary', which is not supported", e.Message);
    }

    private static double Scale(bool rsLora) => rsLora ? Alpha / Math.Sqrt(Rank) : Alpha / Rank;

    /// <summary>A: [r, in] ~ N(0, 1/in); B: [out, r] ~ N(0, 0.05²), non-zero so the adapter matters; every module of every layer.</summary>
    private static List<(string Name, float[] A, float[] B, long Out, long In)> RandomLora(TinyHfOptions o)
    {
        var list = new List<(string, float[], float[], long, long)>();
        int seed = 100;
        foreach (var (name, shape) in TinyHfCheckpoint.Tensors(o))
        {
            if (!Modules.Any(m => name.EndsWith(m + ".weight", StringComparison.Ordinal))) continue;
            long outDim = shape[0], inDim = shape[1];
            var a = Gaussian([Rank, inDim], seed++, 1 / Math.Sqrt(inDim));
            var b = Gaussian([outDim, Rank], seed++, 0.05);
            list.Add((name, a, b, outDim, inDim));
        }
        return list;
    }

    private static float[] Gaussian(long[] shape, int seed, double scale = 1)
    {
        var rng = new Random(seed);
        var v = new float[shape[0] * shape[1]];
        for (int i = 0; i < v.Length; i++)
            v[i] = (float)(scale * Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));
        return v;
    }

    private static byte[] Bytes(float[] v) => MemoryMarshal.AsBytes(v.AsSpan()).ToArray();

    private static string WritePeft(string folder, IReadOnlyList<(string Name, float[] A, float[] B, long Out, long In)> lora, bool rsLora)
    {
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "adapter_config.json"), string.Create(CultureInfo.InvariantCulture,
            $$"""{"peft_type": "LORA", "r": {{Rank}}, "lora_alpha": {{Alpha}}, "use_rslora": {{(rsLora ? "true" : "false")}}, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], "base_model_name_or_path": "tiny"}"""));
        var writer = new SafetensorsWriter();
        foreach (var (name, a, b, outDim, _) in lora)
        {
            string stem = "base_model.model." + name[..^".weight".Length];
            writer.AddTensor(stem + ".lora_A.weight", SafetensorsDType.F32, [Rank, a.Length / Rank], Bytes(a));
            writer.AddTensor(stem + ".lora_B.weight", SafetensorsDType.F32, [outDim, Rank], Bytes(b));
        }
        writer.Write(Path.Combine(folder, "adapter_model.safetensors"));
        return folder;
    }

    /// <summary>The base checkpoint with W + scale·B·A computed here in double, independently of LoraAdapter.</summary>
    private static string WriteMerged(string folder, string hf, TinyHfOptions o, IReadOnlyList<(string Name, float[] A, float[] B, long Out, long In)> lora, double scale)
    {
        Directory.CreateDirectory(folder);
        File.Copy(Path.Combine(hf, "config.json"), Path.Combine(folder, "config.json"));
        var byName = lora.ToDictionary(l => l.Name);
        var writer = new SafetensorsWriter();
        foreach (var (name, shape) in TinyHfCheckpoint.Tensors(o))
        {
            var w = TinyHfCheckpoint.Values(name, shape, o.Seed);
            if (byName.TryGetValue(name, out var l))
                for (long i = 0; i < l.Out; i++)
                    for (long j = 0; j < l.In; j++)
                    {
                        double d = 0;
                        for (int k = 0; k < Rank; k++) d += (double)l.B[i * Rank + k] * l.A[k * l.In + j];
                        w[i * l.In + j] = (float)(w[i * l.In + j] + scale * d);
                    }
            writer.AddTensor(name, SafetensorsDType.F32, shape, Bytes(w));
        }
        writer.Write(Path.Combine(folder, "model.safetensors"));
        return folder;
    }

    /// <summary>convert_lora_to_gguf.py's layout: lora_a ne=[in, r], lora_b ne=[r, out], B's rows permuted for llama's Q/K; rsLoRA as alpha·√r.</summary>
    private static string WriteGgufAdapter(string path, string hf, IReadOnlyList<(string Name, float[] A, float[] B, long Out, long In)> lora, bool rsLora)
    {
        var config = ModelConfig.FromHuggingFace(hf);
        var specs = TensorMap.Tensors(config).ToDictionary(s => s.HfName);
        var writer = new GgufWriter();
        writer.Metadata.Set("general.architecture", GgufValue.String(config.Architecture));
        writer.Metadata.Set("general.type", GgufValue.String("adapter"));
        writer.Metadata.Set("adapter.type", GgufValue.String("lora"));
        writer.Metadata.Set("adapter.lora.alpha", GgufValue.F32((float)(rsLora ? Alpha * Math.Sqrt(Rank) : Alpha)));
        foreach (var (name, a, b, outDim, inDim) in lora)
        {
            var spec = specs[name];
            var rows = b;
            if (spec.PermuteHeads > 0)
            {
                rows = new float[b.Length];
                for (int i = 0; i < outDim; i++)
                    Array.Copy(b, i * Rank, rows, TensorMap.PermutedRow(i, (int)outDim, spec.PermuteHeads) * Rank, Rank);
            }
            writer.AddTensor(spec.GgufName + ".lora_a", GgmlType.F32, [inDim, Rank], Bytes(a));
            writer.AddTensor(spec.GgufName + ".lora_b", GgmlType.F32, [Rank, outDim], Bytes(rows));
        }
        writer.Write(path);
        return path;
    }
}
