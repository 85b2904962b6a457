using System.CommandLine;
using System.Security.Cryptography;
using System.Text.Encodings.Web;
using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Evaluation;
using EdgeTune.Evaluation.Review;
using EdgeTune.Evaluation.Runners;

namespace EdgeTune.Cli.Commands;

/// <summary><c>edgetune review export|import</c>: the blinded A/B pack for a domain expert, and its verdicts back.</summary>
internal static class ReviewCommand
{
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static Command Create(CliConsole console) =>
        new("review", "Human review: a blinded, randomised A/B sheet of a representative sample, and the reviewers' verdicts back.")
        {
            Export(console), Import(console),
        };

    private static Command Export(CliConsole console)
    {
        var runDir = new Argument<string?>("RUN_DIR") { Description = "A run folder of `edgetune eval` (tuned against base: answers-tuned.jsonl, answers-base.jsonl)", Arity = ArgumentArity.ZeroOrOne };
        var answers = new Option<string[]>("--answers") { Description = "Instead of RUN_DIR: two answers JSONL files (X then Y)", AllowMultipleArgumentsPerToken = false };
        var output = new Option<string>("--out") { Description = "Folder for review.html and review.csv", Required = true };
        var key = new Option<string?>("--key") { Description = "Where the key (which side is which model) goes; default OUT-key.json beside OUT, not inside it" };
        var size = new Option<int?>("--size") { Description = "Items in the sample (default: from --margin)" };
        var margin = new Option<double>("--margin") { Description = "Margin of error of a preference rate at 95%: n = z²·p(1−p)/e² with p = 0.5 and the finite-population correction", DefaultValueFactory = _ => 0.05 };
        margin.Validators.Add(r => { double m = r.GetValueOrDefault<double>(); if (!(m > 0 && m < 1)) r.AddError("--margin must be in (0, 1)"); });
        size.Validators.Add(r => { if (r.GetValueOrDefault<int?>() is < 1) r.AddError("--size must be 1 or more"); });
        var seed = new Option<ulong?>("--seed")
        {
            Description = "Seed of the sample and of the side order (default: a fresh random seed, printed and kept in the key file only: " +
                          "whoever knows the seed can redraw the sides, so a fixed default would unblind every pack)",
        };
        var json = new Option<bool>("--json") { Description = "Print what was written as JSON" };
        var command = new Command("export",
            "Write a blinded A/B review pack: a sample of the test examples stratified by label and answer length, each with the two models' " +
            "answers on randomly chosen sides, as a self-contained offline HTML page (the reviewer picks A, B or tie, comments, and exports " +
            "the verdicts as CSV) and as a CSV sheet. The key goes to a separate file: keep it away from reviewers.\n\n" +
            "Examples:\n  edgetune review export runs/recipe --out review/\n  edgetune review export --answers tuned.jsonl --answers base.jsonl --out review/ --size 50 --seed 7")
        {
            runDir, answers, output, key, size, margin, seed, json,
        };
        command.SetAction(parse =>
        {
            var files = parse.GetValue(answers) ?? [];
            string? dir = parse.GetValue(runDir);
            if ((dir is null) == (files.Length == 0) || files.Length is not (0 or 2))
            {
                console.Error.WriteLine("edgetune: give RUN_DIR, or --answers twice (two answers files)");
                return CliApp.Usage;
            }
            string fx, fy;
            if (dir is not null)
            {
                (fx, fy) = (Path.Combine(dir, $"answers-{Comparer.Tuned}.jsonl"), Path.Combine(dir, $"answers-{Comparer.Base}.jsonl"));
                foreach (var f in new[] { fx, fy })
                    if (!File.Exists(f)) throw new EdgeTuneException($"{f}: no such file (run `edgetune eval RECIPE --adapter ...` first, or give --answers)");
            }
            else (fx, fy) = (files[0], files[1]);
            foreach (var f in new[] { fx, fy }) if (!File.Exists(f)) throw new EdgeTuneException($"{f}: no such file");
            string outDir = parse.GetValue(output)!;
            string keyFile = parse.GetValue(key) ?? Path.TrimEndingDirectorySeparator(Path.GetFullPath(outDir)) + "-key.json";
            if (Path.GetFullPath(keyFile).StartsWith(Path.TrimEndingDirectorySeparator(Path.GetFullPath(outDir)) + Path.DirectorySeparatorChar, StringComparison.Ordinal))
                console.Error.WriteLine($"edgetune: warning: the key {keyFile} is inside the folder reviewers get");
            ulong drawSeed = parse.GetValue(seed) ?? BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8));
            var result = ReviewPack.Export(Name(fx), EvalRunner.ReadAnswers(fx), Name(fy), EvalRunner.ReadAnswers(fy), outDir, keyFile,
                parse.GetValue(size), parse.GetValue(margin), drawSeed);
            if (parse.GetValue(json))
                console.Out.WriteLine(JsonSerializer.Serialize(new { html = result.Html, csv = result.Csv, key = result.Key, seed = drawSeed, size = result.Size, population = result.Population, strata = result.Strata }, Json));
            else
            {
                console.Out.WriteLine($"{result.Size} of {result.Population} examples ({string.Join(", ", result.Strata.Select(s => $"{s.Key}: {s.Value}"))})");
                console.Out.WriteLine($"page:  {result.Html}");
                console.Out.WriteLine($"sheet: {result.Csv}");
                console.Out.WriteLine($"key:   {result.Key} (keep it from the reviewers)");
                console.Out.WriteLine($"seed:  {drawSeed} (kept in the key only; --seed {drawSeed} draws this pack again)");
            }
            return CliApp.Success;
        });
        return command;
    }

    private static string Name(string answersFile)
    {
        string name = Path.GetFileNameWithoutExtension(answersFile);
        return name.StartsWith("answers-", StringComparison.Ordinal) ? name["answers-".Length..] : name;
    }

    private static Command Import(CliConsole console)
    {
        var files = new Argument<string[]>("VERDICTS") { Description = "Verdict CSV files exported from the review page (item, verdict, comment, reviewer)", Arity = ArgumentArity.OneOrMore };
        var key = new Option<string>("--key") { Description = "The key file written by `review export`", Required = true };
        var json = new Option<bool>("--json") { Description = "Print the summary as JSON" };
        var command = new Command("import",
            "Read reviewers' verdicts back with the key: how often each model was preferred (and ties), with 95% Wilson intervals, and with " +
            "several reviewers their agreement on the items all judged (Cohen's kappa for two, Fleiss' kappa for more).\n\n" +
            "Example: edgetune review import verdicts-ana.csv verdicts-ben.csv --key review-key.json")
        {
            files, key, json,
        };
        command.SetAction(parse =>
        {
            var s = ReviewImport.Summarise(parse.GetValue(files)!, parse.GetValue(key)!);
            if (parse.GetValue(json))
                console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    models = new[] { s.ModelX, s.ModelY },
                    verdicts = s.Verdicts,
                    reviewers = s.Reviewers,
                    rates = s.Rates.Select(r => new { outcome = r.Outcome, count = r.Count, rate = r.Rate.Value, ci95 = new[] { r.Rate.Low, r.Rate.High } }),
                    agreement = s.AgreementStatistic is null ? null : new { statistic = s.AgreementStatistic, value = s.Agreement, items = s.AgreementItems },
                }, Json));
            else console.Out.Write(ReviewImport.Format(s));
            return CliApp.Success;
        });
        return command;
    }
}
