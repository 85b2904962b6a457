using System.Globalization;
using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using EdgeTune.Evaluation;
using EdgeTune.Export.Licensing;
using EdgeTune.Formats.Gguf;

namespace EdgeTune.Export.Gguf;

/// <summary>
/// The export folder's records: the candidate table (fit.json, fit.md), export.json (everything needed to reproduce and
/// audit the choice) and MODEL_CARD.md (the same for people, with the licence's obligations).
/// </summary>
public static class ExportCard
{
    public const string JsonFile = "export.json";
    public const string CardFile = "MODEL_CARD.md";
    public const string TableJsonFile = "fit.json";
    public const string TableMarkdownFile = "fit.md";

    private static readonly CultureInfo C = CultureInfo.InvariantCulture;
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static string ToolkitVersion =>
        typeof(ExportCard).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";

    internal static void WriteAll(string folder, GgufExportRequest r, GgufExportResult result)
    {
        var table = Table(result);
        Write(Path.Combine(folder, TableJsonFile), JsonSerializer.Serialize(table, Json));
        Write(Path.Combine(folder, TableMarkdownFile), TableMarkdown(result));
        Write(Path.Combine(folder, JsonFile), JsonSerializer.Serialize(Document(folder, r, result, table), Json));
        Write(Path.Combine(folder, CardFile), Card(folder, r, result));
    }

    private static void Write(string path, string text)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        stream.Write(Encoding.UTF8.GetBytes(text));
        stream.Flush(flushToDisk: true);
    }

    public static string Sha256(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    /// <summary>Each file of a shipped folder (the ONNX candidate) by its path inside the folder, with its sha256, in name order.</summary>
    public static IReadOnlyList<(string File, long Bytes, string Sha256)> FolderHashes(string folder) =>
        Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories)
            .Select(f => (File: Path.GetRelativePath(folder, f).Replace('\\', '/'), Bytes: new FileInfo(f).Length, Sha256: Sha256(f)))
            .OrderBy(f => f.File, StringComparer.Ordinal).ToList();

    private static double? Finite(double v) => double.IsFinite(v) ? Math.Round(v, 6) : null;

    /// <summary>The rows: type, size, fits, decode bound, metric with 95% CI, delta vs the reference, p.</summary>
    public static object[] Table(GgufExportResult result) => result.Candidates.Select(c =>
    {
        var m = c.Score?.Metric(result.PrimaryMetric);
        return (object)new
        {
            type = c.Type,
            runtime = c.Runtime,
            weight_bytes = c.Fit.WeightBytes,
            adapter_bytes = c.Fit.AdapterBytes,
            kv_cache_bytes = c.Fit.KvCacheBytes,
            runtime_bytes = c.Fit.OverheadBytes,
            total_bytes = c.Fit.TotalBytes,
            bits_per_weight = Math.Round(c.Fit.BitsPerWeight, 3),
            fits = c.Fits,
            decode_bound_tokens_per_s = Finite(c.Fit.DecodeBoundTokensPerSecond),
            scored = c.Score is not null,
            not_scored_because = c.NotScoredBecause,
            metric = result.PrimaryMetric,
            value = m is null ? null : Finite(m.Value.Value),
            ci95 = m is null ? null : new[] { Finite(m.Value.Low), Finite(m.Value.High) },
            delta = c.VersusReference is null ? null : Finite(c.VersusReference.Difference),
            p_value = c.VersusReference is null ? null : Finite(c.VersusReference.PValue),
            test = c.VersusReference?.Test,
            worse_beyond_noise = c.WorseBeyondNoise,
            chosen = c.Type == result.ChosenType,
        };
    }).ToArray();

    public static string TableMarkdown(GgufExportResult result)
    {
        var b = new StringBuilder();
        var refMetric = result.Reference.Metric(result.PrimaryMetric);
        b.AppendLine(C, $"Reference ({result.ReferenceName}, {result.Reference.Description}): {result.PrimaryMetric} {Metric(refMetric)}; context {result.Context} tokens.");
        b.AppendLine();
        b.AppendLine(C, $"| type | weights | total | fits | decode bound (tokens/s) | {result.PrimaryMetric} [95% CI] | delta vs {result.ReferenceName} | p | |");
        b.AppendLine("|---|---:|---:|---|---:|---|---:|---:|---|");
        foreach (var c in result.Candidates)
        {
            var m = c.Score?.Metric(result.PrimaryMetric);
            string note = c.Type == result.ChosenType ? "**chosen**" : c.WorseBeyondNoise == true ? "worse beyond noise" : c.NotScoredBecause ?? "";
            b.AppendLine(C, $"| {c.Type} | {GgufExporter.Bytes(c.Fit.WeightBytes)} | {GgufExporter.Bytes(c.Fit.TotalBytes)} | {(c.Fits ? "yes" : "no")} | {c.Fit.DecodeBoundTokensPerSecond:0.#} | " +
                             $"{(m is null ? "-" : Metric(m))} | {(c.VersusReference is null ? "-" : c.VersusReference.Difference.ToString("+0.###;-0.###;0", C))} | " +
                             $"{(c.VersusReference is null ? "-" : c.VersusReference.PValue.ToString("0.####", C))} | {note} |");
        }
        foreach (var s in result.Skipped) b.AppendLine(C, $"\nSkipped: {s}");
        if (result.Candidates.Any(c => c.Type == OnnxCandidate.Type))
            b.AppendLine("\nNote: " + OnnxCandidate.Type + " is sized from its folder's files and a float32 KV cache (the int4 export's), with the GGUF rows' runtime estimate " +
                            "(ONNX Runtime's own buffers are not modelled); it is scored through ONNX Runtime GenAI on the CPU.");
        b.AppendLine();
        b.AppendLine(C, $"Chosen: {result.ChosenType}: {result.Reason}.");
        if (result.Requantisation is { } q)
        {
            b.AppendLine();
            b.Append(q.Markdown());
        }
        return b.ToString();
    }

    private static string Metric(MetricResult? m) => m is null ? "-" : string.Create(C, $"{m.Value.Value:0.###} [{m.Value.Low:0.###}, {m.Value.High:0.###}]");

    private static (string? Name, string? Version) Dataset(string testFile)
    {
        string dir = Path.GetDirectoryName(Path.GetFullPath(testFile))!;
        string manifest = Path.Combine(dir, "manifest.json");
        return File.Exists(manifest) ? (manifest, Path.GetFileName(dir)) : (null, null);
    }

    private static object Document(string folder, GgufExportRequest r, GgufExportResult result, object[] table)
    {
        string shipped = Path.Combine(folder, Path.GetFileName(result.ModelFile));
        bool isFolder = Directory.Exists(shipped);
        string? baseName;
        using (var f = GgufFile.Open(r.BaseModel)) baseName = f.Metadata.GetString("general.name");
        var (manifest, version) = Dataset(r.TestFile);
        var profile = r.Profile;
        var l = result.Licence;
        return new
        {
            toolkit = new { name = "EdgeTune", version = ToolkitVersion },
            created_utc = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", C),
            mode = result.Mode.ToString().ToLowerInvariant(),
            @base = new
            {
                path = r.HuggingFaceBase ?? Path.GetFullPath(r.BaseModel), hugging_face_folder = r.HuggingFaceBase is not null, name = baseName,
                // A Hugging Face folder is hashed as the float32 GGUF it was converted to (one file, the weights and the vocabulary the export used).
                sha256 = Sha256(r.BaseModel), sha256_of = r.HuggingFaceBase is null ? "file" : "float32 GGUF conversion",
                licence = l.Stated, licence_read_from = l.StatedIn,
            },
            adapter = r.Adapter is null ? null : new { path = Path.GetFullPath(r.Adapter), sha256 = File.Exists(r.Adapter) ? Sha256(r.Adapter) : null },
            recipe = r.RecipeFile is null ? null : new { path = Path.GetFullPath(r.RecipeFile), sha256 = Sha256(r.RecipeFile) },
            dataset = new
            {
                test = Path.GetFullPath(r.TestFile), test_sha256 = Sha256(r.TestFile), version,
                manifest, manifest_sha256 = manifest is null ? null : Sha256(manifest),
            },
            profile = new
            {
                name = profile.Name, file = profile.File, usable_memory_bytes = (long)profile.Memory.UsableForModel.Value,
                memory_budget_bytes = profile.Budgets.MaxModelMemory is { } mb ? (long?)mb.Value : null,
                bandwidth_bytes_per_s = profile.Memory.Bandwidth.Value, context = result.Context,
            },
            licence = new
            {
                stated = l.Stated, read_from = l.StatedIn, id = l.Terms?.Id, name = l.Terms?.Name, source = l.Terms?.Source,
                use = l.Use.ToString().ToLowerInvariant(), verdict = Verdict(l.Verdict), obligations = l.Obligations, reason = l.Reason, accepted_by = l.AcceptedBy,
            },
            evaluation = new
            {
                primary_metric = result.PrimaryMetric,
                reference = new
                {
                    name = result.ReferenceName, description = result.Reference.Description, examples = result.Reference.Examples,
                    metrics = result.Reference.Metrics.ToDictionary(m => m.Name, m => new { value = Finite(m.Value.Value), ci95 = new[] { Finite(m.Value.Low), Finite(m.Value.High) } }),
                },
                candidates = result.Candidates.Where(c => c.Score is not null).ToDictionary(c => c.Type, c => c.Score!.Metrics.ToDictionary(m => m.Name,
                    m => new { value = Finite(m.Value.Value), ci95 = new[] { Finite(m.Value.Low), Finite(m.Value.High) } })),
            },
            table,
            requantisation = result.Requantisation is not { } q ? null : new
            {
                type = q.Type, base_type = q.BaseType, base_quantised = q.BaseQuantised, same_type_as_base = q.SameTypeAsBase,
                tensor_groups = q.Groups.Select(g => new { group = g.Group, types = g.Types, tensors = g.Tensors, elements = g.Elements, relative_rms_error = Finite(g.RelativeRms) }),
                logits_relative_l2 = q.LogitsRelativeL2 is { } logits ? Finite(logits) : null, logit_prompts = q.LogitPrompts,
            },
            skipped = result.Skipped,
            chosen = new
            {
                type = result.ChosenType, reason = result.Reason, file = Path.GetFileName(result.ModelFile),
                runtime = result.Candidates.First(c => c.Type == result.ChosenType).Runtime,
                file_bytes = result.ModelFileBytes, weight_bytes = result.WeightBytes, sha256 = isFolder ? null : Sha256(shipped),
                // A folder has no one hash: each of its files is hashed.
                files = isFolder ? FolderHashes(shipped).Select(f => new { file = f.File, bytes = f.Bytes, sha256 = f.Sha256 }).ToArray() : null,
                adapter_file = result.AdapterFile is null ? null : Path.GetFileName(result.AdapterFile),
            },
        };
    }

    private static string Verdict(LicenceVerdict v) => v switch
    {
        LicenceVerdict.Allow => "allow",
        LicenceVerdict.AllowWithObligations => "allow_with_obligations",
        _ => "refuse",
    };

    private static string Card(string folder, GgufExportRequest r, GgufExportResult result)
    {
        string? baseName;
        using (var f = GgufFile.Open(r.BaseModel)) baseName = f.Metadata.GetString("general.name");
        var (manifest, version) = Dataset(r.TestFile);
        var l = result.Licence;
        var b = new StringBuilder();
        b.AppendLine(C, $"# {baseName ?? Path.GetFileNameWithoutExtension(r.HuggingFaceBase ?? r.BaseModel)}{(r.Adapter is null ? "" : " (fine-tuned)")}: {result.ChosenType} for {r.Profile.DisplayName}");
        b.AppendLine();
        b.AppendLine(C, $"Exported by EdgeTune {ToolkitVersion} on {DateTime.UtcNow.ToString("yyyy-MM-dd", C)}.");
        b.AppendLine();
        b.AppendLine("## Files");
        b.AppendLine();
        string shipped = Path.Combine(folder, Path.GetFileName(result.ModelFile));
        if (Directory.Exists(shipped))
        {
            b.AppendLine(C, $"- `{Path.GetFileName(result.ModelFile)}/`: the adapter merged into the base, {result.ChosenType}, a folder ONNX Runtime GenAI loads, {GgufExporter.Bytes(result.ModelFileBytes)}:");
            foreach (var (file, bytes, sha) in FolderHashes(shipped)) b.AppendLine(C, $"  - `{file}`: {bytes} bytes, sha256 {sha}");
        }
        else
            b.AppendLine(C, $"- `{Path.GetFileName(result.ModelFile)}`: {(result.Mode == GgufExportMode.Merged ? "the adapter merged into the base" : "the base")}, {result.ChosenType}, {GgufExporter.Bytes(result.ModelFileBytes)} (sha256 {Sha256(shipped)})");
        if (result.AdapterFile is not null) b.AppendLine(C, $"- `adapter.gguf`: the LoRA adapter, applied by llama.cpp at run time (hot-swappable)");
        b.AppendLine(C, $"- `{TableMarkdownFile}`, `{TableJsonFile}`: every candidate type's fit and score; `{JsonFile}`: all of this, machine-readable; `eval/`: the answers behind the scores");
        b.AppendLine();
        b.AppendLine("## Provenance");
        b.AppendLine();
        b.AppendLine(r.HuggingFaceBase is { } hf
            ? $"- Base: {baseName ?? "(unnamed)"}, Hugging Face folder `{hf}`, converted to float32 GGUF for the export (sha256 of the conversion {Sha256(r.BaseModel)})"
            : $"- Base: {baseName ?? "(unnamed)"}, `{Path.GetFileName(r.BaseModel)}`, sha256 {Sha256(r.BaseModel)}");
        if (r.Adapter is not null) b.AppendLine(C, $"- Adapter: `{Path.GetFileName(r.Adapter)}`");
        if (r.RecipeFile is not null) b.AppendLine(C, $"- Recipe: `{Path.GetFileName(r.RecipeFile)}`, sha256 {Sha256(r.RecipeFile)}");
        string dataset = manifest is null ? "" : $"; dataset {version}, manifest sha256 {Sha256(manifest)}";
        b.AppendLine(C, $"- Test split: `{r.TestFile}` ({result.Reference.Examples} examples, sha256 {Sha256(r.TestFile)}){dataset}");
        b.AppendLine(C, $"- Profile: {r.Profile.Name} ({r.Profile.File}), context {result.Context} tokens");
        b.AppendLine();
        b.AppendLine("## Licence");
        b.AppendLine();
        b.AppendLine(C, $"- Stated: {l.Stated ?? "nothing"}{(l.StatedIn is null ? "" : $" ({l.StatedIn})")}");
        b.AppendLine(C, $"- Declared use: {l.Use.ToString().ToLowerInvariant()}; decision: {Verdict(l.Verdict).Replace('_', ' ')}: {l.Reason}");
        if (l.AcceptedBy is not null) b.AppendLine(C, $"- Accepted with --accept-licence: \"{l.AcceptedBy}\"");
        if (l.Obligations.Count > 0)
        {
            b.AppendLine("- Obligations when shipping this model:");
            foreach (var o in l.Obligations) b.AppendLine(C, $"  - {o}");
        }
        b.AppendLine();
        b.AppendLine("## Quality on the frozen test split (the artifact as the device runs it: llama.cpp; ONNX Runtime GenAI for ONNX-int4)");
        b.AppendLine();
        b.Append(TableMarkdown(result));
        return b.ToString();
    }
}
