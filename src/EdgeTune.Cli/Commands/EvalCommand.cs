using System.CommandLine;
using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Data;
using EdgeTune.Evaluation;
using EdgeTune.Evaluation.Metrics;
using EdgeTune.Evaluation.Reports;
using EdgeTune.Recipes;

namespace EdgeTune.Cli.Commands;

/// <summary><c>edgetune baseline</c> and <c>edgetune eval</c>: the held-out test split through base, prompt baseline, tuned and exported runners.</summary>
internal static class EvalCommand
{
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    private static Argument<string> RecipeArgument() => new("RECIPE") { Description = "The training recipe (TOML) with its [eval] table" };

    public static Command Baseline(CliConsole console)
    {
        var recipe = RecipeArgument();
        var json = new Option<bool>("--json") { Description = "Print every runner's metrics with their 95% intervals and the decision as JSON" };
        var threads = new Option<int>("--threads") { Description = "CPU threads for llama.cpp (0: all cores)" };
        var command = new Command("baseline",
            "Before training: answer the test split with the base model, zero-shot with the task's system prompt (base), with k few-shot " +
            "examples drawn (seeded) from the training split (few_shot), with the k training examples most similar to each test prompt " +
            "(retrieved_few_shot; [baseline] retrieved_few_shot, default [eval] few_shot) and with the top_k chunks of a knowledge folder " +
            "in the system prompt (rag; [baseline] knowledge, chunk_tokens, chunk_overlap, top_k), and say which is best and whether " +
            "fine-tuning looks warranted: when a baseline already meets the recipe's [eval] target_metric/target_value, it says so. " +
            "Answers (with the retrieved example or chunk ids) are kept in the run folder (resumable); " +
            "report.md and report.html are written there. Progress on stderr.\n\n" +
            "Example: edgetune baseline recipe.toml --json")
        {
            recipe, json, threads,
        };
        command.SetAction(parse =>
        {
            var r = Recipe.Load(parse.GetValue(recipe)!);
            var plan = Plan(r, adapter: null, gguf: null, ggufAdapter: null, parse.GetValue(threads));
            var outcome = Run(console, plan);
            EvalReportWriter.Write(outcome, plan.RunDir, $"Baseline: {Path.GetFileName(r.File)}");

            string? target = r.Eval.TargetMetric ?? (r.Eval.TargetValue is null ? null : Scoring.PrimaryMetric(plan.Scoring));
            var meeting = target is not null && r.Eval.TargetValue is { } value
                ? outcome.Runners.Where(x => Comparer.Meets(x, target, value)).Select(x => x.Runner).ToList()
                : null;
            string primary = Scoring.PrimaryMetric(plan.Scoring);
            string decision = meeting switch
            {
                null => $"no target stated ([eval] target_metric/target_value): compare the baselines' {primary} with what the product needs",
                { Count: > 0 } => $"the {string.Join(" and ", meeting)} baseline already meets the target {target} {(outcome.Runners[0].Metric(target!)?.HigherIsBetter == false ? "≤" : "≥")} {r.Eval.TargetValue!.Value.ToString(C)}: fine-tuning does not look warranted; ship the prompt",
                _ => $"no baseline meets the target {target} = {r.Eval.TargetValue!.Value.ToString(C)}: fine-tuning looks warranted",
            };
            bool warranted = meeting is not { Count: > 0 };
            var best = Comparer.BestBaseline(outcome.Runners, primary);
            string? advice = best is null ? null
                : string.Create(C, $"{Comparer.PlainName(best.Runner)} ({best.Runner}) reaches {primary} {best.Metric(primary)!.Value.Value:0.###} on the test split, the best of the baselines; fine-tune only if you need more");
            if (parse.GetValue(json))
            {
                var obj = Evaluator.ToJsonObject(outcome);
                console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    baseline = obj,
                    target = target is null ? null : new { metric = target, value = r.Eval.TargetValue },
                    met_by = meeting,
                    fine_tuning_warranted = warranted,
                    best_baseline = best is null ? null : new { name = best.Runner, metric = primary, value = best.Metric(primary)!.Value.Value },
                    advice,
                    decision,
                    run_dir = plan.RunDir,
                }, Json));
            }
            else
            {
                PrintTable(console, outcome);
                console.Out.WriteLine();
                if (advice is not null) console.Out.WriteLine(advice);
                console.Out.WriteLine(decision);
                console.Out.WriteLine($"report: {Path.Combine(plan.RunDir, "report.html")}");
            }
            return CliApp.Success;
        });
        return command;
    }

    public static Command Eval(CliConsole console)
    {
        var recipe = RecipeArgument();
        var adapter = new Option<string?>("--adapter") { Description = "The tuned adapter on the base model: a PEFT folder or a GGUF adapter (runner 'tuned'); default: the one `edgetune train` wrote to the recipe's [output].dir" };
        var gguf = new Option<string?>("--gguf") { Description = "The exported GGUF, run through llama.cpp as on the device (runner 'exported')" };
        var ggufAdapter = new Option<string?>("--gguf-adapter") { Description = "A GGUF LoRA adapter attached to --gguf in llama.cpp" };
        var onnx = new Option<string?>("--onnx") { Description = "A folder written by 'edgetune export onnx', run through ONNX Runtime GenAI as the agent serves it (runner 'onnx')" };
        var noBaselines = new Option<bool>("--no-baselines") { Description = "Skip the baseline runners (base, few_shot, retrieved_few_shot, rag)" };
        var json = new Option<bool>("--json") { Description = "Print every runner's metrics with their 95% intervals, the paired tests and {\"verdict\": {\"tuned_better_than_baselines\": …}} as JSON" };
        var threads = new Option<int>("--threads") { Description = "CPU threads for llama.cpp (0: all cores)" };
        var registry = RunLog.RegistryOption();
        var command = new Command("eval",
            "Evaluate on the held-out test split: the baselines (base zero-shot, few_shot, retrieved_few_shot and, with [baseline] knowledge, rag), the tuned model (--adapter, by default the adapter " +
            "`edgetune train RECIPE` wrote to the recipe's [output].dir; the output names the one used) and the exported " +
            "artifacts (--gguf, optionally with --gguf-adapter, through llama.cpp; --onnx DIR through ONNX Runtime GenAI), every metric with a 95% bootstrap interval, paired tests " +
            "(McNemar for right/wrong metrics, paired bootstrap otherwise), the verdict (which baseline is best, and is tuned better than it with p < 0.05 " +
            "on the primary metric?), the cost of quantisation (exported − tuned) and a forgetting check (perplexity of base and tuned on " +
            "general text). A test split that overlaps training is refused. Answers are resumable; report.md, report.html and eval.json go " +
            "to the run folder. Progress on stderr.\n\n" +
            "Examples:\n  edgetune eval recipe.toml\n  edgetune eval recipe.toml --adapter runs/recipe/adapter.gguf\n  edgetune eval recipe.toml --adapter lora.gguf --gguf model-q4_k_m.gguf --gguf-adapter lora.gguf --json\n  edgetune eval recipe.toml --adapter lora.gguf --onnx model-onnx-int4")
        {
            recipe, adapter, gguf, ggufAdapter, onnx, noBaselines, json, threads, registry,
        };
        command.SetAction(parse =>
        {
            if (parse.GetValue(ggufAdapter) is not null && parse.GetValue(gguf) is null)
            {
                console.Error.WriteLine("edgetune: --gguf-adapter needs --gguf");
                return CliApp.Usage;
            }
            var r = Recipe.Load(parse.GetValue(recipe)!);
            string? tuned = parse.GetValue(adapter);
            bool fromRun = false;
            if (tuned is null)
            {
                var (found, note) = RunAdapter(r);
                if (found is not null) { tuned = found; fromRun = true; }
                console.Error.WriteLine($"edgetune: {note}");
            }
            if (tuned is null && parse.GetValue(gguf) is null && parse.GetValue(onnx) is null && parse.GetValue(noBaselines))
            {
                console.Error.WriteLine("edgetune: nothing to run: give --adapter, --gguf or --onnx, or drop --no-baselines");
                return CliApp.Usage;
            }
            var plan = Plan(r, tuned, parse.GetValue(gguf), parse.GetValue(ggufAdapter), parse.GetValue(threads)) with
            {
                Baselines = !parse.GetValue(noBaselines),
                Onnx = parse.GetValue(onnx) is { } folder ? OnnxFolderPath(folder) : null,
            };
            var outcome = Run(console, plan);
            EvalReportWriter.Write(outcome, plan.RunDir, $"Evaluation: {Path.GetFileName(r.File)}");
            RunLog.RecordEval(console, parse.GetValue(registry), r, plan, outcome);
            if (parse.GetValue(json))
            {
                var node = System.Text.Json.Nodes.JsonNode.Parse(Evaluator.ToJson(outcome))!.AsObject();
                node["adapter"] = plan.Adapter is null ? null : new System.Text.Json.Nodes.JsonObject { ["path"] = plan.Adapter, ["from_run"] = fromRun };
                console.Out.WriteLine(node.ToJsonString(Json));
            }
            else
            {
                if (plan.Adapter is not null) console.Out.WriteLine($"tuned: {plan.Adapter}{(fromRun ? " (the run's adapter, from [output].dir)" : "")}");
                PrintTable(console, outcome);
                if (outcome.Verdict is { } v)
                    console.Out.WriteLine(v.TunedValue is null ? $"\nverdict: none ({v.Summary})" : $"\nverdict: {(v.TunedBetterThanBaselines ? "tuned is better" : "tuned is NOT better")} ({v.Summary})");
                if (outcome.Forgetting is { } f)
                    console.Out.WriteLine(string.Create(C, $"forgetting: perplexity on general text base {f.BasePerplexity:0.###}, tuned {f.TunedPerplexity:0.###} ({f.RelativeChange * 100:+0.#;-0.#;0}%){(f.Flagged ? " — lost general ability" : "")}"));
                console.Out.WriteLine($"report: {Path.Combine(plan.RunDir, "report.html")}");
            }
            return CliApp.Success;
        });
        return command;
    }

    /// <summary>
    /// The adapter a finished `edgetune train` left in the recipe's run folder: adapter.gguf for a GGUF base
    /// (llama.cpp runs it), the PEFT folder for a Hugging Face base (the reference forward reads it); with a
    /// note saying what was picked, or why nothing was.
    /// </summary>
    internal static (string? Adapter, string Note) RunAdapter(Recipe r)
    {
        string dir = r.Output.Dir, gguf = Path.Combine(dir, "adapter.gguf"), peft = Path.Combine(dir, "peft");
        bool hasPeft = File.Exists(Path.Combine(peft, "adapter_config.json"));
        string? picked = File.Exists(r.Model.Base) || !hasPeft ? (File.Exists(gguf) ? gguf : hasPeft ? peft : null) : peft;
        if (picked is not null)
        {
            var written = (File.Exists(picked) ? File.GetLastWriteTimeUtc(picked) : File.GetLastWriteTimeUtc(Path.Combine(picked, "adapter_config.json")));
            return (picked, string.Create(C, $"tuned: the run's adapter {picked} (written {written:yyyy-MM-dd HH:mm} UTC); --adapter picks another"));
        }
        if (File.Exists(Path.Combine(dir, "model.gguf")))
            return (null, $"note: {dir} holds model.gguf (full fine-tuning), not an adapter: give --gguf {Path.Combine(dir, "model.gguf")} to evaluate it; baselines only");
        return (null, $"note: no trained adapter in {dir} (adapter.gguf or peft/): baselines only; run `edgetune train {r.File}` first, or give --adapter");
    }

    /// <summary>The --onnx folder, checked before any runner spends time: one line when it is not an exported folder.</summary>
    private static string OnnxFolderPath(string folder)
    {
        if (!Directory.Exists(folder)) throw new EdgeTuneException($"{folder}: no such folder (--onnx takes a folder written by 'edgetune export onnx')");
        EdgeTune.Formats.Onnx.OnnxFolder.ReadConfig(folder);
        return Path.GetFullPath(folder);
    }

    internal static EvalPlan Plan(Recipe r, string? adapter, string? gguf, string? ggufAdapter, int threads)
    {
        string test = r.Eval.Test ?? r.Data.Test ?? throw new EdgeTuneException($"{r.File}: no test split: set [eval] test or [data] test");
        foreach (var (path, what) in new[] { (adapter, "--adapter"), (gguf, "--gguf"), (ggufAdapter, "--gguf-adapter") })
            if (path is not null && !File.Exists(path) && !Directory.Exists(path)) throw new EdgeTuneException($"{path}: no such file or folder ({what})");
        var scoring = new ScoringOptions
        {
            Task = r.Eval.Task,
            Metrics = r.Eval.Metrics,
            Primary = r.Eval.PrimaryMetric,
            LabelField = r.Eval.LabelField,
            Normalise = new NormaliseOptions { Trim = r.Eval.Trim, IgnoreCase = r.Eval.IgnoreCase, CollapseWhitespace = r.Eval.CollapseWhitespace, JsonCanonical = r.Eval.JsonCanonical },
            Schema = r.Eval.JsonSchema is { } schema ? JsonSchemaSubset.Load(schema) : null,
            Seed = r.Eval.Seed,
            Resamples = r.Eval.BootstrapResamples,
        };
        Scoring.MetricNames(scoring); // refuse a bad combination before any model runs
        return new EvalPlan
        {
            BaseModel = r.Model.Base,
            ChatTemplate = r.Model.ChatTemplate,
            TrainFile = r.Data.Train,
            TestFile = test,
            Fields = FieldMapping.Parse(string.Join(',', r.Data.Map)),
            SystemPrompt = r.Eval.SystemPrompt,
            FewShot = r.Eval.FewShot,
            RetrievedFewShot = r.Baseline.RetrievedFewShot ?? r.Eval.FewShot,
            Knowledge = r.Baseline.Knowledge,
            ChunkTokens = r.Baseline.ChunkTokens,
            ChunkOverlap = r.Baseline.ChunkOverlap,
            TopK = r.Baseline.TopK,
            MaxNewTokens = r.Eval.MaxNewTokens,
            Adapter = adapter is null ? null : Path.GetFullPath(adapter),
            AdapterBase = r.Model.AddTokens.Count > 0 ? r.AdapterBase : null,
            Gguf = gguf is null ? null : Path.GetFullPath(gguf),
            GgufAdapter = ggufAdapter is null ? null : Path.GetFullPath(ggufAdapter),
            GeneralTextFile = r.Eval.GeneralText,
            RunDir = r.Output.Dir,
            Scoring = scoring,
            Threads = threads,
        };
    }

    private static EvalOutcome Run(CliConsole console, EvalPlan plan)
    {
        string? last = null;
        int lastDecile = -1;
        var progress = new SyncProgress<EvalStage>(stage =>
        {
            if (stage.Stage != last) { last = stage.Stage; lastDecile = -1; }
            int decile = stage.Total == 0 ? 10 : stage.Done * 10 / stage.Total;
            if (decile == lastDecile) return;
            lastDecile = decile;
            console.Error.WriteLine($"{stage.Stage}: {stage.Done}/{stage.Total}");
        });
        return Evaluator.Run(plan with { Warn = plan.Warn ?? (w => console.Error.WriteLine($"edgetune: warning: {w}")) }, progress);
    }
    private static void PrintTable(CliConsole console, EvalOutcome o)
    {
        var names = o.Runners.SelectMany(r => r.Metrics.Select(m => m.Name)).Distinct().ToList();
        int width = Math.Max(10, o.Runners.Max(r => r.Runner.Length));
        console.Out.WriteLine(string.Join("  ", new[] { "runner".PadRight(width) }.Concat(names.Select(n => n.PadRight(24)))));
        foreach (var r in o.Runners)
            console.Out.WriteLine(string.Join("  ", new[] { r.Runner.PadRight(width) }.Concat(names.Select(n =>
                (r.Metric(n) is { } m ? string.Create(C, $"{m.Value.Value:0.###} [{m.Value.Low:0.###}, {m.Value.High:0.###}]") : "-").PadRight(24)))));
        foreach (var c in o.Comparisons.Where(c => c.Metric == (o.Verdict?.PrimaryMetric ?? c.Metric)))
            console.Out.WriteLine(string.Create(C, $"{c.A} vs {c.B} on {c.Metric}: {c.Test.Difference:+0.###;-0.###;0} (p = {c.Test.PValue:0.####}, {c.Test.Test})"));
    }
}
