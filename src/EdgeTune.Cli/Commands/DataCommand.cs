using System.CommandLine;
using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Data;
using EdgeTune.Data.Templating;

namespace EdgeTune.Cli.Commands;

/// <summary><c>edgetune data check|split</c>: the dataset's quality report and its leak-proof split.</summary>
internal static class DataCommand
{
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static Command Create(CliConsole console) =>
        new("data",
            "Training data: check its quality and split it into train, eval and test without leaks.\n\n" +
            "Example: edgetune data check support.jsonl --model ./Qwen3-0.6B")
        {
            Check(console), Split(console),
        };

    private static Argument<string[]> Files() => new("FILE")
    {
        Description = "JSONL, JSON (an array) or CSV files: {instruction, input, output}, {messages}, {prompt, completion|response}",
        Arity = ArgumentArity.OneOrMore,
    };

    private static Option<string?> Map() => new("--map")
    {
        Description = "Other field or column names, as TARGET=FIELD,… (targets: messages, instruction, input, output, prompt, completion, system, label)",
    };

    private static Command Check(CliConsole console)
    {
        var files = Files();
        var model = new Option<string?>("--model") { Description = "A .gguf file or Hugging Face folder: measure each example in tokens once rendered with its chat template" };
        var maxTokens = new Option<int?>("--max-tokens") { Description = "Token limit per example (default: the model's context length, else 4096)" };
        var map = Map();
        var json = new Option<bool>("--json") { Description = "Print {\"findings\": [...], \"summary\": {...}} as JSON" };
        var command = new Command("check",
            "Report malformed lines, empty answers, duplicates and near-duplicates, conflicting answers, answers unlike the majority's format, " +
            "over-length examples (with --model), label balance, PII (e-mail, phone, card numbers) and the dataset's size against the usual guidance. " +
            "Exit 1 when there are errors, 0 with warnings only.\n\n" +
            "Example: edgetune data check train.jsonl extra.csv --model model.gguf --json")
        {
            files, model, maxTokens, map, json,
        };
        command.SetAction(parse =>
        {
            var options = new CheckOptions();
            if (parse.GetValue(model) is { } path)
            {
                var (template, tokenizer, context) = Templater.LoadModel(path);
                var templater = new Templater(template, tokenizer);
                options = options with { TokenCount = templater.CountTokens, MaxTokens = parse.GetValue(maxTokens) ?? context ?? 4096 };
            }
            var read = new ReadOptions { Fields = FieldMapping.Parse(parse.GetValue(map)) };
            var checker = new DataChecker(options);
            foreach (var item in DatasetReader.ReadAll(parse.GetValue(files)!, read)) checker.Add(item);
            var report = checker.Finish();

            if (parse.GetValue(json))
            {
                var findings = report.Findings.Select(f => new { kind = f.Kind, severity = f.SeverityName, file = f.File, line = f.Line, message = f.Message });
                console.Out.WriteLine(JsonSerializer.Serialize(new { findings, summary = report.Summary }, Json));
            }
            else
            {
                foreach (var f in report.Findings) console.Out.WriteLine(f.ToString());
                console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{report.Summary["examples"]} examples in {report.Summary["files"]} file(s): {report.Errors} error(s), {report.Warnings} warning(s); size: {report.Summary["size_guidance"]}"));
            }
            return report.Errors > 0 ? CliApp.Failure : CliApp.Success;
        });
        return command;
    }

    private static Command Split(CliConsole console)
    {
        var files = Files();
        var outDir = new Option<string>("--out") { Description = "Folder for train.jsonl, eval.jsonl, test.jsonl and manifest.json", Required = true };
        var test = new Option<double>("--test") { Description = "Fraction for the test split", DefaultValueFactory = _ => 0.15 };
        var eval = new Option<double>("--eval") { Description = "Fraction for the eval split", DefaultValueFactory = _ => 0.05 };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the hash rule", DefaultValueFactory = _ => 0 };
        var force = new Option<bool>("--force") { Description = "Split from scratch even when that changes the frozen test split of --out" };
        var map = Map();
        var json = new Option<bool>("--json") { Description = "Print the counts as JSON" };
        var command = new Command("split",
            "Split examples into train, eval and test by a seeded hash of each normalised example: appending rows never moves a row, " +
            "near-duplicates share a split, exact duplicates are written once. A test split already in --out is frozen.\n\n" +
            "Example: edgetune data split support.jsonl --out data/ --test 0.15 --eval 0.05 --seed 1")
        {
            files, outDir, test, eval, seed, force, map, json,
        };
        command.SetAction(parse =>
        {
            string dir = parse.GetValue(outDir)!;
            var result = DatasetSplitter.Split(parse.GetValue(files)!, dir, new SplitOptions
            {
                Test = parse.GetValue(test), Eval = parse.GetValue(eval), Seed = parse.GetValue(seed), Force = parse.GetValue(force),
                Read = new ReadOptions { Fields = FieldMapping.Parse(parse.GetValue(map)) },
            });
            foreach (var f in result.Findings) console.Error.WriteLine($"edgetune: skipped: {f}");
            if (parse.GetValue(json))
                console.Out.WriteLine(JsonSerializer.Serialize(new { counts = result.Counts, duplicates = result.Duplicates, skipped = result.Findings.Count, manifest = Path.Combine(dir, Manifest.FileName) }, Json));
            else
                console.Out.WriteLine($"train {result.Counts["train"]}, eval {result.Counts["eval"]}, test {result.Counts["test"]} → {dir} " +
                    $"({result.Duplicates} duplicate(s) written once, {result.Findings.Count} unreadable row(s) skipped)");
            return CliApp.Success;
        });
        return command;
    }
}
