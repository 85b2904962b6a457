using System.CommandLine;
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Core.Runs;
using EdgeTune.Evaluation;
using EdgeTune.Evaluation.Runners;
using EdgeTune.Evaluation.Statistics;
using EdgeTune.Recipes;

namespace EdgeTune.Cli.Commands;

/// <summary>What `train`, `eval` and `export` write into the run registry (see <see cref="RunRegistry"/>).</summary>
internal static class RunLog
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    public static Option<string?> RegistryOption() => new("--registry")
    {
        Description = $"The run registry folder (default: ${RunRegistry.EnvironmentVariable}, else runs/ of the working directory)",
    };

    public static string Toolkit =>
        typeof(RunLog).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";

    /// <summary>Records a run; a registry that cannot be written costs a warning, never the finished work.</summary>
    public static string? Record(CliConsole console, string? registryOption, Func<RunRegistry, RunRecord> build)
    {
        try
        {
            var registry = RunRegistry.Locate(registryOption);
            var record = build(registry);
            registry.Append(record);
            console.Error.WriteLine($"edgetune: recorded run {record.Id} ({record.Kind}) in {registry.Path}");
            return record.Id;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or EdgeTuneException)
        {
            console.Error.WriteLine($"edgetune: warning: the run was not recorded in the registry: {e.Message}");
            return null;
        }
    }

    /// <summary>The common part: id, time, recipe (path, hash, text), base and data hashes.</summary>
    public static RunRecord Start(RunRegistry registry, string kind, Recipe r, string? baseModel = null)
    {
        var time = DateTimeOffset.UtcNow;
        var data = new Dictionary<string, string>();
        foreach (var (role, path) in new[] { ("train", r.Data.Train), ("eval", r.Data.Eval), ("test", r.Eval.Test ?? r.Data.Test) })
            if (path is not null && registry.HashOf(path) is { } h) data[role] = h;
        if (Path.GetDirectoryName(Path.GetFullPath(r.Data.Train)) is { } dataDir && Directory.EnumerateFiles(dataDir, "*manifest*.json").FirstOrDefault() is { } manifest)
            data["manifest"] = registry.Sha256(manifest);
        string b = baseModel ?? r.Model.Base;
        return new RunRecord
        {
            Id = RunRegistry.NewId(time),
            Kind = kind,
            Time = time,
            Command = "edgetune " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1)),
            Recipe = Path.GetFullPath(r.File),
            RecipeSha256 = registry.HashOf(r.File),
            RecipeText = File.Exists(r.File) ? File.ReadAllText(r.File) : null,
            Base = Path.GetFullPath(b),
            BaseSha256 = registry.HashOf(b),
            Data = data,
            Toolkit = Toolkit,
            User = Environment.UserName,
        };
    }

    /// <summary>The newest run that produced one of <paramref name="inputs"/> (same hash): the lineage.</summary>
    public static string? ParentOf(RunRegistry registry, IEnumerable<string?> inputs)
    {
        var hashes = inputs.Select(registry.HashOf).OfType<string>().ToHashSet(StringComparer.Ordinal);
        if (hashes.Count == 0) return null;
        return registry.ReadAll().LastOrDefault(rec => rec.Artifacts.Any(a => a.Sha256 is not null && hashes.Contains(a.Sha256)))?.Id;
    }

    public static string? RecordTrain(CliConsole console, string? registryOption, Recipe r, EdgeTune.Training.TrainResult result) =>
        Record(console, registryOption, registry => Start(registry, "train", r) with
        {
            Metrics = new Dictionary<string, RunMetric>
            {
                ["final_loss"] = new(result.FinalLoss),
                ["steps"] = new(result.Steps),
            }.Concat(result.FinalEvalLoss is { } e ? [new("final_eval_loss", new RunMetric(e))] : []).ToDictionary(),
            Artifacts = new[]
            {
                registry.Artifact("adapter.gguf", result.AdapterGguf), registry.Artifact("peft", result.AdapterPeft),
                registry.Artifact("model.gguf", result.ModelGguf), registry.Artifact("base.gguf", r.Model.AddTokens.Count > 0 ? r.AdapterBase : null),
                registry.Artifact("metrics.jsonl", result.MetricsPath),
            }.OfType<RunArtifact>().ToList(),
        });

    /// <summary>An eval: every runner's metrics with intervals; its answers files are kept in the registry (the run folder's are overwritten by the next eval).</summary>
    public static string? RecordEval(CliConsole console, string? registryOption, Recipe r, EvalPlan plan, EvalOutcome outcome) =>
        Record(console, registryOption, registry =>
        {
            var record = Start(registry, "eval", r) with { Parent = ParentOf(registry, [plan.Adapter, plan.Gguf, plan.GgufAdapter, plan.Onnx]) };
            var metrics = new Dictionary<string, RunMetric>();
            foreach (var runner in outcome.Runners)
                foreach (var m in runner.Metrics)
                    metrics[$"{runner.Runner}.{m.Name}"] = new RunMetric(m.Value.Value, Finite(m.Value.Low), Finite(m.Value.High));
            string kept = registry.RunFolder(record.Id);
            var artifacts = new List<RunArtifact>();
            foreach (var runner in outcome.Runners)
            {
                string answers = Path.Combine(plan.RunDir, $"answers-{runner.Runner}.jsonl");
                if (!File.Exists(answers)) continue;
                string copy = Path.Combine(kept, Path.GetFileName(answers));
                File.Copy(answers, copy, overwrite: true);
                artifacts.Add(registry.Artifact(Path.GetFileName(answers), copy)!);
            }
            if (plan.Adapter is not null) artifacts.Add(registry.Artifact("adapter (input)", plan.Adapter)!);
            return record with { Metrics = metrics, Artifacts = artifacts };
        });

    /// <summary>An export: the chosen type and every scored candidate's primary metric; the model (and adapter) as artifacts.</summary>
    public static string? RecordExport(CliConsole console, string? registryOption, EdgeTune.Export.Gguf.GgufExportRequest request, EdgeTune.Export.Gguf.GgufExportResult result) =>
        Record(console, registryOption, registry =>
        {
            var record = request.RecipeFile is { } file
                ? Start(registry, "export", Recipe.Load(file), request.BaseModel)
                : new RunRecord
                {
                    Id = RunRegistry.NewId(DateTimeOffset.UtcNow), Kind = "export", Command = "edgetune " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1)),
                    Base = Path.GetFullPath(request.BaseModel), BaseSha256 = registry.HashOf(request.BaseModel), Toolkit = Toolkit, User = Environment.UserName,
                    Data = registry.HashOf(request.TestFile) is { } t ? new Dictionary<string, string> { ["test"] = t } : [],
                };
            var metrics = new Dictionary<string, RunMetric>();
            foreach (var m in result.Reference.Metrics) metrics[$"reference.{m.Name}"] = new RunMetric(m.Value.Value, Finite(m.Value.Low), Finite(m.Value.High));
            foreach (var c in result.Candidates)
                if (c.Score?.Metric(result.PrimaryMetric) is { } m) metrics[$"{c.Type}.{m.Name}"] = new RunMetric(m.Value.Value, Finite(m.Value.Low), Finite(m.Value.High));
            return record with
            {
                Parent = ParentOf(registry, [request.Adapter]),
                Metrics = metrics,
                Artifacts = new[] { registry.Artifact($"model ({result.ChosenType})", result.ModelFile), registry.Artifact("adapter.gguf", result.AdapterFile), registry.Artifact("folder", result.Folder) }
                    .OfType<RunArtifact>().ToList(),
                Note = result.Reason,
            };
        });

    private static double? Finite(double v) => double.IsFinite(v) ? v : null;
}

/// <summary>`edgetune runs list|show|compare|promote`: the registry's runs, their lineage, and champion against challenger.</summary>
internal static class RunsCommand
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;
    private static readonly JsonSerializerOptions Indented = new(RunRegistry.Json) { WriteIndented = true };

    public static Command Create(CliConsole console) => new("runs", "The run registry: every train, eval and export with its inputs' hashes, lineage, metrics and artifacts; champion and challenger.")
    {
        List(console), Show(console), Compare(console), Promote(console),
    };

    private static Command List(CliConsole console)
    {
        var registry = RunLog.RegistryOption();
        var json = new Option<bool>("--json") { Description = "Print the records as JSON" };
        var command = new Command("list", "List the runs, oldest first; the champion is marked with *.\n\nExample: edgetune runs list") { registry, json };
        command.SetAction(parse =>
        {
            var reg = RunRegistry.Locate(parse.GetValue(registry));
            var records = reg.ReadAll(w => console.Error.WriteLine($"edgetune: {w}"));
            var runs = records.Where(r => r.Kind != "promotion").ToList();
            if (parse.GetValue(json))
            {
                console.Out.WriteLine(JsonSerializer.Serialize(new { registry = reg.Path, champion = RunRegistry.Champion(records), runs }, Indented));
                return CliApp.Success;
            }
            if (runs.Count == 0) { console.Out.WriteLine($"no runs in {reg.Path}"); return CliApp.Success; }
            string? champion = RunRegistry.Champion(records);
            console.Out.WriteLine($"{"",1} {"ID",-20} {"KIND",-6} {"TIME (UTC)",-16} {"PARENT",-20} {"RECIPE",-24} HEADLINE");
            foreach (var r in runs)
                console.Out.WriteLine($"{(r.Id == champion ? "*" : " ")} {r.Id,-20} {r.Kind,-6} {r.Time.UtcDateTime:yyyy-MM-dd HH:mm} {r.Parent ?? "-",-20} {Path.GetFileName(r.Recipe) ?? "-",-24} {Headline(r)}");
            return CliApp.Success;
        });
        return command;
    }

    private static string Headline(RunRecord r)
    {
        if (r.Kind == "train" && r.Metrics.TryGetValue("final_loss", out var loss)) return string.Create(C, $"loss {loss.Value:0.####}");
        var first = r.Metrics.FirstOrDefault(m => m.Key.StartsWith("tuned.", StringComparison.Ordinal));
        if (first.Key is null) first = r.Metrics.FirstOrDefault();
        return first.Key is null ? "" : string.Create(C, $"{first.Key} {first.Value.Value:0.###}");
    }

    private static Command Show(CliConsole console)
    {
        var id = new Argument<string>("RUN") { Description = "A run id (or its unique start)" };
        var registry = RunLog.RegistryOption();
        var json = new Option<bool>("--json") { Description = "Print the record as JSON" };
        var command = new Command("show", "One run: command, recipe, inputs' hashes, parent, metrics with intervals, artifacts.\n\nExample: edgetune runs show 20261203-0415") { id, registry, json };
        command.SetAction(parse =>
        {
            var reg = RunRegistry.Locate(parse.GetValue(registry));
            var r = reg.Find(parse.GetValue(id)!);
            if (parse.GetValue(json)) { console.Out.WriteLine(JsonSerializer.Serialize(r, Indented)); return CliApp.Success; }
            var o = console.Out;
            o.WriteLine($"run {r.Id} ({r.Kind}) at {r.Time.UtcDateTime:yyyy-MM-dd HH:mm:ss} UTC by {r.User}, toolkit {r.Toolkit}");
            o.WriteLine($"command: {r.Command}");
            o.WriteLine($"recipe:  {r.Recipe} (sha256 {Short(r.RecipeSha256)})");
            o.WriteLine($"base:    {r.Base} (sha256 {Short(r.BaseSha256)})");
            foreach (var (role, hash) in r.Data) o.WriteLine($"data:    {role} sha256 {Short(hash)}");
            o.WriteLine($"parent:  {r.Parent ?? "-"}");
            foreach (var (name, m) in r.Metrics) o.WriteLine($"metric:  {name} {Format(m)}");
            foreach (var a in r.Artifacts) o.WriteLine($"artifact: {a.Name} {a.Path} ({a.Bytes:N0} bytes, sha256 {Short(a.Sha256)})");
            return CliApp.Success;
        });
        return command;
    }

    private static string Short(string? hash) => hash is null ? "-" : hash[..Math.Min(12, hash.Length)];

    private static string Format(RunMetric m) =>
        m.Low is { } l && m.High is { } h ? string.Create(C, $"{m.Value:0.####} [{l:0.####}, {h:0.####}]") : string.Create(C, $"{m.Value:0.####}");

    private static Command Compare(CliConsole console)
    {
        var a = new Argument<string>("A") { Description = "The first run (the reference)" };
        var b = new Argument<string>("B") { Description = "The second run" };
        var runner = new Option<string>("--runner") { Description = "For eval runs: the runner whose answers are paired (tuned, exported, onnx, base…)", DefaultValueFactory = _ => Comparer.Tuned };
        var registry = RunLog.RegistryOption();
        var json = new Option<bool>("--json") { Description = "Print the comparison as JSON" };
        var command = new Command("compare",
            "Two runs side by side: the recipe diff, inputs that changed, every metric of both with its interval and B − A; for two evals of the " +
            "same frozen test split, a paired test per metric on the runner's answers (McNemar or paired bootstrap).\n\nExample: edgetune runs compare 20261203-0415 20261203-0502")
        { a, b, runner, registry, json };
        command.SetAction(parse =>
        {
            var reg = RunRegistry.Locate(parse.GetValue(registry));
            var records = reg.ReadAll();
            var ra = reg.Find(parse.GetValue(a)!, records);
            var rb = reg.Find(parse.GetValue(b)!, records);
            var diff = LineDiff(ra.RecipeText ?? "", rb.RecipeText ?? "");
            var changed = new[] { "train", "eval", "test", "manifest" }.Where(k => ra.Data.GetValueOrDefault(k) != rb.Data.GetValueOrDefault(k)).ToList();
            if (ra.BaseSha256 != rb.BaseSha256) changed.Insert(0, "base");
            var paired = Paired(reg, ra, rb, parse.GetValue(runner)!);
            var rows = ra.Metrics.Keys.Union(rb.Metrics.Keys).Select(k => (Name: k, A: ra.Metrics.GetValueOrDefault(k), B: rb.Metrics.GetValueOrDefault(k))).ToList();
            if (parse.GetValue(json))
            {
                console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    a = ra.Id, b = rb.Id, recipe_diff = diff, changed_inputs = changed,
                    metrics = rows.Select(r => new { name = r.Name, a = r.A, b = r.B, difference = r.A is not null && r.B is not null ? r.B.Value - r.A.Value : (double?)null }),
                    paired = paired.Tests.Select(t => new { metric = t.Metric, test = t.Test.Test, difference = t.Test.Difference, p_value = t.Test.PValue }),
                    paired_note = paired.Note,
                }, Indented));
                return CliApp.Success;
            }
            var o = console.Out;
            o.WriteLine($"A: {ra.Id} ({ra.Kind}, {Path.GetFileName(ra.Recipe)})   B: {rb.Id} ({rb.Kind}, {Path.GetFileName(rb.Recipe)})");
            o.WriteLine(diff.Count == 0 ? "recipe: identical" : "recipe diff (A → B):");
            foreach (var line in diff) o.WriteLine("  " + line);
            o.WriteLine(changed.Count == 0 ? "inputs: base and data identical (same hashes)" : $"inputs that differ: {string.Join(", ", changed)}");
            o.WriteLine();
            o.WriteLine($"{"metric",-28} {"A",-26} {"B",-26} {"B − A",8}");
            foreach (var (name, ma, mb) in rows)
                o.WriteLine($"{name,-28} {(ma is null ? "-" : Format(ma)),-26} {(mb is null ? "-" : Format(mb)),-26} {(ma is not null && mb is not null ? (mb.Value - ma.Value).ToString("+0.####;-0.####;0", C) : "-"),8}");
            if (paired.Tests.Count > 0)
            {
                o.WriteLine();
                o.WriteLine($"paired on the same test split ({paired.Runner}, {paired.Examples} examples):");
                foreach (var t in paired.Tests)
                    o.WriteLine(string.Create(C, $"  {t.Metric,-16} B − A {t.Test.Difference:+0.####;-0.####;0}  p = {t.Test.PValue:0.####} ({t.Test.Test}){(t.Test.Significant() ? "  significant" : "")}"));
            }
            else if (paired.Note is not null) o.WriteLine($"\npaired test: {paired.Note}");
            return CliApp.Success;
        });
        return command;
    }

    internal sealed record PairedResult(string Runner, int Examples, IReadOnlyList<PairedComparison> Tests, string? Note, string Primary);

    /// <summary>
    /// Paired tests of B against A for every metric of <paramref name="runner"/>, from the answers kept with both
    /// eval runs, scored with B's recipe. Only for the same frozen test split (same hash, same example ids).
    /// </summary>
    internal static PairedResult Paired(RunRegistry reg, RunRecord a, RunRecord b, string runner)
    {
        PairedResult None(string note) => new(runner, 0, [], note, "");
        if (a.Kind != "eval" || b.Kind != "eval") return None("both runs must be evals (a train run has no answers to pair)");
        if (a.Data.GetValueOrDefault("test") is not { } ta || ta != b.Data.GetValueOrDefault("test"))
            return None("the runs were scored on different test splits (their hashes differ); only the intervals above compare them");
        string file = $"answers-{runner}.jsonl";
        var fa = a.Artifacts.FirstOrDefault(x => x.Name == file)?.Path;
        var fb = b.Artifacts.FirstOrDefault(x => x.Name == file)?.Path;
        if (fa is null || fb is null || !File.Exists(fa) || !File.Exists(fb)) return None($"runner '{runner}' has no kept answers in both runs");
        var answersA = EvalRunner.ReadAnswers(fa);
        var answersB = EvalRunner.ReadAnswers(fb);
        if (!answersA.Select(x => x.Id).SequenceEqual(answersB.Select(x => x.Id))) return None("the runs answered different examples");
        var scoring = ScoringOf(b);
        var comparisons = Comparer.Compare(new Dictionary<string, IReadOnlyList<RunnerAnswer>> { [Comparer.Tuned] = answersB, [Comparer.Base] = answersA }, scoring)
            .Where(c => c.A == Comparer.Tuned && c.B == Comparer.Base).ToList();
        return new PairedResult(runner, answersA.Count, comparisons, null, Scoring.PrimaryMetric(scoring));
    }

    /// <summary>The scoring options of the recipe a run recorded (its text at the time, at its path).</summary>
    private static ScoringOptions ScoringOf(RunRecord r)
    {
        if (r.RecipeText is null || r.Recipe is null) throw new EdgeTuneException($"run {r.Id}: no recipe recorded, so its scoring is unknown");
        var recipe = Recipe.Parse(r.RecipeText, r.Recipe);
        return EvalCommand.Plan(recipe, null, null, null, 1).Scoring;
    }

    private static Command Promote(CliConsole console)
    {
        var id = new Argument<string>("RUN") { Description = "The challenger: an eval run (or a train run: its newest eval)" };
        var against = new Option<string?>("--against") { Description = "The champion to beat (default: the current champion)" };
        var runner = new Option<string>("--runner") { Description = "The runner whose answers are compared (tuned, exported, onnx)", DefaultValueFactory = _ => Comparer.Tuned };
        var force = new Option<bool>("--force") { Description = "Promote even when the challenger does not beat the champion; who forced it is recorded" };
        var registry = RunLog.RegistryOption();
        var json = new Option<bool>("--json") { Description = "Print the decision as JSON" };
        var command = new Command("promote",
            "Make a run the champion only if it beats the champion on the same frozen test split (paired test on the recipe's primary metric, " +
            "p < 0.05 and better); otherwise refuse with the figures (exit 1). The first promotion needs no champion.\n\n" +
            "Examples:\n  edgetune runs promote 20261203-0502\n  edgetune runs promote 20261203-0502 --against 20261203-0415 --runner exported\n  edgetune runs promote 20261203-0502 --force")
        { id, against, runner, force, registry, json };
        command.SetAction(parse =>
        {
            var reg = RunRegistry.Locate(parse.GetValue(registry));
            var records = reg.ReadAll();
            var challenger = EvalOf(reg.Find(parse.GetValue(id)!, records), records);
            string? championId = parse.GetValue(against) ?? RunRegistry.Champion(records);
            string who = Environment.UserName;
            RunRecord decision;
            string message;
            bool accepted;
            if (championId is null)
            {
                accepted = true;
                message = $"{challenger.Id} is the first champion (there was none to beat)";
                decision = new RunRecord { Id = RunRegistry.NewId(DateTimeOffset.UtcNow), Kind = "promotion", Run = challenger.Id, User = who, Toolkit = RunLog.Toolkit, Note = "first champion" };
            }
            else
            {
                var champion = EvalOf(reg.Find(championId, records), records);
                if (champion.Id == challenger.Id) throw new EdgeTuneException($"{challenger.Id} is already the champion");
                var paired = Paired(reg, champion, challenger, parse.GetValue(runner)!);
                var primary = paired.Tests.FirstOrDefault(t => t.Metric == paired.Primary);
                bool beats = primary is not null && primary.Test.Significant() && Better(primary, paired);
                string evidence = primary is null
                    ? $"no paired test: {paired.Note ?? "the primary metric was not scored"}"
                    : string.Create(C, $"{primary.Metric} {Value(champion, paired.Runner, primary.Metric)} → {Value(challenger, paired.Runner, primary.Metric)}, B − A {primary.Test.Difference:+0.####;-0.####;0}, p = {primary.Test.PValue:0.####} ({primary.Test.Test}, {paired.Examples} examples)");
                accepted = beats || parse.GetValue(force);
                message = beats ? $"{challenger.Id} beats champion {champion.Id}: {evidence}"
                    : accepted ? $"{challenger.Id} promoted over {champion.Id} by --force ({who}) although it does not beat it: {evidence}"
                    : $"refused: {challenger.Id} does not beat champion {champion.Id} beyond noise: {evidence}; --force overrides (recorded)";
                decision = new RunRecord
                {
                    Id = RunRegistry.NewId(DateTimeOffset.UtcNow), Kind = "promotion", Run = challenger.Id, Against = champion.Id, User = who, Toolkit = RunLog.Toolkit,
                    Metric = primary?.Metric, Difference = primary?.Test.Difference, PValue = primary?.Test.PValue, Test = primary?.Test.Test,
                    ForcedBy = beats ? null : who, Note = evidence,
                };
            }
            if (accepted) reg.Append(decision);
            if (parse.GetValue(json))
                console.Out.WriteLine(JsonSerializer.Serialize(new { promoted = accepted, champion = accepted ? challenger.Id : championId, decision, message }, Indented));
            else (accepted ? console.Out : console.Error).WriteLine(accepted ? message : "edgetune: " + message);
            return accepted ? CliApp.Success : CliApp.Failure;
        });
        return command;
    }

    private static bool Better(PairedComparison primary, PairedResult paired) =>
        Scoring.Known.Contains(primary.Metric) && primary.Metric is "nll" or "perplexity" or "latency_s" ? primary.Test.Difference < 0 : primary.Test.Difference > 0;

    private static string Value(RunRecord r, string runner, string metric) =>
        r.Metrics.TryGetValue($"{runner}.{metric}", out var m) ? Format(m) : "?";

    /// <summary>An eval run as is; a train run stands for its newest eval (the one whose parent it is).</summary>
    private static RunRecord EvalOf(RunRecord r, IReadOnlyList<RunRecord> records)
    {
        if (r.Kind == "eval") return r;
        return records.LastOrDefault(x => x.Kind == "eval" && x.Parent == r.Id)
               ?? throw new EdgeTuneException($"run {r.Id} ({r.Kind}) has no eval run; promotion compares answers on the test split: run `edgetune eval {r.Recipe}` first");
    }

    /// <summary>A line diff (longest common subsequence): "- " lines only in A, "+ " lines only in B.</summary>
    internal static List<string> LineDiff(string a, string b)
    {
        var x = a.ReplaceLineEndings("\n").Split('\n');
        var y = b.ReplaceLineEndings("\n").Split('\n');
        var lcs = new int[x.Length + 1, y.Length + 1];
        for (int i = x.Length - 1; i >= 0; i--)
            for (int j = y.Length - 1; j >= 0; j--)
                lcs[i, j] = x[i] == y[j] ? lcs[i + 1, j + 1] + 1 : Math.Max(lcs[i + 1, j], lcs[i, j + 1]);
        var result = new List<string>();
        int p = 0, q = 0;
        while (p < x.Length && q < y.Length)
        {
            if (x[p] == y[q]) { p++; q++; }
            else if (lcs[p + 1, q] >= lcs[p, q + 1]) result.Add("- " + x[p++]);
            else result.Add("+ " + y[q++]);
        }
        while (p < x.Length) result.Add("- " + x[p++]);
        while (q < y.Length) result.Add("+ " + y[q++]);
        return result.Where(l => l.Trim().Length > 1).ToList();
    }
}
