using EdgeTune.Core;
using EdgeTune.Core.Numerics;
using EdgeTune.Evaluation;
using EdgeTune.Export.Gguf;
using EdgeTune.Export.Licensing;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Gguf.Quantize;
using EdgeTune.Models.Adapters;
using EdgeTune.Models.Architectures;
using EdgeTune.Profiles;
using EdgeTune.Testing;
using LLama.Native;
using Xunit.Abstractions;

namespace EdgeTune.Export.Tests;

/// <summary>
/// The GGUF export checked by its real consumer: llama.cpp runs the merged file and the base with the adapter attached
/// and their logits are compared (parity settings: F32 KV cache, no flash attention).
/// </summary>
public class GgufExportTests(ITestOutputHelper output)
{
    private static readonly ProfileLoader Profiles = new(new ProfileCatalog([Path.Combine(RealTokenizers.RepoRoot, "profiles")]));

    /// <summary>A LoRA adapter on all seven linear layers of every block, random A and B (B is not zero: the merge must matter), written as GGUF.</summary>
    private static void WriteRandomAdapter(string basePath, string path, int rank = 4, int seed = 3, string? peftFolder = null)
    {
        using var file = GgufFile.Open(basePath);
        var config = ModelConfig.FromGguf(file);
        var rng = new Random(seed);
        float Next(double scale) => (float)((rng.NextDouble() * 2 - 1) * scale);
        var pairs = new List<LoraPair>();
        foreach (var spec in TensorMap.Tensors(config).Where(s => s.Shape.Length == 2 && s.GgufName.StartsWith("blk.", StringComparison.Ordinal)))
        {
            long outDim = spec.Shape[0], inDim = spec.Shape[1];
            pairs.Add(new LoraPair(spec.GgufName, rank, inDim, outDim,
                Enumerable.Range(0, (int)(rank * inDim)).Select(_ => Next(0.3)).ToArray(),
                Enumerable.Range(0, (int)(outDim * rank)).Select(_ => Next(0.3)).ToArray()));
        }
        LoraAdapterWriter.WriteGguf(path, config, pairs, alpha: rank * 0.5, rsLora: false, AdapterLayout.Gguf);
        if (peftFolder is not null) LoraAdapterWriter.WritePeft(peftFolder, config, pairs, rank * 0.5, rsLora: false, dropout: 0, AdapterLayout.Gguf, basePath);
    }

    private static GgufExportRequest Request(TempDir dir, string adapter, string type) => new()
    {
        BaseModel = dir.File("model.gguf"),
        Adapter = adapter,
        Type = type,
        Profile = Profiles.Load("x86-64-generic"),
        TestFile = dir.File("test.jsonl"),
        OutDir = dir.File("ship-" + type),
        Scoring = new ScoringOptions(),
        MaxNewTokens = 2,
        Threads = 2,
    };

    private static int[] Prompt() => TinyHfCheckpoint.Prompt(24, TinyTask.Config.VocabSize, seed: 9);

    [Fact]
    public void Merged_F32_export_gives_llama_cpp_the_logits_of_the_base_with_the_adapter_attached()
    {
        using var dir = new TempDir();
        TinyTask.WriteModel(dir.File("model.gguf"), "apache-2.0");
        TinyTask.WriteData(dir.File("test.jsonl"), 1000, 3);
        string adapter = dir.File("adapter.gguf");
        WriteRandomAdapter(dir.File("model.gguf"), adapter);

        var result = GgufExporter.Export(Request(dir, adapter, "F32"));
        Assert.Equal("F32", result.ChosenType);
        var merged = LlamaCpp.AllLogits(result.ModelFile, Prompt());
        var attached = LlamaCpp.AllLogits(dir.File("model.gguf"), Prompt(), adapter);
        var plain = LlamaCpp.AllLogits(dir.File("model.gguf"), Prompt());
        double parity = LogitDistance.RelativeL2(merged, attached), effect = LogitDistance.RelativeL2(plain, attached);
        output.WriteLine($"merged F32 vs base + adapter: relative L2 {parity:E2}; the adapter's own effect {effect:E2}");
        Assert.True(effect > 0.05, $"the adapter changes the logits by only {effect:E2}: the comparison would prove nothing");
        Assert.True(parity <= 1e-4, $"merged F32 vs base + adapter: relative L2 {parity:E2} > 1e-4");
    }

    [Fact]
    public void A_quantised_base_is_dequantised_before_the_merge()
    {
        using var dir = new TempDir();
        string f32 = dir.File("f32.gguf"), q8 = dir.File("model.gguf"), dequantised = dir.File("dequantised.gguf");
        TinyTask.WriteModel(f32, "apache-2.0");
        GgufQuantizer.Run(f32, q8, LlamaFileType.MostlyQ8_0);
        TinyTask.WriteData(dir.File("test.jsonl"), 1000, 2);
        string adapter = dir.File("adapter.gguf");
        WriteRandomAdapter(q8, adapter);

        var result = GgufExporter.Export(Request(dir, adapter, "F32"));
        MergedGgufWriter.Write(q8, null, dequantised);
        var merged = LlamaCpp.AllLogits(result.ModelFile, Prompt());
        double exact = LogitDistance.RelativeL2(merged, LlamaCpp.AllLogits(dequantised, Prompt(), adapter));
        // llama.cpp runs Q8_0 weights with Q8_0-quantised activations: that, not the merge, is the rest of the difference.
        double activationNoise = LogitDistance.RelativeL2(LlamaCpp.AllLogits(q8, Prompt()), LlamaCpp.AllLogits(dequantised, Prompt()));
        double attached = LogitDistance.RelativeL2(merged, LlamaCpp.AllLogits(q8, Prompt(), adapter));
        output.WriteLine($"merged from Q8_0 vs dequantised base + adapter {exact:E2}; vs Q8_0 base + adapter {attached:E2}; Q8_0 activation noise {activationNoise:E2}");
        Assert.True(exact <= 1e-4, $"merged vs the dequantised base with the adapter attached: {exact:E2} > 1e-4");
        Assert.True(attached <= 3 * activationNoise + 1e-4, $"merged vs Q8_0 base + adapter {attached:E2}, beyond Q8_0's own noise {activationNoise:E2}");
    }

    [Fact]
    public void A_QLoRA_base_is_merged_against_its_own_blocks_and_the_re_quantisation_error_is_reported()
    {
        // A QLoRA run with base_quant = "q8_0" over a Q8_0 GGUF trains against the stored blocks; shipping Q8_0 again
        // quantises the merge of exactly those blocks.
        using var dir = new TempDir();
        string f32 = dir.File("f32.gguf"), q8 = dir.File("model.gguf"), mergedF32 = dir.File("merged-f32.gguf");
        TinyTask.WriteModel(f32, "apache-2.0");
        GgufQuantizer.Run(f32, q8, LlamaFileType.MostlyQ8_0);
        TinyTask.WriteData(dir.File("test.jsonl"), 1000, 3);
        string adapter = dir.File("adapter.gguf");
        WriteRandomAdapter(q8, adapter);

        var result = GgufExporter.Export(Request(dir, adapter, "Q8_0"));
        var q = Assert.IsType<RequantisationReport>(result.Requantisation);
        Assert.Equal("Q8_0", q.BaseType);
        Assert.True(q.SameTypeAsBase);
        Assert.Equal(["token_embd", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "output"], q.Groups.Select(g => g.Group));
        Assert.All(q.Groups, g => Assert.Equal("q8_0", g.Types));
        Assert.Equal(2, q.Groups.Single(g => g.Group == "attn_q").Tensors);

        // Checked independently: attn_q's error from the merged float32 model and the shipped file, read here.
        MergedGgufWriter.Write(q8, EdgeTune.Models.Adapters.LoraAdapter.Open(adapter), mergedF32, TinyTask.ChatMl);
        double diff = 0, norm = 0;
        using (var exact = GgufFile.Open(mergedF32))
        using (var shipped = GgufFile.Open(result.ModelFile))
            foreach (var t in shipped.Tensors.Where(t => RequantisationReport.GroupOf(t.Name) == "attn_q"))
            {
                var a = new float[t.ElementCount];
                var b = new float[t.ElementCount];
                exact.ReadRows(exact.FindTensor(t.Name)!, 0, a);
                shipped.ReadRows(t, 0, b);
                for (int i = 0; i < a.Length; i++) { diff += ((double)b[i] - a[i]) * ((double)b[i] - a[i]); norm += (double)a[i] * a[i]; }
            }
        double attnQ = Math.Sqrt(diff / norm);
        output.WriteLine(q.Markdown());
        Assert.Equal(attnQ, q.Groups.Single(g => g.Group == "attn_q").RelativeRms, 1e-9);
        // The merge is against the base's own blocks: those the adapter does not touch come back bit for bit (Q8_0 of
        // dequantised Q8_0 is the same blocks), those it moved cost Q8_0's error of a fraction of a percent.
        Assert.All(q.Groups.Where(g => g.Group is "token_embd" or "output"), g => Assert.Equal(0, g.RelativeRms));
        Assert.All(q.Groups.Where(g => g.Group is not ("token_embd" or "output")), g => Assert.InRange(g.RelativeRms, 1e-4, 0.02));

        // The logits: the shipped file against the merged float32 model, on the test prompts, through llama.cpp.
        Assert.Equal(3, q.LogitPrompts);
        Assert.InRange(q.LogitsRelativeL2!.Value, 1e-6, 0.05);
        double own = LogitDistance.RelativeL2(LlamaCpp.AllLogits(result.ModelFile, Prompt()), LlamaCpp.AllLogits(mergedF32, Prompt()));
        Assert.InRange(q.LogitsRelativeL2.Value, own / 10, own * 10); // the same size as on any other prompt

        string json = File.ReadAllText(Path.Combine(result.Folder, ExportCard.JsonFile));
        Assert.Contains("\"same_type_as_base\": true", json);
        Assert.Contains("Re-quantisation error (the base is Q8_0 and so is the shipped file", File.ReadAllText(Path.Combine(result.Folder, ExportCard.CardFile)));
    }

    [Fact]
    public void A_Hugging_Face_folder_base_is_licence_checked_from_its_model_card_converted_and_merged()
    {
        using var dir = new TempDir();
        string tokenizerFolder = RealTokenizers.Folder("llama2");
        int vocab = EdgeTune.Models.Tokenizers.HuggingFaceTokenizer.Load(tokenizerFolder).VocabularySize;
        string hf = TinyHfCheckpoint.Write(dir.File("hf"), new TinyHfOptions { ModelType = "llama", Vocab = vocab, Hidden = 64, Heads = 4, KvHeads = 2, Tied = true, Seed = 21 });
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json" }) File.Copy(Path.Combine(tokenizerFolder, file), Path.Combine(hf, file));
        File.WriteAllText(Path.Combine(hf, "README.md"), "---\nlicense: cc-by-nc-4.0\n---\n# tiny\n");
        TinyTask.WriteData(dir.File("test.jsonl"), 1000, 2);
        // The same folder through the converter, for the adapter's shapes and as llama.cpp's reference with the adapter attached.
        string gguf = dir.File("hf-f32.gguf"), adapterGguf = dir.File("adapter.gguf"), peft = dir.File("peft");
        EdgeTune.Models.Conversion.HfToGgufConverter.Convert(hf, gguf, GgmlType.F32, m =>
        {
            foreach (var (k, v) in EdgeTune.Models.Tokenizers.GgufVocabulary.FromHuggingFace(hf)) m.Set(k, v);
        });
        WriteRandomAdapter(gguf, adapterGguf, peftFolder: peft);
        var request = Request(dir, peft, "F32") with { BaseModel = hf, ChatTemplate = TinyTask.ChatMl };

        // The licence is the folder's model card's: CC-BY-NC refuses commercial use before anything is written.
        var e = Assert.Throws<EdgeTuneException>(() => GgufExporter.Export(request));
        Assert.StartsWith($"{Path.Combine(hf, "README.md")}: license: licence 'cc-by-nc-4.0' (Creative Commons Attribution-NonCommercial 4.0) does not allow commercial use", e.Message);
        Assert.DoesNotContain(Directory.EnumerateFileSystemEntries(dir.Path), p => Path.GetFileName(p).Contains("ship-F32", StringComparison.Ordinal));

        var result = GgufExporter.Export(request with { Use = DeclaredUse.Research });
        Assert.Equal($"{Path.Combine(hf, "README.md")}: license", result.Licence.StatedIn);
        Assert.Equal(["MODEL_CARD.md", "eval", "export.json", "fit.json", "fit.md", "model-f32.gguf"],
            Directory.EnumerateFileSystemEntries(result.Folder).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        double d = LogitDistance.RelativeL2(LlamaCpp.AllLogits(result.ModelFile, Prompt()), LlamaCpp.AllLogits(gguf, Prompt(), adapterGguf));
        output.WriteLine($"merged from the Hugging Face folder vs its conversion + the adapter: relative L2 {d:E2}");
        Assert.True(d <= 1e-4, $"{d:E2}");
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(result.Folder, ExportCard.JsonFile)));
        Assert.Equal(Path.GetFullPath(hf), json.RootElement.GetProperty("base").GetProperty("path").GetString());
        Assert.True(json.RootElement.GetProperty("base").GetProperty("hugging_face_folder").GetBoolean());
    }

    [Fact]
    public void Separate_export_of_a_PEFT_adapter_writes_the_GGUF_adapter_llama_cpp_applies_the_same()
    {
        using var dir = new TempDir();
        TinyTask.WriteModel(dir.File("model.gguf"), "apache-2.0");
        TinyTask.WriteData(dir.File("test.jsonl"), 1000, 2);
        string gguf = dir.File("adapter.gguf"), peft = dir.File("peft");
        WriteRandomAdapter(dir.File("model.gguf"), gguf, peftFolder: peft);

        var result = GgufExporter.Export(Request(dir, peft, "F32") with { Mode = GgufExportMode.Separate });
        Assert.NotNull(result.AdapterFile);
        double d = LogitDistance.RelativeL2(LlamaCpp.AllLogits(result.ModelFile, Prompt(), result.AdapterFile), LlamaCpp.AllLogits(dir.File("model.gguf"), Prompt(), gguf));
        output.WriteLine($"exported base + adapter written from PEFT vs base + the GGUF adapter: {d:E2}");
        Assert.True(d <= 1e-5, $"{d:E2}");
    }

    [Fact]
    public void Merged_Q4_K_M_stays_within_quantisation_noise_of_the_quantised_base_with_the_adapter_and_has_llama_cpp_tensor_types()
    {
        using var dir = new TempDir();
        string basePath = dir.File("model.gguf");
        TinyTask.WriteModel(basePath, "apache-2.0");
        string adapter = dir.File("adapter.gguf");
        WriteRandomAdapter(basePath, adapter);

        string mergedF32 = dir.File("merged-f32.gguf"), mergedQ4 = dir.File("merged-q4_k_m.gguf"), baseQ4 = dir.File("base-q4_k_m.gguf");
        MergedGgufWriter.Write(basePath, EdgeTune.Models.Adapters.LoraAdapter.Open(adapter), mergedF32);
        GgufQuantizer.Run(mergedF32, mergedQ4, LlamaFileType.MostlyQ4_K_M);
        GgufQuantizer.Run(basePath, baseQ4, LlamaFileType.MostlyQ4_K_M);

        var p = Prompt();
        var exact = LlamaCpp.AllLogits(mergedF32, p);
        var quantisedMerge = LlamaCpp.AllLogits(mergedQ4, p);
        var quantisedBaseWithAdapter = LlamaCpp.AllLogits(baseQ4, p, adapter);
        // The noise of Q4_K_M on these prompts, measured both ways round the merge against the exact merged model.
        double noiseMerged = LogitDistance.RelativeL2(quantisedMerge, exact);
        double noiseBase = LogitDistance.RelativeL2(quantisedBaseWithAdapter, exact);
        double between = LogitDistance.RelativeL2(quantisedMerge, quantisedBaseWithAdapter);
        output.WriteLine($"Q4_K_M noise: merged {noiseMerged:E2}, base + adapter {noiseBase:E2}; merged vs base + adapter {between:E2}");
        Assert.True(noiseMerged > 0 && noiseBase > 0);
        Assert.True(between <= 2 * Math.Max(noiseMerged, noiseBase), $"merged Q4_K_M vs base Q4_K_M + adapter {between:E2}, over twice the quantisation noise");
        Assert.True(noiseMerged <= 1.5 * noiseBase + 1e-6, $"the merged Q4_K_M ({noiseMerged:E2}) is noisier than quantising the base alone ({noiseBase:E2}): the merge lost precision");

        // Every tensor gets the type llama.cpp's own quantiser gives it for the Q4_K_M mix.
        string llama = dir.File("llama-q4_k_m.gguf");
        LlamaCpp.Quantize(mergedF32, llama, LLamaFtype.MOSTLY_Q4_K_M);
        using var ours = GgufFile.Open(mergedQ4);
        using var theirs = GgufFile.Open(llama);
        Assert.Equal(theirs.Tensors.Select(t => (t.Name, t.Type)), ours.Tensors.Select(t => (t.Name, t.Type)));
    }

    [Fact]
    public void Auto_refuses_a_candidate_worse_than_the_reference_beyond_noise_and_says_why()
    {
        static GgufCandidate Candidate(string type, long bytes, double value, double p, bool worse) => new(type,
            new EdgeTune.Profiles.Fit.FitRow
            {
                Type = type, IsFile = false, Requantizes = false, WeightBytes = bytes, AdapterBytes = 0, KvCacheBytes = 0, OverheadBytes = 0, BitsPerWeight = 0,
                BytesPerToken = bytes, DecodeBoundTokensPerSecond = 1, FitsMemory = true, WithinMemoryBudget = true, MeetsDecodeBudget = true,
            },
            true, null,
            new RunnerResult(type, type, 20, [new MetricResult("exact_match", new EdgeTune.Evaluation.Statistics.Interval(value, value, value), true)], null, null),
            new EdgeTune.Evaluation.Statistics.PairedTest("mcnemar", value - 0.9, p), worse);
        var q8 = Candidate("Q8_0", 800, 0.9, 1, false);
        var q4 = Candidate("Q4_K_M", 450, 0.85, 0.5, false);
        var q2 = Candidate("Q2_K", 300, 0.4, 0.001, true);
        var (chosen, reason) = GgufExporter.Choose([q8, q4, q2], "tuned", 0.9, "exact_match", higherIsBetter: true, auto: true, alpha: 0.05);
        Assert.Equal("Q4_K_M", chosen.Type);
        Assert.Contains("refused as worse than tuned beyond noise (p < 0.05): Q2_K (exact_match 0.4 vs 0.9 for tuned, p = 0.001)", reason);

        var (fallback, why) = GgufExporter.Choose([q2 with { Type = "Q3_K_M" }, q2], "tuned", 0.9, "exact_match", true, true, 0.05);
        Assert.Equal("Q3_K_M", fallback.Type); // equal scores: the larger
        Assert.StartsWith("every fitting type is worse than tuned beyond noise", why);
    }

    [Fact]
    public void Licence_table_reads_ids_names_and_licence_texts()
    {
        Assert.Equal("llama3.2", LicenceTable.Find("LLaMA3.2")!.Id);
        Assert.Equal("apache-2.0", LicenceTable.Find("Apache License 2.0")!.Id);
        Assert.Null(LicenceTable.Find("my-own-licence"));
        Assert.Equal("qwen-research", LicenceTable.FromText("Qwen RESEARCH LICENSE AGREEMENT\nQwen RESEARCH LICENSE AGREEMENT Release Date: September 19, 2024")!.Id);
        Assert.Equal("cc-by-nc-nd-4.0", LicenceTable.FromText("Attribution-NonCommercial-NoDerivatives 4.0 International")!.Id);
        Assert.Equal("cc-by-nc-sa-4.0", LicenceTable.FromText("Attribution-NonCommercial-ShareAlike 4.0 International")!.Id);
        // The 2024 Qwen agreement and the 2023 Tongyi Qianwen one are different texts with different terms.
        Assert.Equal("qwen", LicenceTable.FromText("Qwen LICENSE AGREEMENT\n\nQwen LICENSE AGREEMENT Release Date: September 19, 2024")!.Id);
        Assert.Equal("tongyi-qianwen", LicenceTable.FromText("Tongyi Qianwen LICENSE AGREEMENT\n\nTongyi Qianwen Release Date: August 3, 2023")!.Id);
        Assert.Equal("tongyi-qianwen", LicenceTable.Find("tongyi-qianwen-license-agreement")!.Id);
        Assert.All(LicenceTable.Known, t => Assert.StartsWith("https://", t.Source));

        using var dir = new TempDir();
        string hf = Directory.CreateDirectory(dir.File("hf")).FullName;
        File.WriteAllText(Path.Combine(hf, "README.md"), "---\nlicense: other\nlicense_name: qwen-research\n---\n# model\n");
        var e = Assert.Throws<EdgeTuneException>(() => LicenceGate.Check(hf, DeclaredUse.Commercial, null));
        Assert.Equal($"{Path.Combine(hf, "README.md")}: license_name: licence 'qwen-research' (Qwen Research License Agreement) does not allow commercial use: " +
                     "section 2(a) grants the rights for non-commercial purposes only (section 1: research or evaluation); commercial use needs a separate licence from Alibaba Cloud (section 2(b)) (https://huggingface.co/Qwen/Qwen2.5-3B-Instruct/blob/main/LICENSE)", e.Message);
        Assert.Equal(LicenceVerdict.AllowWithObligations, LicenceGate.Check(hf, DeclaredUse.Research, null).Verdict);

        File.Delete(Path.Combine(hf, "README.md"));
        File.WriteAllText(Path.Combine(hf, "LICENSE"), "                                 Apache License\n                           Version 2.0, January 2004\n");
        var apache = LicenceGate.Check(hf, DeclaredUse.Commercial, null);
        Assert.Equal("apache-2.0", apache.Terms!.Id);
        Assert.Equal($"{Path.Combine(hf, "LICENSE")}: text", apache.StatedIn);
    }
}
