using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Profiles.Fit;
using EdgeTune.Testing;

namespace EdgeTune.Cli.Tests;

/// <summary>`edgetune export gguf` as a user runs it, on the tiny "say hello" task (TinyTask) and its hand-built adapter.</summary>
public class ExportGgufCommandTests
{
    private static readonly string Shipped = Path.Combine(AppContext.BaseDirectory, "profiles");

    /// <summary>The task's recipe in <paramref name="dir"/>, its model stating <paramref name="licence"/> (null: none), and hello.gguf, the adapter that solves it.</summary>
    private static (string Recipe, string Adapter) Task(TempDir dir, string? licence, int test = 8)
    {
        string recipe = TinyTask.WriteRecipe(dir.Path, test: test);
        WriteModel(Path.Combine(dir.Path, "model.gguf"), licence);
        string adapter = Path.Combine(dir.Path, "hello.gguf");
        TinyTask.WriteAdapter(adapter, zero: false);
        return (recipe, adapter);
    }

    private static void WriteModel(string path, string? licence) => TinyTask.WriteModel(path, licence);

    /// <summary>Nothing but what the test wrote: no export folder, no temporary folder beside it.</summary>
    private static void AssertNothingLeft(TempDir dir, string outName)
    {
        Assert.False(Directory.Exists(Path.Combine(dir.Path, outName)), $"{outName} was written");
        Assert.Empty(Directory.EnumerateDirectories(dir.Path, $".{outName}.*"));
    }

    [Fact]
    public void Auto_scores_every_fitting_type_and_ships_the_smallest_not_worse_than_base_plus_adapter()
    {
        using var dir = new TempDir();
        var (recipe, adapter) = Task(dir, "apache-2.0");
        string outDir = Path.Combine(dir.Path, "ship");
        var r = CliRunner.Run("export", "gguf", recipe, "--profile", "x86-64-generic", "--adapter", adapter, "--out", outDir, "--json", "--threads", "2");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("export gguf: score Q4_K_M: 8/8", r.Stderr); // progress on stderr

        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        var table = root.GetProperty("table").EnumerateArray().ToList();
        // The profile enables ONNX Runtime: the merged model's ONNX int4 folder is a candidate beside the GGUF types.
        Assert.Equal(["F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K", "ONNX-int4"], table.Select(t => t.GetProperty("type").GetString()));
        Assert.Equal("onnxruntime-genai", table[^1].GetProperty("runtime").GetString());
        Assert.Contains("export gguf: score ONNX-int4: 8/8", r.Stderr);
        // The adapter makes the model answer "hello": base + adapter and every quantised merge (GGUF or ONNX) score 1,
        // none is worse, so the smallest is shipped.
        Assert.Equal(1.0, root.GetProperty("evaluation").GetProperty("reference").GetProperty("metrics").GetProperty("exact_match").GetProperty("value").GetDouble());
        Assert.All(table, t => Assert.True(t.GetProperty("fits").GetBoolean() && t.GetProperty("scored").GetBoolean()));
        Assert.All(table, t => Assert.Equal(1.0, t.GetProperty("value").GetDouble()));
        var smallest = table.MinBy(t => t.GetProperty("weight_bytes").GetInt64());
        var chosen = root.GetProperty("chosen");
        Assert.Equal(smallest.GetProperty("type").GetString(), chosen.GetProperty("type").GetString());

        // The chosen type's bytes are the file's: the tensors llama.cpp loads are exactly what the fit counted.
        string model = Path.Combine(outDir, chosen.GetProperty("file").GetString()!);
        var shape = ModelShape.Read(model);
        Assert.Equal(smallest.GetProperty("weight_bytes").GetInt64(), shape.WeightBytes);
        Assert.Equal(new FileInfo(model).Length, chosen.GetProperty("file_bytes").GetInt64());
        Assert.Equal(TinyTask.ChatMl, GgufFile.Open(model) is var f ? Dispose(f, f.Metadata.GetString("tokenizer.chat_template")) : null);

        Assert.Equal("apache-2.0", root.GetProperty("licence").GetProperty("id").GetString());
        Assert.Equal("allow_with_obligations", root.GetProperty("licence").GetProperty("verdict").GetString());
        Assert.Equal("x86-64-generic", root.GetProperty("profile").GetProperty("name").GetString());
        Assert.Equal(64, root.GetProperty("base").GetProperty("sha256").GetString()!.Length);
        string card = File.ReadAllText(Path.Combine(outDir, "MODEL_CARD.md"));
        Assert.Contains("give recipients a copy of the licence", card);
        Assert.Contains($"| {chosen.GetProperty("type").GetString()} |", card);
        Assert.True(File.Exists(Path.Combine(outDir, "fit.md")) && File.Exists(Path.Combine(outDir, "fit.json")));
        Assert.Equal(["MODEL_CARD.md", "export.json", "fit.json", "fit.md", chosen.GetProperty("file").GetString()!],
            Directory.GetFiles(outDir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Empty(Directory.EnumerateDirectories(dir.Path, ".ship.*"));
    }

    [Fact]
    public void Auto_refuses_Q2_K_on_a_task_it_measurably_hurts_and_says_why()
    {
        // A model with rows of 256 (so K-quants are real K-quants, not the fallbacks of narrow rows) and a thin push
        // towards "hello": base + adapter and every type down to Q3_K_M still answer "hello", Q2_K's noise tips every
        // answer. Measured on this model: the adapter alone fails below a strength of 0.02, Q2_K fails from 0.025 to
        // 0.03, every type passes at 0.035; 0.0275 sits in the middle of the window.
        using var dir = new TempDir();
        string recipe = TinyTask.WriteRecipe(dir.Path, test: 8);
        var wide = TinyTask.Config with { Embedding = 256, FeedForward = 512 };
        TinyTask.WriteModel(Path.Combine(dir.Path, "model.gguf"), "apache-2.0", wide);
        string adapter = Path.Combine(dir.Path, "thin.gguf");
        TinyTask.WriteAdapter(adapter, zero: false, wide, strength: 0.0275);
        var r = CliRunner.Run("export", "gguf", recipe, "--profile", "x86-64-generic", "--adapter", adapter, "--out", Path.Combine(dir.Path, "ship"), "--json", "--threads", "2");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        var rows = doc.RootElement.GetProperty("table").EnumerateArray().ToDictionary(t => t.GetProperty("type").GetString()!);
        Assert.Equal(1.0, doc.RootElement.GetProperty("evaluation").GetProperty("reference").GetProperty("metrics").GetProperty("exact_match").GetProperty("value").GetDouble());
        Assert.Equal(1.0, rows["Q3_K_M"].GetProperty("value").GetDouble());
        Assert.Equal(0.0, rows["Q2_K"].GetProperty("value").GetDouble());
        Assert.True(rows["Q2_K"].GetProperty("worse_beyond_noise").GetBoolean());
        Assert.True(rows["Q2_K"].GetProperty("p_value").GetDouble() < 0.05);
        var chosen = doc.RootElement.GetProperty("chosen");
        Assert.Equal("Q3_K_M", chosen.GetProperty("type").GetString());
        Assert.Contains("refused as worse than tuned beyond noise (p < 0.05): Q2_K (exact_match 0 vs 1 for tuned, p = ", chosen.GetProperty("reason").GetString());
    }

    [Fact]
    public void Auto_on_a_profile_without_ONNX_Runtime_leaves_the_ONNX_row_out_and_prints_why()
    {
        using var dir = new TempDir();
        var (recipe, adapter) = Task(dir, "apache-2.0", test: 2);
        string profile = Path.Combine(Directory.CreateDirectory(Path.Combine(dir.Path, "llama-only")).FullName, "x86-64-generic.toml");
        File.WriteAllText(profile, File.ReadAllText(Path.Combine(Shipped, "x86-64-generic.toml")).Replace("onnxruntime_cpu = true", "onnxruntime_cpu = false", StringComparison.Ordinal));
        string outDir = Path.Combine(dir.Path, "ship");
        var r = CliRunner.Run("export", "gguf", recipe, "--profile", profile, "--adapter", adapter, "--out", outDir, "--threads", "2");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains($"Skipped: ONNX-int4: {profile} enables no ONNX Runtime ([runtimes] onnxruntime_cpu, onnxruntime_cuda or onnxruntime_tensorrt), so the device could not run it", r.Stdout);
        Assert.DoesNotContain("| ONNX-int4 |", r.Stdout);
        Assert.DoesNotContain("ONNX", r.Stderr); // nothing exported or scored for it
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "export.json")));
        Assert.DoesNotContain(doc.RootElement.GetProperty("table").EnumerateArray(), t => t.GetProperty("type").GetString() == "ONNX-int4");
        Assert.Contains(doc.RootElement.GetProperty("skipped").EnumerateArray(), s => s.GetString()!.StartsWith("ONNX-int4: ", StringComparison.Ordinal));
    }

    private static T Dispose<T>(IDisposable d, T value)
    {
        d.Dispose();
        return value;
    }

    [Fact]
    public void Separate_ships_the_quantised_base_and_the_adapter_scored_together()
    {
        using var dir = new TempDir();
        var (recipe, adapter) = Task(dir, "mit", test: 6);
        string outDir = Path.Combine(dir.Path, "ship");
        var r = CliRunner.Run("export", "gguf", recipe, "--profile", "x86-64-generic", "--adapter", adapter, "--separate", "--type", "Q8_0", "--out", outDir, "--threads", "2");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("Chosen: Q8_0: Q8_0 as asked; not worse than tuned beyond noise", r.Stdout);
        Assert.Contains("obligation: include the copyright notice", r.Stdout);
        Assert.True(File.Exists(Path.Combine(outDir, "base-q8_0.gguf")));
        Assert.Equal(File.ReadAllBytes(adapter), File.ReadAllBytes(Path.Combine(outDir, "adapter.gguf")));
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "export.json")));
        var row = doc.RootElement.GetProperty("table")[0];
        Assert.Equal(1.0, row.GetProperty("value").GetDouble()); // the base alone says nothing useful: the adapter was applied
        Assert.True(row.GetProperty("adapter_bytes").GetInt64() > 0);
    }

    [Fact]
    public void A_profile_too_small_for_every_candidate_refuses_naming_the_smallest_requirement()
    {
        using var dir = new TempDir();
        var (recipe, adapter) = Task(dir, "apache-2.0", test: 2);
        string text = File.ReadAllText(Path.Combine(Shipped, "x86-64-generic.toml"))
            .Replace("max_model_memory = { value = 8, unit = \"GB\"", "max_model_memory = { value = 1, unit = \"MB\"", StringComparison.Ordinal);
        string profile = Path.Combine(dir.Path, "x86-64-generic.toml");
        File.WriteAllText(profile, text);
        var r = CliRunner.Run("export", "gguf", recipe, "--profile", profile, "--adapter", adapter, "--out", Path.Combine(dir.Path, "ship"));
        Assert.Equal(1, r.ExitCode);
        string line = Assert.Single(r.Stderr.TrimEnd().Split('\n'));
        Assert.True(line.StartsWith($"edgetune: {profile}: no candidate fits the 1 MB memory budget of x86-64-generic at context 512: the smallest, Q2_K, needs ", StringComparison.Ordinal), line);
        Assert.Contains("KV cache", line);
        AssertNothingLeft(dir, "ship");
    }

    [Fact]
    public void Licence_gate_refuses_non_commercial_and_unknown_licences_for_commercial_use()
    {
        using var dir = new TempDir();
        var (recipe, adapter) = Task(dir, "cc-by-nc-4.0", test: 2);
        string model = Path.Combine(dir.Path, "model.gguf");
        var nc = CliRunner.Run("export", "gguf", recipe, "--profile", "x86-64-generic", "--adapter", adapter, "--out", Path.Combine(dir.Path, "ship"));
        Assert.Equal(1, nc.ExitCode);
        Assert.Equal($"edgetune: {model}: general.license: licence 'cc-by-nc-4.0' (Creative Commons Attribution-NonCommercial 4.0) does not allow commercial use: " +
                     "section 2(a)(1) grants the rights for NonCommercial purposes only; section 1 defines NonCommercial as \"not primarily intended for or directed towards commercial advantage or monetary compensation\" " +
                     "(https://creativecommons.org/licenses/by-nc/4.0/legalcode)", nc.Stderr.TrimEnd());
        AssertNothingLeft(dir, "ship");
        // [export] use = "internal" in the recipe is still commercial advantage.
        File.AppendAllText(recipe, "\n[export]\nuse = \"internal\"\n");
        var internalUse = CliRunner.Run("export", "gguf", recipe, "--profile", "x86-64-generic", "--adapter", adapter, "--out", Path.Combine(dir.Path, "ship"));
        Assert.Equal(1, internalUse.ExitCode);
        Assert.Contains("does not allow internal use", internalUse.Stderr);

        WriteModel(model, licence: null);
        var unknown = CliRunner.Run("export", "gguf", recipe, "--profile", "x86-64-generic", "--adapter", adapter, "--use", "commercial", "--out", Path.Combine(dir.Path, "ship"));
        Assert.Equal(1, unknown.ExitCode);
        Assert.StartsWith($"edgetune: {model}: states no licence", unknown.Stderr);
        Assert.Contains("--accept-licence", unknown.Stderr);
        AssertNothingLeft(dir, "ship");

        var accepted = CliRunner.Run("export", "gguf", recipe, "--profile", "x86-64-generic", "--adapter", adapter, "--use", "commercial", "--type", "Q8_0",
            "--accept-licence", "J. Doe (ACME legal), read the vendor's terms 2026-12-01", "--out", Path.Combine(dir.Path, "ship"));
        Assert.True(accepted.ExitCode == 0, accepted.Stderr);
        Assert.Contains("Accepted with --accept-licence: \"J. Doe (ACME legal), read the vendor's terms 2026-12-01\"", File.ReadAllText(Path.Combine(dir.Path, "ship", "MODEL_CARD.md")));
    }

    [Fact]
    public void Bad_input_is_one_line_naming_the_file_and_the_key_and_leaves_nothing()
    {
        using var dir = new TempDir();
        var (recipe, adapter) = Task(dir, "apache-2.0", test: 2);
        string ship = Path.Combine(dir.Path, "ship");

        // A recipe without a test split.
        string noTest = Path.Combine(dir.Path, "no-test.toml");
        File.WriteAllText(noTest, File.ReadAllText(recipe).Replace("test = \"test.jsonl\"\n", "", StringComparison.Ordinal));
        var r1 = CliRunner.Run("export", "gguf", noTest, "--profile", "x86-64-generic", "--adapter", adapter, "--out", ship);
        Assert.Equal(1, r1.ExitCode);
        Assert.Equal($"edgetune: {noTest}: no test split: set [eval] test or [data] test", r1.Stderr.TrimEnd());

        // An adapter for another base: its tensors have another shape.
        string other = Path.Combine(dir.Path, "other-base.gguf");
        string otherAdapter = Path.Combine(dir.Path, "other.gguf");
        var wide = TinyTask.Config with { Embedding = 128 };
        var pair = new EdgeTune.Models.Adapters.LoraPair("blk.0.attn_q.weight", 2, wide.Embedding, wide.Embedding, new float[2 * wide.Embedding], new float[wide.Embedding * 2]);
        TinyLlama.WriteGguf(other, wide);
        using (var f = GgufFile.Open(other))
            EdgeTune.Models.Adapters.LoraAdapterWriter.WriteGguf(otherAdapter, EdgeTune.Models.Architectures.ModelConfig.FromGguf(f), [pair], 2, false, EdgeTune.Models.Adapters.AdapterLayout.Gguf);
        var r2 = CliRunner.Run("export", "gguf", recipe, "--profile", "x86-64-generic", "--adapter", otherAdapter, "--out", ship);
        Assert.Equal(1, r2.ExitCode);
        string line = Assert.Single(r2.Stderr.TrimEnd().Split('\n'));
        Assert.StartsWith($"edgetune: {otherAdapter}: tensor 'blk.0.attn_q.weight.lora_a': adapts [out 128, in 128] but the base weight", line);

        // A profile with an error: file, line, column and key.
        string profile = Path.Combine(dir.Path, "x86-64-generic.toml");
        File.WriteAllText(profile, File.ReadAllText(Path.Combine(Shipped, "x86-64-generic.toml")).Replace("bandwidth = { value = 51.2,", "bandwidth = { value = -1,", StringComparison.Ordinal));
        var r3 = CliRunner.Run("export", "gguf", recipe, "--profile", profile, "--adapter", adapter, "--out", ship);
        Assert.Equal(1, r3.ExitCode);
        line = Assert.Single(r3.Stderr.TrimEnd().Split('\n'));
        Assert.Matches($"^edgetune: {System.Text.RegularExpressions.Regex.Escape(profile)}:\\d+:\\d+: memory.bandwidth.value: must be greater than 0", line);

        // A folder as the base that is no Hugging Face model folder.
        string notHf = Directory.CreateDirectory(Path.Combine(dir.Path, "not-hf")).FullName;
        var r4 = CliRunner.Run("export", "gguf", recipe, "--base", notHf, "--profile", "x86-64-generic", "--adapter", adapter, "--out", ship);
        Assert.Equal(1, r4.ExitCode);
        Assert.Equal($"edgetune: {Path.Combine(notHf, "config.json")}: no such file (a Hugging Face model folder holds config.json, safetensors weights and tokenizer.json)", r4.Stderr.TrimEnd());

        // Usage errors exit 2.
        Assert.Equal(2, CliRunner.Run("export", "gguf", recipe, "--profile", "x86-64-generic", "--type", "Q9_X").ExitCode);
        Assert.Equal(2, CliRunner.Run("export", "gguf", recipe, "--profile", "x86-64-generic", "--use", "personal").ExitCode);
        AssertNothingLeft(dir, "ship");

        var help = CliRunner.Run("export", "gguf", "--help");
        Assert.Equal(0, help.ExitCode);
        Assert.Contains("--accept-licence", help.Stdout);
        Assert.Contains("ONNX-int4", help.Stdout);
    }
}
