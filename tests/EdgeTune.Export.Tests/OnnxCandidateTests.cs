using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Evaluation;
using EdgeTune.Evaluation.Runners;
using EdgeTune.Export.Gguf;
using EdgeTune.Export.Onnx;
using EdgeTune.Formats.Gguf;
using EdgeTune.Models.Chat;
using EdgeTune.Profiles;
using EdgeTune.Profiles.Fit;
using EdgeTune.Testing;
using Xunit.Abstractions;

namespace EdgeTune.Export.Tests;

/// <summary>
/// The ONNX int4 row of `export gguf --type auto`: exported from the merged float32 model, sized with the fit arithmetic,
/// scored through ONNX Runtime GenAI (its real consumer) in the same paired test as the GGUF rows, and shipped as a folder.
/// </summary>
public class OnnxCandidateTests(ITestOutputHelper output)
{
    private static readonly ProfileLoader Profiles = new(new ProfileCatalog([Path.Combine(RealTokenizers.RepoRoot, "profiles")]));

    /// <summary>The "say hello" task: the tiny model, its test split and the adapter that solves it.</summary>
    private static GgufExportRequest Request(TempDir dir, string type, int test = 4, int wrong = 0)
    {
        TinyTask.WriteModel(dir.File("model.gguf"), "apache-2.0");
        TinyTask.WriteData(dir.File("test.jsonl"), 1000, test);
        // Two questions whose answer the model never gives: the metric is a fraction with a confidence interval of some width.
        if (wrong > 0) File.AppendAllLines(dir.File("test.jsonl"), File.ReadAllLines(dir.File("test.jsonl"))[..wrong].Select(l => l.Replace("\"hello\"", "\"goodbye\"", StringComparison.Ordinal)));
        TinyTask.WriteAdapter(dir.File("hello.gguf"), zero: false);
        return new GgufExportRequest
        {
            BaseModel = dir.File("model.gguf"), Adapter = dir.File("hello.gguf"), Type = type, Profile = Profiles.Load("x86-64-generic"),
            TestFile = dir.File("test.jsonl"), OutDir = dir.File("ship"), Scoring = new ScoringOptions(), Threads = 2,
            SystemPrompt = "Answer in one word.", MaxNewTokens = 1, // as TinyTask's recipe scores it
        };
    }

    [Fact]
    public void Auto_holds_the_ONNX_int4_row_sized_by_the_fit_arithmetic_and_scored_with_a_CI_against_base_plus_adapter()
    {
        using var dir = new TempDir();
        var request = Request(dir, "auto", test: 4, wrong: 2);
        var result = GgufExporter.Export(request);

        var onnx = Assert.Single(result.Candidates, c => c.Type == OnnxCandidate.Type);
        Assert.Equal(OnnxCandidate.Runtime, onnx.Runtime);
        Assert.True(onnx.Fits);
        var m = onnx.Score!.Metric(result.PrimaryMetric)!;
        output.WriteLine(ExportCard.TableMarkdown(result));
        Assert.Equal(6, onnx.Score.Examples);
        Assert.InRange(m.Value.Value, m.Value.Low, m.Value.High);
        Assert.True(m.Value.High > m.Value.Low, "no confidence interval");
        Assert.NotNull(onnx.VersusReference);
        Assert.Equal(4 / 6.0, m.Value.Value, 9); // the merged int4 folder still answers "hello" as base + adapter does
        Assert.Equal(4 / 6.0, result.Reference.Metric(result.PrimaryMetric)!.Value.Value, 9);
        Assert.False(onnx.WorseBeyondNoise);

        // The fit, by hand: KV cache float32 at the context (the GGUF rows' is F16, exactly half), the GGUF rows' runtime
        // estimate, the decode bound from the bandwidth over what one token reads (less than the folder: one embedding row).
        var f16 = result.Candidates.First(c => c.Type == "Q8_0").Fit;
        var shape = ModelShape.Read(dir.File("model.gguf"));
        Assert.Equal(MemoryMath.KvCacheBytes(shape, result.Context, GgmlType.F32), onnx.Fit.KvCacheBytes);
        Assert.Equal(2 * f16.KvCacheBytes, onnx.Fit.KvCacheBytes);
        Assert.Equal(f16.OverheadBytes, onnx.Fit.OverheadBytes);
        Assert.Equal(onnx.Fit.WeightBytes + onnx.Fit.KvCacheBytes + onnx.Fit.OverheadBytes, onnx.Fit.TotalBytes);
        Assert.InRange(onnx.Fit.BytesPerToken - onnx.Fit.KvCacheBytes, 1, onnx.Fit.WeightBytes - 1);
        Assert.Equal(request.Profile.Memory.Bandwidth.Value / onnx.Fit.BytesPerToken, onnx.Fit.DecodeBoundTokensPerSecond, 6);

        // Not chosen (larger than the GGUF types that also answer right): the folder is not shipped; its answers are.
        Assert.NotEqual(OnnxCandidate.Type, result.ChosenType);
        Assert.False(Directory.Exists(Path.Combine(result.Folder, OnnxCandidate.Folder)));
        Assert.True(File.Exists(Path.Combine(result.Folder, "eval", $"answers-{OnnxCandidate.Type}.jsonl")));
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(result.Folder, ExportCard.JsonFile)));
        var row = json.RootElement.GetProperty("table").EnumerateArray().Single(t => t.GetProperty("type").GetString() == OnnxCandidate.Type);
        Assert.Equal("onnxruntime-genai", row.GetProperty("runtime").GetString());
        Assert.Equal(2, row.GetProperty("ci95").GetArrayLength());
        Assert.Contains($"| {OnnxCandidate.Type} |", File.ReadAllText(Path.Combine(result.Folder, ExportCard.CardFile)));
    }

    [Fact]
    public void Chosen_ONNX_int4_ships_the_folder_that_was_scored_with_every_file_hashed()
    {
        using var dir = new TempDir();
        var result = GgufExporter.Export(Request(dir, OnnxCandidate.Type, test: 3));
        Assert.Equal(OnnxCandidate.Type, result.ChosenType);
        Assert.Equal(Path.Combine(result.Folder, OnnxCandidate.Folder), result.ModelFile);
        Assert.Null(result.AdapterFile);
        Assert.Equal(OnnxCandidate.FolderBytes(result.ModelFile), result.ModelFileBytes);
        Assert.Equal(result.WeightBytes, Assert.Single(result.Candidates).Fit.WeightBytes);
        Assert.DoesNotContain(Directory.EnumerateFiles(result.Folder), f => f.EndsWith(".gguf", StringComparison.Ordinal));

        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(result.Folder, ExportCard.JsonFile)));
        var files = json.RootElement.GetProperty("chosen").GetProperty("files").EnumerateArray()
            .ToDictionary(f => f.GetProperty("file").GetString()!, f => f.GetProperty("sha256").GetString()!);
        Assert.Equal(Directory.EnumerateFiles(result.ModelFile).Select(Path.GetFileName).Order(StringComparer.Ordinal), files.Keys);
        Assert.Contains(OnnxExporter.DataFile, files.Keys);
        string card = File.ReadAllText(Path.Combine(result.Folder, ExportCard.CardFile));
        foreach (var (file, sha) in files)
        {
            Assert.Equal(ExportCard.Sha256(Path.Combine(result.ModelFile, file)), sha);
            Assert.Contains($"`{file}`: {new FileInfo(Path.Combine(result.ModelFile, file)).Length} bytes, sha256 {sha}", card);
        }

        // The shipped folder is what ONNX Runtime GenAI loads, and it answers as it did when scored.
        using var engine = Engines.Onnx(result.ModelFile, threads: 2);
        var template = Evaluator.Template(dir.File("model.gguf"), null);
        var prompt = engine.EncodePrompt(template.Apply([new ChatMessage("system", "Answer in one word."), new ChatMessage("user", "q1000 say it")], addGenerationPrompt: true));
        Assert.Equal("hello", engine.GenerateGreedy(prompt, 1, CancellationToken.None).Text.Trim());
    }

    [Fact]
    public void The_row_is_left_out_with_the_reason_for_a_separate_export_or_a_profile_without_ONNX_Runtime()
    {
        var profile = Profiles.Load("x86-64-generic");
        Assert.Null(OnnxCandidate.NotConsideredBecause(profile, GgufExportMode.Merged));
        Assert.StartsWith("ONNX-int4: not considered in a separate export: an ONNX folder carries the adapter merged", OnnxCandidate.NotConsideredBecause(profile, GgufExportMode.Separate));

        using var dir = new TempDir();
        // The profile's name must be its file's (extends finds profiles by file name): a copy in a folder of its own.
        string toml = Path.Combine(Directory.CreateDirectory(dir.File("no-onnx")).FullName, "x86-64-generic.toml");
        File.WriteAllText(toml, File.ReadAllText(Path.Combine(RealTokenizers.RepoRoot, "profiles", "x86-64-generic.toml"))
            .Replace("onnxruntime_cpu = true", "onnxruntime_cpu = false", StringComparison.Ordinal));
        var noOnnx = Profiles.Load(toml);
        Assert.Equal($"ONNX-int4: {noOnnx.File} enables no ONNX Runtime ([runtimes] onnxruntime_cpu, onnxruntime_cuda or onnxruntime_tensorrt), so the device could not run it",
            OnnxCandidate.NotConsideredBecause(noOnnx, GgufExportMode.Merged));
        // Asked for explicitly, it is refused in one line before anything is written.
        var e = Assert.Throws<EdgeTuneException>(() => GgufExporter.Export(Request(dir, OnnxCandidate.Type, test: 1) with { Profile = noOnnx }));
        Assert.StartsWith($"--type ONNX-int4: {noOnnx.File} enables no ONNX Runtime", e.Message);
        Assert.False(Directory.Exists(dir.File("ship")));
        Assert.Empty(Directory.EnumerateDirectories(dir.Path, ".ship.*"));
    }
}
