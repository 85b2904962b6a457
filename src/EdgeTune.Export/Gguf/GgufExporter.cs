using System.Globalization;
using EdgeTune.Core;
using EdgeTune.Core.Quantization;
using EdgeTune.Evaluation;
using EdgeTune.Evaluation.Runners;
using EdgeTune.Export.Licensing;
using EdgeTune.Export.Onnx;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Gguf.Quantize;
using EdgeTune.Inference;
using EdgeTune.Models.Adapters;
using EdgeTune.Models.Architectures;
using EdgeTune.Models.Conversion;
using EdgeTune.Models.Tokenizers;
using EdgeTune.Profiles.Fit;

namespace EdgeTune.Export.Gguf;

/// <summary>
/// The step between "evaluated" and "shipped": the licence gate, the float32 source (adapter merged, or the base for a
/// separate export), the fit of each candidate type on the device profile, every fitting candidate quantised with the
/// llama.cpp-identical quantiser and scored on the frozen test split through llama.cpp against base + adapter, the
/// choice, and the folder (model, adapter, fit table, MODEL_CARD.md, export.json). Everything is written into a
/// temporary folder beside the target and renamed into place at the end, so a refusal or a failure leaves nothing.
/// </summary>
public static class GgufExporter
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    /// <summary>A Hugging Face base converted to float32 GGUF in the temporary folder; removed before the folder ships.</summary>
    private const string ConvertedBase = "base-from-hugging-face-f32.gguf";

    public static GgufExportResult Export(GgufExportRequest request, IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        var r = request;
        Validate(r);
        string target = Path.GetFullPath(r.OutDir);

        // The cheap refusals come first: the licence (a Hugging Face folder's model card, LICENSE or config), then the
        // adapter against the base (shapes, architecture), then a Hugging Face folder's tokenizer.
        var licence = LicenceGate.Check(r.BaseModel, r.Use, r.AcceptLicence);
        var adapter = r.Adapter is null ? null : LoraAdapter.Open(r.Adapter);
        string? hfFolder = Directory.Exists(r.BaseModel) ? r.BaseModel : null;
        IReadOnlyList<KeyValuePair<string, GgufValue>>? hfVocabulary = null;
        if (hfFolder is not null)
        {
            using var hf = HfModelFolder.Open(hfFolder);
            adapter?.Bind(hf.Config, TensorMap.Tensors(hf.Config), AdapterLayout.Gguf);
            hfVocabulary = GgufVocabulary.FromHuggingFace(hfFolder);
        }
        else
        {
            using var file = GgufFile.Open(r.BaseModel);
            var config = ModelConfig.FromGguf(file);
            adapter?.Bind(config, TensorMap.Tensors(config), AdapterLayout.Gguf);
        }

        string parent = Path.GetDirectoryName(target)!;
        Directory.CreateDirectory(parent);
        string temp = Path.Combine(parent, $".{Path.GetFileName(target)}.{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(temp);
        try
        {
            if (hfFolder is not null)
            {
                // The one HF → GGUF converter, to float32 (the merge's precision) inside the temporary folder: every later
                // step (fit, merge, llama.cpp scoring) then reads one GGUF, and the copy is dropped before the folder ships.
                progress?.Report($"convert the Hugging Face folder {hfFolder} to a float32 GGUF");
                string converted = Path.Combine(temp, ConvertedBase);
                HfToGgufConverter.Convert(hfFolder, converted, GgmlType.F32, m => { foreach (var (k, v) in hfVocabulary!) m.Set(k, v); },
                    cancellationToken: cancellationToken);
                r = r with { BaseModel = converted, HuggingFaceBase = Path.GetFullPath(hfFolder) };
            }
            var result = Build(r, licence, adapter, temp, target, progress, cancellationToken);
            // Every file on disk before the folder appears under its name, and the rename durable after.
            EdgeTune.Core.IO.FolderSwap.SyncTree(temp);
            Directory.Move(temp, target);
            EdgeTune.Core.IO.DurableFiles.SyncFolder(Path.GetDirectoryName(Path.GetFullPath(target))!);
            return result;
        }
        catch
        {
            try { Directory.Delete(temp, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    private static void Validate(GgufExportRequest r)
    {
        if (Directory.Exists(r.BaseModel))
        {
            if (!File.Exists(Path.Combine(r.BaseModel, "config.json")))
                throw new EdgeTuneException($"{Path.Combine(r.BaseModel, "config.json")}: no such file (a Hugging Face model folder holds config.json, safetensors weights and tokenizer.json)");
        }
        else if (!File.Exists(r.BaseModel)) throw new EdgeTuneException($"{r.BaseModel}: no such file or folder (the base model: a GGUF file or a Hugging Face folder)");
        if (r.Adapter is not null && !File.Exists(r.Adapter) && !Directory.Exists(r.Adapter))
            throw new EdgeTuneException($"{r.Adapter}: no such file or folder (the adapter: a GGUF adapter or a PEFT folder)");
        if (!File.Exists(r.TestFile)) throw new EdgeTuneException($"{r.TestFile}: no such file (the frozen test split)");
        if (r.Type != "auto" && r.Type != OnnxCandidate.Type && !LlamaFileTypes.TryParse(r.Type, out _))
            throw new EdgeTuneException($"--type {r.Type}: choose auto, {OnnxCandidate.Type} or one of {string.Join(", ", LlamaFileTypes.All.Select(t => t.Name))}");
        if (r.Type == OnnxCandidate.Type && OnnxCandidate.NotConsideredBecause(r.Profile, r.Mode) is { } why)
            throw new EdgeTuneException($"--type {why}");
        string target = Path.GetFullPath(r.OutDir);
        if (File.Exists(target) || (Directory.Exists(target) && Directory.EnumerateFileSystemEntries(target).Any()))
            throw new EdgeTuneException($"{r.OutDir}: already exists and is not empty (choose a new --out folder)");
    }

    private static GgufExportResult Build(GgufExportRequest r, LicenceDecision licence, LoraAdapter? adapter, string temp, string target,
        IProgress<string>? progress, CancellationToken cancellationToken)
    {
        bool merged = r.Mode == GgufExportMode.Merged;
        var examples = Evaluator.ReadExamples(r.TestFile, r.Fields);
        if (examples.Count == 0) throw new EdgeTuneException($"{r.TestFile}: no test examples");
        var items = examples.Select(EvalItem.From).ToList();
        var template = Evaluator.Template(r.BaseModel, r.ChatTemplate);
        Scoring.MetricNames(r.Scoring);

        string? adapterGguf = null;
        if (!merged && adapter is not null)
        {
            adapterGguf = Path.Combine(temp, "adapter.gguf");
            if (File.Exists(r.Adapter!)) File.Copy(r.Adapter!, adapterGguf);
            else WriteAdapterGguf(r.BaseModel, adapter, adapterGguf);
        }

        // Fit: every type's bytes from the plan llama-quantize would make (they depend on the shapes only, so the base's
        // plan is the merged model's), KV cache at the context, runtime buffers; refused before anything heavy is written.
        bool onnxOnly = r.Type == OnnxCandidate.Type;
        IReadOnlyList<string> wanted = r.Type == "auto" ? GgufExportRequest.AutoCandidates : onnxOnly ? [] : [LlamaFileTypes.Name(LlamaFileTypes.Parse(r.Type))];
        var skipped = new List<string>();
        var (fit, rows) = Fit(r, r.BaseModel, adapterGguf, wanted, skipped);
        string limit = r.Profile.Budgets.MaxModelMemory is { } mb && mb.Value < r.Profile.Memory.UsableForModel.Value
            ? $"the {mb} memory budget of {r.Profile.Name}"
            : $"the {r.Profile.Memory.UsableForModel} usable memory of {r.Profile.Name}";
        void RefuseWhenNothingFits()
        {
            if (onnxOnly || rows.Any(x => x.Fits)) return;
            var smallest = rows.MinBy(x => x.Fit.TotalBytes);
            throw new EdgeTuneException(smallest.Type is null
                ? $"no candidate type can be written for {r.BaseModel}"
                : $"{r.Profile.File}: no candidate fits {limit} at context {fit.Context}: the smallest, {smallest.Type}, needs {Bytes(smallest.Fit.TotalBytes)} " +
                  $"(weights {Bytes(smallest.Fit.WeightBytes)}{(smallest.Fit.AdapterBytes > 0 ? $" + adapter {Bytes(smallest.Fit.AdapterBytes)}" : "")} + KV cache {Bytes(smallest.Fit.KvCacheBytes)} + runtime {Bytes(smallest.Fit.OverheadBytes)})");
        }
        RefuseWhenNothingFits();

        // The float32 source every candidate is quantised from: merged, or the base alone (dequantised if it was quantised).
        string source = Path.Combine(temp, "source-f32.gguf");
        progress?.Report(merged && adapter is not null ? "merge the adapter into the base (float32)" : "base as float32");
        MergedGgufWriter.Write(r.BaseModel, merged ? adapter : null, source, r.ChatTemplate, null, cancellationToken);
        // Planned again from the quantiser's real input: a quantised base's own row counts its file's bytes, which another
        // tool's mix may have made differ from the plan; the table must state what will be written.
        skipped.Clear();
        (fit, rows) = Fit(r, source, adapterGguf, wanted, skipped);
        // The ONNX int4 folder, from the same merged float32 source. It is sized after the GGUF refusal above: with its
        // float32 embedding and KV cache it is larger than Q2_K, so a board too small for every GGUF type cannot hold it.
        string onnxDir = Path.Combine(temp, OnnxCandidate.Folder);
        FitRow? onnxFit = null;
        string? onnxSkip = r.Type == "auto" || onnxOnly ? OnnxCandidate.NotConsideredBecause(r.Profile, r.Mode) : null;
        if (onnxSkip is not null) skipped.Add(onnxSkip);
        else if (r.Type == "auto" || onnxOnly)
        {
            progress?.Report($"export {OnnxCandidate.Type} (ONNX Runtime GenAI folder) from the float32 source");
            try
            {
                OnnxExporter.Export(source, onnxDir, new OnnxExportOptions { Precision = OnnxPrecision.Int4 }, null, cancellationToken);
                onnxFit = OnnxCandidate.Fit(r.Profile, fit.Model, onnxDir, fit.Context, fit.Rows[0].OverheadBytes);
            }
            catch (EdgeTuneException e) when (!onnxOnly)
            {
                // A model the ONNX export cannot write (an architecture or head size it does not take) still ships as GGUF.
                skipped.Add($"{OnnxCandidate.Type}: the ONNX export cannot write it: {e.Message}");
            }
        }
        if (onnxOnly && onnxFit is { } only && !(only.FitsMemory && only.WithinMemoryBudget))
            throw new EdgeTuneException($"{r.Profile.File}: {OnnxCandidate.Type} does not fit {limit} at context {fit.Context}: it needs {Bytes(only.TotalBytes)} " +
                                        $"(folder {Bytes(only.WeightBytes)} + KV cache {Bytes(only.KvCacheBytes)} + runtime {Bytes(only.OverheadBytes)})");
        RefuseWhenNothingFits();

        // Score: base + adapter (the evaluated model) and every fitting candidate, on the same items, template and limits.
        string primary = Scoring.PrimaryMetric(r.Scoring);
        string evalDir = Path.Combine(temp, "eval");
        var style = new PromptStyle { SystemPrompt = r.SystemPrompt };
        string referenceName = adapter is null ? Comparer.Base : Comparer.Tuned;
        IReadOnlyList<RunnerAnswer> Answer(string name, IInferenceModel engine)
        {
            using var runner = new EvalRunner(name, engine, template, style, r.MaxNewTokens);
            var report = progress is null ? null : new RunnerProgressLines(progress);
            return runner.Run(items, Path.Combine(evalDir, $"answers-{name}.jsonl"), scoreReference: Scoring.MetricNames(r.Scoring).Any(n => n is "nll" or "perplexity"), report, cancellationToken);
        }
        var referenceAnswers = Answer(referenceName, Evaluator.OpenEngine(r.BaseModel, r.Adapter, r.Threads, Evaluator.UsesLlamaCpp(r.BaseModel, r.Adapter)));
        var reference = Scoring.Score(referenceName, $"{Path.GetFileName(r.HuggingFaceBase ?? r.BaseModel)}{(r.Adapter is null ? "" : " + " + Path.GetFileName(r.Adapter))}", referenceAnswers, r.Scoring);
        var referenceMetric = reference.Metric(primary) ?? throw new EdgeTuneException($"the primary metric {primary} was not computed for {referenceName}");

        var candidates = new List<GgufCandidate>();
        foreach (var (type, row, fits) in rows)
        {
            if (!fits)
            {
                candidates.Add(new GgufCandidate(type, row, false, $"does not fit {limit}", null, null, null));
                continue;
            }
            // One candidate on disk at a time (a 7B model's seven types would need ~40 GB); the chosen one is written again
            // at the end, and the quantiser is deterministic, so it is the file that was scored.
            string file = Path.Combine(temp, $"candidate-{type}.gguf");
            progress?.Report($"quantise {type}");
            Quantize(source, file, type);
            var answers = Answer(type, Engines.LlamaCpp(file, adapterGguf, r.Threads));
            File.Delete(file);
            var score = Scoring.Score(type, $"llama.cpp: {type}{(adapterGguf is null ? "" : " + adapter")}", answers, r.Scoring);
            var test = Comparer.Pair(type, answers, referenceName, referenceAnswers, r.Scoring).First(c => c.Metric == primary).Test;
            var value = score.Metric(primary)!.Value.Value;
            bool worse = (referenceMetric.HigherIsBetter ? value < referenceMetric.Value.Value : value > referenceMetric.Value.Value) && test.PValue < r.Alpha;
            candidates.Add(new GgufCandidate(type, row, true, null, score, test, worse));
        }
        if (onnxFit is not null)
        {
            if (!(onnxFit.FitsMemory && onnxFit.WithinMemoryBudget))
            {
                candidates.Add(new GgufCandidate(OnnxCandidate.Type, onnxFit, false, $"does not fit {limit}", null, null, null));
                Directory.Delete(onnxDir, recursive: true);
            }
            else
            {
                // Scored as the device runs it: ONNX Runtime GenAI on the folder, the same items, template and paired test.
                var answers = Answer(OnnxCandidate.Type, Engines.Onnx(onnxDir, r.Threads));
                var score = Scoring.Score(OnnxCandidate.Type, $"ONNX Runtime GenAI: {OnnxCandidate.Type} (adapter merged)", answers, r.Scoring);
                var test = Comparer.Pair(OnnxCandidate.Type, answers, referenceName, referenceAnswers, r.Scoring).First(c => c.Metric == primary).Test;
                var value = score.Metric(primary)!.Value.Value;
                bool worse = (referenceMetric.HigherIsBetter ? value < referenceMetric.Value.Value : value > referenceMetric.Value.Value) && test.PValue < r.Alpha;
                candidates.Add(new GgufCandidate(OnnxCandidate.Type, onnxFit, true, null, score, test, worse) { Runtime = OnnxCandidate.Runtime });
            }
        }

        var (chosen, reason) = Choose(candidates, referenceName, referenceMetric.Value.Value, primary, referenceMetric.HigherIsBetter, r.Type == "auto", r.Alpha);
        progress?.Report($"chosen {chosen.Type}: {reason}");

        // The chosen type written for good, the source dropped; the file's weight bytes must be the fit's. An ONNX choice
        // ships the folder that was scored (its size is its files', counted again).
        bool onnxChosen = chosen.Type == OnnxCandidate.Type;
        if (!onnxChosen && Directory.Exists(onnxDir)) Directory.Delete(onnxDir, recursive: true);
        string modelName = onnxChosen ? OnnxCandidate.Folder : $"{(merged ? "model" : "base")}-{chosen.Type.ToLowerInvariant()}.gguf";
        string modelPath = Path.Combine(temp, modelName);
        long weightBytes;
        if (onnxChosen) weightBytes = OnnxCandidate.FolderBytes(modelPath);
        else
        {
            progress?.Report($"write {modelName}");
            Quantize(source, modelPath, chosen.Type);
            using var written = GgufFile.Open(modelPath);
            weightBytes = written.Tensors.Sum(t => t.ByteLength);
        }
        if (weightBytes != chosen.Fit.WeightBytes)
            throw new EdgeTuneException($"{modelName}: {weightBytes} bytes of tensors written, the fit planned {chosen.Fit.WeightBytes} (a bug: please report it)");
        // What quantising the merged weights cost, measured against the float32 merge before it is dropped (through
        // llama.cpp, so for GGUF types only).
        RequantisationReport? requantisation = null;
        if (merged && adapter is not null && chosen.Type != "F32" && !onnxChosen)
        {
            progress?.Report($"measure the re-quantisation error of {chosen.Type}");
            requantisation = RequantisationReport.Measure(r.BaseModel, source, modelPath, chosen.Type,
                engine => items.Take(RequantisationReport.MaxLogitPrompts).Select(i => engine.EncodePrompt(template.Apply(style.Messages(i), addGenerationPrompt: true))).ToList(), r.Threads, cancellationToken);
        }
        File.Delete(source);

        var result = new GgufExportResult(target, r.Mode, chosen.Type, Path.Combine(target, modelName), adapterGguf is null ? null : Path.Combine(target, "adapter.gguf"),
            onnxChosen ? weightBytes : new FileInfo(modelPath).Length, weightBytes, reason, primary, referenceName, reference, candidates, skipped, licence, fit.Context)
        {
            Requantisation = requantisation,
        };
        ExportCard.WriteAll(temp, r, result);
        if (r.HuggingFaceBase is not null) File.Delete(r.BaseModel);
        FlushToDisk(temp);
        return result;

        void Quantize(string from, string to, string type)
        {
            var ft = LlamaFileTypes.Parse(type);
            if (ft == LlamaFileType.AllF32) File.Copy(from, to);
            else GgufQuantizer.Run(from, to, ft, new QuantizeOptions { Threads = r.Threads }, null, cancellationToken);
        }
    }

    /// <summary>A separate export's adapter from a PEFT folder: the GGUF adapter llama.cpp attaches to the GGUF <paramref name="baseModel"/>.</summary>
    public static void WriteAdapterGguf(string baseModel, LoraAdapter adapter, string path)
    {
        using var file = GgufFile.Open(baseModel);
        var config = ModelConfig.FromGguf(file);
        // A PEFT folder names its pairs by Hugging Face weight names; the GGUF adapter by GGUF names (B's Q/K rows
        // permuted by the writer). The scale is kept exactly: alpha = scale · r, which llama.cpp divides by r again.
        var names = TensorMap.Tensors(config).ToDictionary(t => adapter.Layout == AdapterLayout.HuggingFace ? t.HfName : t.GgufName, t => t.GgufName, StringComparer.Ordinal);
        var pairs = adapter.Pairs.Select(p => p with { Name = names[p.Name] }).ToList();
        int rank = pairs.Count == 0 ? 1 : pairs[0].Rank;
        LoraAdapterWriter.WriteGguf(path, config, pairs, adapter.Scale * rank, rsLora: false, adapter.Layout);
    }

    /// <summary>Every file of the folder on disk before the folder is renamed into place (a crash after the rename finds whole files).</summary>
    private static void FlushToDisk(string folder)
    {
        foreach (var path in Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories))
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
            stream.Flush(flushToDisk: true);
        }
    }

    /// <summary>The fit of each wanted type (FitPlanner's rows), and the types the quantiser cannot write, with why.</summary>
    private static (FitReport Fit, List<(string Type, FitRow Fit, bool Fits)> Rows) Fit(GgufExportRequest r, string model, string? adapterGguf,
        IReadOnlyList<string> wanted, List<string> skipped)
    {
        var fit = FitPlanner.Plan(r.Profile, model, adapterGguf, new FitOptions { Context = r.Context });
        var rows = new List<(string Type, FitRow Fit, bool Fits)>();
        using var file = GgufFile.Open(model);
        foreach (var type in wanted)
        {
            var row = fit.Rows.FirstOrDefault(x => x.Type == type);
            var unwritable = QuantPlan.Create(file, LlamaFileTypes.Parse(type)).FirstOrDefault(p => p.Converts && !QuantCodecs.CanQuantize(p.Target));
            if (row is null || unwritable is not null)
            {
                skipped.Add($"{type}: the quantiser cannot write {(unwritable is null ? "it" : GgmlTypes.Name(unwritable.Target))}");
                continue;
            }
            rows.Add((type, row, row.FitsMemory && row.WithinMemoryBudget));
        }
        return (fit, rows);
    }

    /// <summary>
    /// Auto: the smallest candidate not worse than the reference beyond noise (its primary metric lower, by the metric's
    /// direction, with the paired test's p below alpha), else the best scoring one. An explicit type is the one scored.
    /// </summary>
    internal static (GgufCandidate Chosen, string Reason) Choose(IReadOnlyList<GgufCandidate> candidates, string reference, double referenceValue, string primary,
        bool higherIsBetter, bool auto, double alpha)
    {
        var scored = candidates.Where(c => c.Score is not null).ToList();
        string Figures(GgufCandidate c) => string.Create(C, $"{primary} {c.Score!.Metric(primary)!.Value.Value:0.###} vs {referenceValue:0.###} for {reference}, p = {c.VersusReference!.PValue:0.####}");
        if (!auto)
        {
            var only = scored.Single();
            return (only, only.WorseBeyondNoise == true
                ? $"{only.Type} as asked; it IS worse than {reference} beyond noise ({Figures(only)})"
                : $"{only.Type} as asked; not worse than {reference} beyond noise ({Figures(only)})");
        }
        var refused = scored.Where(c => c.WorseBeyondNoise == true).Select(c => $"{c.Type} ({Figures(c)})").ToList();
        string refusedText = refused.Count == 0 ? "" : $"; refused as worse than {reference} beyond noise (p < {alpha.ToString(C)}): {string.Join(", ", refused)}";
        var good = scored.Where(c => c.WorseBeyondNoise == false).ToList();
        if (good.Count > 0)
        {
            var smallest = good.MinBy(c => c.Fit.WeightBytes)!;
            return (smallest, $"the smallest type that fits and is not worse than {reference} beyond noise ({Figures(smallest)}){refusedText}");
        }
        var best = (higherIsBetter ? scored.OrderByDescending(c => c.Score!.Metric(primary)!.Value.Value) : scored.OrderBy(c => c.Score!.Metric(primary)!.Value.Value))
            .ThenByDescending(c => c.Fit.WeightBytes).First();
        return (best, $"every fitting type is worse than {reference} beyond noise; {best.Type} scores best ({Figures(best)}): ship it knowingly or choose a board with more memory{refusedText}");
    }

    internal static string Bytes(long n) => n switch
    {
        >= 1L << 30 => string.Create(C, $"{n / (double)(1L << 30):0.##} GiB"),
        >= 1L << 20 => string.Create(C, $"{n / (double)(1L << 20):0.##} MiB"),
        >= 1L << 10 => string.Create(C, $"{n / 1024.0:0.#} KiB"),
        _ => $"{n} B",
    };

    /// <summary>Runner progress as a line every tenth of the way.</summary>
    private sealed class RunnerProgressLines(IProgress<string> lines) : IProgress<RunnerProgress>
    {
        private int _decile = -1;
        public void Report(RunnerProgress value)
        {
            int decile = value.Total == 0 ? 10 : value.Done * 10 / value.Total;
            if (decile == _decile) return;
            _decile = decile;
            lines.Report($"score {value.Runner}: {value.Done}/{value.Total}");
        }
    }
}
