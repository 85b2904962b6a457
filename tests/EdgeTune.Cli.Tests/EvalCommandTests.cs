using System.Text.Json;
using EdgeTune.Testing;

namespace EdgeTune.Cli.Tests;

/// <summary>`edgetune baseline`, `eval` and `review` as a user runs them, on a tiny GGUF and a synthetic task.</summary>
public class EvalCommandTests
{
    [Fact]
    public void Baseline_says_whether_fine_tuning_looks_warranted_against_the_target()
    {
        using var dir = new TempDir();
        string recipe = TinyTask.WriteRecipe(dir.Path, test: 8, extraEval: "target_metric = \"exact_match\"\ntarget_value = 0.9");
        var r = CliRunner.Run("baseline", recipe, "--json", "--threads", "2");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        Assert.True(root.GetProperty("fine_tuning_warranted").GetBoolean());
        var runners = root.GetProperty("baseline").GetProperty("runners").EnumerateArray().Select(x => x.GetProperty("name").GetString()!).ToArray();
        Assert.Equal(["base", "few_shot", "retrieved_few_shot"], runners);
        var em = root.GetProperty("baseline").GetProperty("runners")[0].GetProperty("metrics").GetProperty("exact_match");
        Assert.Equal(2, em.GetProperty("ci95").GetArrayLength());
        Assert.Contains("base: 8/8", r.Stderr); // progress on stderr
        Assert.True(File.Exists(Path.Combine(dir.Path, "run", "report.html")));

        // A target the baseline already meets: say so (here any exact match ≥ 0 does).
        File.WriteAllText(recipe, File.ReadAllText(recipe).Replace("target_value = 0.9", "target_value = 0.0", StringComparison.Ordinal));
        var met = CliRunner.Run("baseline", recipe);
        Assert.True(met.ExitCode == 0, met.Stderr);
        Assert.Contains("already meets the target exact_match ≥ 0: fine-tuning does not look warranted", met.Stdout);
    }

    [Fact]
    public void Eval_reports_a_zero_adapter_as_no_better_than_base_and_a_task_adapter_as_better()
    {
        using var dir = new TempDir();
        string recipe = TinyTask.WriteRecipe(dir.Path, test: 10);
        string zero = Path.Combine(dir.Path, "zero.gguf"), hello = Path.Combine(dir.Path, "hello.gguf");
        TinyTask.WriteAdapter(zero, zero: true);
        TinyTask.WriteAdapter(hello, zero: false);

        var r = CliRunner.Run("eval", recipe, "--adapter", zero, "--json", "--threads", "2");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using (var doc = JsonDocument.Parse(r.Stdout))
        {
            var verdict = doc.RootElement.GetProperty("verdict");
            Assert.False(verdict.GetProperty("tuned_better_than_baselines").GetBoolean());
            Assert.Equal("exact_match", verdict.GetProperty("primary_metric").GetString());
            Assert.Equal(4, doc.RootElement.GetProperty("runners").GetArrayLength()); // base, few_shot, retrieved_few_shot, tuned
            Assert.False(doc.RootElement.GetProperty("forgetting").GetProperty("flagged").GetBoolean());
        }

        var good = CliRunner.Run("eval", recipe, "--adapter", hello, "--gguf", Path.Combine(dir.Path, "model.gguf"), "--gguf-adapter", hello, "--json");
        Assert.True(good.ExitCode == 0, good.Stderr);
        using (var doc = JsonDocument.Parse(good.Stdout))
        {
            var verdict = doc.RootElement.GetProperty("verdict");
            Assert.True(verdict.GetProperty("tuned_better_than_baselines").GetBoolean(), verdict.GetProperty("summary").GetString());
            Assert.True(verdict.GetProperty("p_value").GetDouble() < 0.05);
            Assert.Equal(0.0, verdict.GetProperty("quantisation_cost").GetDouble());
        }

        // The human-readable form, and the review pack from the run folder.
        var text = CliRunner.Run("eval", recipe, "--adapter", hello);
        Assert.True(text.ExitCode == 0, text.Stderr);
        Assert.Contains("verdict: tuned is better", text.Stdout);
        string pack = Path.Combine(dir.Path, "pack");
        var export = CliRunner.Run("review", "export", Path.Combine(dir.Path, "run"), "--out", pack, "--size", "6", "--seed", "3");
        Assert.True(export.ExitCode == 0, export.Stderr);
        Assert.True(File.Exists(Path.Combine(pack, "review.html")));
        Assert.True(File.Exists(pack + "-key.json"));
        File.WriteAllText(Path.Combine(dir.Path, "v.csv"), "item,verdict\nitem-001,A\nitem-002,tie\n");
        var import = CliRunner.Run("review", "import", Path.Combine(dir.Path, "v.csv"), "--key", pack + "-key.json", "--json");
        Assert.True(import.ExitCode == 0, import.Stderr);
        using (var doc = JsonDocument.Parse(import.Stdout)) Assert.Equal(2, doc.RootElement.GetProperty("verdicts").GetInt32());
    }

    [Fact]
    public void Eval_after_train_evaluates_the_runs_adapter_and_names_it()
    {
        using var dir = new TempDir();
        string recipe = TinyTask.WriteRecipe(dir.Path, test: 6);
        string adapter = Path.Combine(dir.Path, "run", "adapter.gguf");

        // No run yet: the baselines, and the hint.
        var before = CliRunner.Run("eval", recipe, "--threads", "2");
        Assert.True(before.ExitCode == 0, before.Stderr);
        Assert.Contains($"no trained adapter in {Path.Combine(dir.Path, "run")} (adapter.gguf or peft/): baselines only; run `edgetune train", before.Stderr);
        Assert.Contains("verdict: none (no tuned model was evaluated (train first", before.Stdout);

        var train = CliRunner.Run("train", recipe, "--max-steps", "2", "--device", "cpu", "--threads", "2");
        Assert.True(train.ExitCode == 0, train.Stderr);
        var r = CliRunner.Run("eval", recipe, "--json", "--threads", "2");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using (var doc = JsonDocument.Parse(r.Stdout))
        {
            Assert.Equal(["base", "few_shot", "retrieved_few_shot", "tuned"], doc.RootElement.GetProperty("runners").EnumerateArray().Select(x => x.GetProperty("name").GetString()!));
            Assert.Equal(adapter, doc.RootElement.GetProperty("adapter").GetProperty("path").GetString());
            Assert.True(doc.RootElement.GetProperty("adapter").GetProperty("from_run").GetBoolean());
        }
        Assert.Contains($"tuned: the run's adapter {adapter} (written ", r.Stderr);

        var text = CliRunner.Run("eval", recipe, "--threads", "2");
        Assert.True(text.ExitCode == 0, text.Stderr);
        Assert.StartsWith($"tuned: {adapter} (the run's adapter, from [output].dir)", text.Stdout);
        Assert.Contains("verdict: tuned is", text.Stdout);
    }

    [Fact]
    public void Eval_scores_the_onnx_export_beside_the_tuned_model_through_onnx_runtime_genai()
    {
        using var dir = new TempDir();
        string recipe = TinyTask.WriteRecipe(dir.Path, test: 6);
        string hello = Path.Combine(dir.Path, "hello.gguf"), onnx = Path.Combine(dir.Path, "model-onnx");
        TinyTask.WriteAdapter(hello, zero: false);
        var export = CliRunner.Run("export", "onnx", Path.Combine(dir.Path, "model.gguf"), "--adapter", hello, "--out", onnx, "--precision", "fp32");
        Assert.True(export.ExitCode == 0, export.Stderr);

        var r = CliRunner.Run("eval", recipe, "--adapter", hello, "--onnx", onnx, "--no-baselines", "--json", "--threads", "2");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        var runners = doc.RootElement.GetProperty("runners").EnumerateArray().ToDictionary(x => x.GetProperty("name").GetString()!);
        Assert.Equal(["tuned", "onnx"], runners.Keys);
        double Exact(string runner) => runners[runner].GetProperty("metrics").GetProperty("exact_match").GetProperty("value").GetDouble();
        Assert.Equal(1.0, Exact("tuned"));
        Assert.Equal(Exact("tuned"), Exact("onnx")); // the merged fp32 export answers as the adapter on the base does
        Assert.Contains(doc.RootElement.GetProperty("comparisons").EnumerateArray(), c => c.GetProperty("a").GetString() == "onnx" && c.GetProperty("b").GetString() == "tuned");
        Assert.True(File.Exists(Path.Combine(dir.Path, "run", "answers-onnx.jsonl")));

        var notExported = CliRunner.Run("eval", recipe, "--adapter", hello, "--onnx", dir.Path, "--no-baselines");
        Assert.Equal(1, notExported.ExitCode);
        Assert.Equal($"edgetune: {Path.Combine(dir.Path, "genai_config.json")}: no such file (ONNX Runtime GenAI needs it beside model.onnx; export with 'edgetune export onnx')", notExported.Stderr.TrimEnd());
    }

    [Fact]
    public void Errors_name_the_file_and_line_and_usage_errors_exit_2()
    {
        using var dir = new TempDir();
        string recipe = TinyTask.WriteRecipe(dir.Path, test: 3);
        var missing = CliRunner.Run("eval", Path.Combine(dir.Path, "nope.toml"));
        Assert.Equal(1, missing.ExitCode);
        Assert.Single(missing.Stderr.Trim().Split('\n'));
        Assert.Contains("nope.toml: no such recipe file", missing.Stderr);

        Assert.Equal(2, CliRunner.Run("eval", recipe, "--gguf-adapter", "x.gguf").ExitCode);
        Assert.Equal(2, CliRunner.Run("review", "export", "--out", dir.Path).ExitCode);

        File.AppendAllText(recipe, "metrics = [\"bleu\"]\n");
        var bad = CliRunner.Run("baseline", recipe);
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("recipe.toml:", bad.Stderr);
        Assert.Contains("'bleu' is not a metric", bad.Stderr);

        // A leak: a training row in the test split.
        TinyTask.WriteRecipe(dir.Path, test: 3);
        File.AppendAllLines(Path.Combine(dir.Path, "test.jsonl"), [File.ReadAllLines(Path.Combine(dir.Path, "train.jsonl"))[6]]);
        var leak = CliRunner.Run("baseline", recipe);
        Assert.Equal(1, leak.ExitCode);
        Assert.Contains("test.jsonl:4 (= " + Path.Combine(dir.Path, "train.jsonl") + ":7)", leak.Stderr);

        foreach (var verb in new[] { new[] { "baseline" }, ["eval"], ["review", "export"], ["review", "import"] })
        {
            var help = CliRunner.Run([.. verb, "--help"]);
            Assert.Equal(0, help.ExitCode);
            Assert.Contains("Usage:", help.Stdout);
        }
    }
}
