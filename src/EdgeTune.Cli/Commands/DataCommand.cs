using System.CommandLine;
using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Data;
using EdgeTune.Data.Templating;

namespace EdgeTune.Cli.Commands;

/// <summary><c>edgetune data check|split|ingest|stats</c>: the quality report, the leak-proof split, new data, the dataset card.</summary>
internal static class DataCommand
{
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static Command Create(CliConsole console) =>
        new("data",
            "Training data: check its quality and split it into train, eval and test without leaks.\n\n" +
            "Example: edgetune data check support.jsonl --model ./Qwen3-0.6B")
        {
            Check(console), Split(console), Ingest(console), Stats(console), Fingerprint(console),
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

    private static Command Fingerprint(CliConsole console)
    {
        var file = new Argument<string>("FILE") { Description = "The training split (JSONL, JSON or CSV, as `data check` reads it)" };
        var model = new Option<string>("--model") { Description = "The model whose tokenizer the device uses (.gguf file or Hugging Face folder)", Required = true };
        var output = new Option<string>("--out") { Description = "The fingerprint file to write (JSON)", Required = true };
        var map = Map();
        var json = new Option<bool>("--json") { Description = "Print the fingerprint's summary as JSON" };
        var command = new Command("fingerprint",
            "Write the training set's drift fingerprint: the prompt-length histogram and the token distribution of the prompts (the non-assistant " +
            "messages, in the model's tokens, hashed into 1,024 buckets), and the keys every answer has when all answers are JSON objects. " +
            "Ship it in a bundle (`bundle create --drift-fingerprint`) or point the agent's [drift] fingerprint at it: the agent compares live " +
            "traffic against it (PSI, Jensen-Shannon divergence, format validity) on /metrics and in fleet status.\n\n" +
            "Example: edgetune data fingerprint data/train.jsonl --model model.gguf --out fingerprint.json")
        {
            file, model, output, map, json,
        };
        command.SetAction(parse =>
        {
            string path = parse.GetValue(file)!;
            if (!File.Exists(path)) throw new EdgeTuneException($"{path}: no such file");
            var (_, tokenizer, _) = Templater.LoadModel(parse.GetValue(model)!);
            var fields = parse.GetValue(map) is { } m ? FieldMapping.Parse(m) : FieldMapping.Default;
            var examples = new List<(IReadOnlyList<int>, string)>();
            int skipped = 0;
            foreach (var item in DatasetReader.Read(path, new ReadOptions { Fields = fields }))
            {
                if (item.Example is not { } e) { skipped++; continue; }
                string prompt = string.Join("\n", e.Messages.Where(x => x.Role != "assistant").Select(x => x.Content));
                examples.Add((tokenizer.Encode(prompt, addSpecialTokens: false, parseSpecial: false), e.Answer));
            }
            var fingerprint = EdgeTune.Core.Drift.DriftFingerprint.Compute(examples, $"{Path.GetFileName(path)} ({examples.Count} examples)");
            fingerprint.Write(parse.GetValue(output)!);
            if (skipped > 0) console.Error.WriteLine($"edgetune: {skipped} unreadable rows left out (`edgetune data check {path}` names them)");
            var peak = fingerprint.PromptLengths.Select((v, i) => (v, i)).MaxBy(x => x.v);
            string peakBin = peak.i == fingerprint.LengthBounds.Count ? $">= {fingerprint.LengthBounds[^1]}" : $"< {fingerprint.LengthBounds[peak.i]}";
            if (parse.GetValue(json))
                console.Out.WriteLine(JsonSerializer.Serialize(new { file = Path.GetFullPath(parse.GetValue(output)!), examples = fingerprint.Examples, answer_keys = fingerprint.AnswerKeys, prompt_lengths = fingerprint.PromptLengths }, Json));
            else
            {
                string answers = fingerprint.AnswerKeys is { } keys ? $"answers are JSON objects with {string.Join(", ", keys)}" : "free-text answers (no format check)";
                console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wrote {parse.GetValue(output)}: {fingerprint.Examples} examples; most prompts {peakBin} tokens ({peak.v * 100:0}%); {answers}"));
            }
            return CliApp.Success;
        });
        return command;
    }

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
                // A marker the vocabulary has only as text is learned as text: say so once, with the fix.
                if (template.EndOfTurnWarning(tokenizer) is { } endOfTurn) console.Error.WriteLine($"edgetune: warning: {endOfTurn}");
                var templater = new Templater(template, tokenizer);
                options = options with { TokenCount = templater.CountTokens, MaxTokens = parse.GetValue(maxTokens) ?? context ?? 4096 };
            }
            var read = new ReadOptions { Fields = FieldMapping.Parse(parse.GetValue(map)) };
            var checker = new DataChecker(options);
            foreach (var file in parse.GetValue(files)!) checker.AddFile(file);
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
        var stratify = new Option<string?>("--stratify")
        {
            Description = "Count the split within each value of FIELD (with --exact-proportions: cut each at exactly the fractions): a key or column " +
                "of the row (dotted path for nested objects), else a key of the answer when the answer is a JSON object; rows without it form the stratum (missing)",
        };
        var exact = new Option<bool>("--exact-proportions")
        {
            Description = "Cut at the quantiles of this file's draws (per stratum with --stratify) so the fractions hold exactly. Caveat: the cut then " +
                "depends on the rows present, so splitting a grown file from scratch can move earlier rows (a test row into train); split into the same --out instead",
        };
        var map = Map();
        var json = new Option<bool>("--json") { Description = "Print the counts as JSON" };
        var command = new Command("split",
            "Split examples into train, eval and test by a seeded hash of each normalised example against fixed thresholds " +
            "(below --test: test; below --test + --eval: eval; else train): a row's split depends on its own text, never on the other rows, so " +
            "splitting a grown file again, even from scratch into a new folder, moves no earlier row. Near-duplicates share a split (the " +
            "strictest any of them would get alone), exact duplicates are written once. A test split already in --out is frozen. The folder " +
            "changes as a whole: a crash leaves the old split or the new one.\n\n" +
            "Example: edgetune data split support.jsonl --out data/ --test 0.15 --eval 0.05 --seed 1 --stratify label")
        {
            files, outDir, test, eval, seed, force, stratify, exact, map, json,
        };
        command.SetAction(parse =>
        {
            string dir = parse.GetValue(outDir)!;
            var result = DatasetSplitter.Split(parse.GetValue(files)!, dir, new SplitOptions
            {
                Test = parse.GetValue(test), Eval = parse.GetValue(eval), Seed = parse.GetValue(seed), Force = parse.GetValue(force),
                Stratify = string.IsNullOrWhiteSpace(parse.GetValue(stratify)) ? null : parse.GetValue(stratify)!.Trim(),
                ExactProportions = parse.GetValue(exact),
                Read = new ReadOptions { Fields = FieldMapping.Parse(parse.GetValue(map)) },
            });
            if (parse.GetValue(exact))
                console.Error.WriteLine("edgetune: note: --exact-proportions cuts at the quantiles of these rows: splitting a grown file from scratch " +
                    "(--force, or a new --out) can then move earlier rows, a test row into train among them; split into this --out again to keep them where they are");
            foreach (var f in result.Findings) console.Error.WriteLine($"edgetune: skipped: {f}");
            if (parse.GetValue(json))
                console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    counts = result.Counts, duplicates = result.Duplicates, skipped = result.Findings.Count, manifest = Path.Combine(dir, Manifest.FileName),
                    strata = result.Strata?.ToDictionary(kv => kv.Key, kv => kv.Value.Counts),
                }, Json));
            else
            {
                console.Out.WriteLine($"train {result.Counts["train"]}, eval {result.Counts["eval"]}, test {result.Counts["test"]} → {dir} " +
                    $"({result.Duplicates} duplicate(s) written once, {result.Findings.Count} unreadable row(s) skipped)");
                foreach (var (name, stratum) in result.Strata ?? new Dictionary<string, ManifestStratum>())
                {
                    var c = stratum.Counts;
                    int all = c.Values.Sum();
                    console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"  {parse.GetValue(stratify)} = {name}: train {c["train"]}, eval {c["eval"]}, test {c["test"]} ({100.0 * c["eval"] / all:0.0}% eval, {100.0 * c["test"] / all:0.0}% test)"));
                }
            }
            if (result.Strata?.GetValueOrDefault(Strata.Missing) is { } missing)
                console.Error.WriteLine($"edgetune: note: {missing.Counts.Values.Sum()} row(s) have no '{parse.GetValue(stratify)}' (not in the row, nor a key of a JSON answer): they form the stratum {Strata.Missing}");
            return CliApp.Success;
        });
        return command;
    }

    private static Command Ingest(CliConsole console)
    {
        var file = new Argument<string>("NEW") { Description = "New examples (JSONL, JSON or CSV), e.g. field data from the device agent" };
        var into = new Option<string>("--into") { Description = "A split folder (made by edgetune data split)", Required = true };
        var source = new Option<string?>("--source") { Description = "Provenance: where the rows come from (kept when a row states its own)" };
        var device = new Option<string?>("--device") { Description = "Provenance: the device that produced them" };
        var growTest = new Option<bool>("--grow-test") { Description = "Add rows that the hash rule puts in test to test.jsonl (default: hold them back in heldback.jsonl)" };
        var map = Map();
        var json = new Option<bool>("--json") { Description = "Print the result as JSON" };
        var command = new Command("ingest",
            "Add new examples to a split folder: provenance added, duplicates of any split skipped, matches of the frozen test split refused, the rest placed by the folder's hash rule. " +
            "Rows and manifest change together: a crash leaves the folder as it was or with every new row. " +
            "Exit 1 when a row matched the test split or could not be read (the other rows are added).\n\n" +
            "Example: edgetune data ingest field-2026-03.jsonl --into data/ --source field --device pi5-01")
        {
            file, into, source, device, growTest, map, json,
        };
        command.SetAction(parse =>
        {
            var provenance = new Dictionary<string, string>();
            if (parse.GetValue(source) is { } s) provenance["source"] = s;
            if (parse.GetValue(device) is { } d) provenance["device"] = d;
            var result = DatasetIngester.Ingest(parse.GetValue(file)!, parse.GetValue(into)!, new IngestOptions
            {
                Provenance = provenance, GrowTest = parse.GetValue(growTest), Read = new ReadOptions { Fields = FieldMapping.Parse(parse.GetValue(map)) },
            });
            if (parse.GetValue(json))
            {
                var findings = result.Findings.Select(f => new { kind = f.Kind, severity = f.SeverityName, file = f.File, line = f.Line, message = f.Message });
                console.Out.WriteLine(JsonSerializer.Serialize(new { added = result.Added, duplicates = result.Duplicates, held_back = result.HeldBack, findings }, Json));
            }
            else
            {
                foreach (var f in result.Findings) console.Out.WriteLine(f.ToString());
                console.Out.WriteLine($"added: train {result.Added["train"]}, eval {result.Added["eval"]}, test {result.Added["test"]}; " +
                    $"{result.Duplicates} duplicate(s) skipped, {result.HeldBack} held back (test by the hash rule), {result.Findings.Count} refused or unreadable");
            }
            return result.Findings.Any(f => f.Severity == Severity.Error) ? CliApp.Failure : CliApp.Success;
        });
        return command;
    }

    private static Command Stats(CliConsole console)
    {
        var paths = new Argument<string[]>("PATH") { Description = "A split folder, or data files", Arity = ArgumentArity.OneOrMore };
        var model = new Option<string?>("--model") { Description = "A .gguf file or Hugging Face folder: length percentiles in tokens once templated" };
        var card = new Option<string?>("--card") { Description = "Write the dataset card (Markdown) to this file" };
        var map = Map();
        var json = new Option<bool>("--json") { Description = "Print the figures as JSON" };
        var command = new Command("stats",
            "Counts per split or file, token-length percentiles (with --model), labels, sources and the check summary; --card writes them as a Markdown dataset card.\n\n" +
            "Example: edgetune data stats data/ --model ./Qwen3-0.6B --card data/CARD.md")
        {
            paths, model, card, map, json,
        };
        command.SetAction(parse =>
        {
            Func<DatasetExample, int>? count = null;
            if (parse.GetValue(model) is { } path)
            {
                var (template, tokenizer, _) = Templater.LoadModel(path);
                count = new Templater(template, tokenizer).CountTokens;
            }
            var list = parse.GetValue(paths)!;
            var stats = DatasetStats.Compute(list, count, new ReadOptions { Fields = FieldMapping.Parse(parse.GetValue(map)) });
            string markdown = stats.ToMarkdown(string.Join(", ", list.Select(p => Path.GetFileName(Path.TrimEndingDirectorySeparator(p)))));
            if (parse.GetValue(card) is { } cardPath) File.WriteAllText(cardPath, markdown);
            if (parse.GetValue(json))
                console.Out.WriteLine(JsonSerializer.Serialize(new { parts = stats.Parts, tokens = stats.Tokens, labels = stats.Labels, sources = stats.Sources, check = stats.Check.Summary }, Json));
            else console.Out.Write(markdown);
            return CliApp.Success;
        });
        return command;
    }
}
