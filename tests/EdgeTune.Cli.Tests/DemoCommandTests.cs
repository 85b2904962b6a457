using EdgeTune.Testing;

namespace EdgeTune.Cli.Tests;

/// <summary>
/// The demo runs alone, after the parallel tests: its in-process agent did not answer within its HTTP client's 2 minutes in
/// two fresh-clone CI runs while other test classes (fleet agents installing bundles, distillation training) ran beside it
/// in this process, and passed alone; the agent shares per-process state with them (the bundle installer's lock, the
/// thread pool).
/// </summary>
[Collection(nameof(DemoRunsAlone))]
public class DemoCommandTests
{
    [Fact]
    public void Demo_quantises_the_built_in_model_and_reports_llama_cpp_figures()
    {
        var r = CliRunner.Run("demo", "quantization", "--types", "F16,Q8_0", "--threads", "2");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var lines = r.Stdout.Split('\n');
        var q8 = lines.Single(l => l.StartsWith("Q8_0", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var f16 = lines.Single(l => l.StartsWith("F16", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        // columns: type, size, unit, bits/w, seconds, RMSE, rel. error, %, top-1, %
        // Q8_0 is 8.5 bits per weight; the 1-D norms stay F32, which adds a little.
        Assert.InRange(double.Parse(q8[3], System.Globalization.CultureInfo.InvariantCulture), 8.5, 8.6);
        Assert.Equal("16.00", f16[3]);
        double q8Error = double.Parse(q8[5], System.Globalization.CultureInfo.InvariantCulture);
        double f16Error = double.Parse(f16[5], System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(q8Error > f16Error && f16Error > 0, $"Q8_0 error {q8Error} should exceed F16's {f16Error}");
    }

    [Fact]
    public void Demo_refuses_unknown_types_as_usage_errors() =>
        Assert.Equal(2, CliRunner.Run("demo", "quantization", "--types", "Q9_9").ExitCode);

    [Fact]
    public void Fast_demo_runs_the_whole_loop_and_tuning_beats_the_baselines()
    {
        using var dir = new TempDir();
        string run = Path.Combine(dir.Path, "demo");
        var r = CliRunner.Run("demo", "--fast", "--out", run, "--device", "cpu");
        Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
        string o = r.Stdout;
        var planted = System.Text.RegularExpressions.Regex.Match(o, @"planted defects found: (\d+) of (\d+)");
        Assert.True(planted.Success, o);
        Assert.Equal(planted.Groups[2].Value, planted.Groups[1].Value);
        Assert.Contains("verdict: tuned IS better than the best baseline", o, StringComparison.Ordinal);
        Assert.Contains("test split unchanged", o, StringComparison.Ordinal);
        Assert.Contains("button: thumbs", o, StringComparison.Ordinal);
        // The feedback it reports is what the paged, acknowledged export read back from the agent's field log.
        var feedback = System.Text.RegularExpressions.Regex.Match(o, @"field data read back: (\d+) records \(cursor \d+, acknowledged\); feedback in them: (\d+) thumbs up, (\d+) thumbs down, (\d+) unrated \(4 button presses\)");
        Assert.True(feedback.Success, o);
        var exported = File.ReadAllLines(Path.Combine(run, "device/field-export.jsonl")).Select(l => EdgeTune.Formats.FieldData.FieldExample.FromJsonLine(l)!).ToList();
        Assert.Equal(exported.Count, int.Parse(feedback.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(exported.Count(e => e.Metadata.Feedback?.Rating > 0), int.Parse(feedback.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(exported.Count(e => e.Metadata.Feedback?.Rating < 0), int.Parse(feedback.Groups[3].Value, System.Globalization.CultureInfo.InvariantCulture));
        // ONNX: exported int4, and ONNX Runtime's logits within issue 14's bound of our forward over the same weights.
        var onnx = System.Text.RegularExpressions.Regex.Match(o, @"ONNX Runtime vs our forward over the dequantised int4 weights, \d+ positions: relative L2 (\S+) \(bound 1e-3\)");
        Assert.True(onnx.Success, o);
        Assert.InRange(double.Parse(onnx.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), 0, 1e-3);
        Assert.Contains("check-onnx: ok: llama", o, StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(run, "models/tuned-onnx-int4/genai_config.json")));
        // The ONNX artifact re-scored on the frozen test split beside the GGUF one, paired against the tuned model.
        // ONNX Runtime GenAI answers as llama.cpp does (same tokenizer, stops at the template's end of turn): valid JSON.
        var onnxRow = System.Text.RegularExpressions.Regex.Match(o, @"\n  onnx +json_valid (\S+) ");
        Assert.True(onnxRow.Success, o);
        Assert.True(double.Parse(onnxRow.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) >= 0.9, o);
        Assert.Matches(@"ONNX int4 vs tuned on \S+: \S+, p = [\d.]+", o);
        // Bundle: installed through the agent's endpoint and read back from its slots; the broken one rolled back to that slot.
        var installed = System.Text.RegularExpressions.Regex.Match(o, @"installed version 1\.0\.0 in slot (\w) \(good: \1\)");
        Assert.True(installed.Success, o);
        Assert.Matches(@"canary "".+"" → \S", o);
        Assert.Contains("broken bundle 1.0.1: rolled back (version 1.0.1): the model did not load", o, StringComparison.Ordinal);
        Assert.Contains($"after the rollback slot {installed.Groups[1].Value} serves again; the canary's answer is the same as before", o, StringComparison.Ordinal);
        using (var manifest = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(Path.Combine(run, "device/state/slots", installed.Groups[1].Value, "manifest.json"))))
            Assert.Equal("1.0.0", manifest.RootElement.GetProperty("version").GetString());
        // Fleet: the records collected over MQTT, counted from the collector's ledger, are the agent's field log.
        var fleet = System.Text.RegularExpressions.Regex.Match(o, @"records collected: (\d+) \(distinct record ids in .+ledger\.tsv\); the agent's field log holds (\d+)");
        Assert.True(fleet.Success, o);
        Assert.Equal(fleet.Groups[2].Value, fleet.Groups[1].Value);
        Assert.Equal(exported.Select(e => e.Metadata.Id).Distinct().Count(), int.Parse(fleet.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(exported.Select(e => e.Metadata.Id).Distinct().Count(),
            File.ReadLines(Path.Combine(run, "data/v1/fleet/ledger.tsv")).Select(l => l.Split('\t')[2]).Distinct().Count());
        // Plan before training, the run registry, and iteration 2 through runs compare and runs promote.
        Assert.Matches(@"plan: data +\d+ training examples → \d+ optimizer steps", o);
        Assert.Matches(@"plan: total +[\d,]+ MiB +fits in", o);
        Assert.Matches(@"trained in \d+ s \(the plan said \d+ s", o);
        Assert.Matches(@"eval \S+ in .+registry; \S+ is the first champion", o);
        Assert.Matches(@"\$ edgetune runs compare \S+ \S+", o);
        Assert.Matches(@"\$ edgetune runs promote \S+: (promoted|refused): ", o);
        var kinds = File.ReadLines(Path.Combine(run, "registry/runs.jsonl")).Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("kind").GetString()).ToList();
        Assert.Equal(2, kinds.Count(k => k == "train"));
        Assert.Equal(2, kinds.Count(k => k == "eval"));
        Assert.Contains("export", kinds);
        Assert.Contains("promotion", kinds);
        foreach (var file in new[] { "runs/qlora/adapter.gguf", "runs/qlora/peft/adapter_config.json", "runs/qlora/loss.png", "runs/qlora/report.html", "runs/qlora.toml", "data/v1/manifest.json", "device/field-export.jsonl", "release/support-triage-1.0.0.etb", "keys/demo-signing.pub" })
            Assert.True(File.Exists(Path.Combine(run, file)), $"{file} missing");
        // A second run into the same folder replaces the earlier demo; any other folder is refused.
        File.WriteAllText(dir.File("keep.txt"), "mine");
        Assert.Equal(1, CliRunner.Run("demo", "--fast", "--out", dir.Path).ExitCode);
    }
}

[CollectionDefinition(nameof(DemoRunsAlone), DisableParallelization = true)]
public sealed class DemoRunsAlone;
