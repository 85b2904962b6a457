using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Core.IO;
using EdgeTune.Core.Runs;
using EdgeTune.Data;
using EdgeTune.Inference;
using EdgeTune.Inference.LlamaCpp;
using EdgeTune.Inference.Reference;
using EdgeTune.Models.Chat;
using EdgeTune.Recipes;
using EdgeTune.Training;
using EdgeTune.Training.Distillation;

namespace EdgeTune.Cli.Commands;

internal static class DistillCommand
{
    private static readonly JsonSerializerOptions Json = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static Command Create(CliConsole console) =>
        new("distill",
            "Knowledge distillation from a tuned teacher into a smaller student sharing its tokenizer ([distill] in the recipe).\n" +
            "`train` runs the teacher pass itself when its file is missing.\n\n" +
            "Examples:\n  edgetune distill teacher recipe.toml\n  edgetune distill generate recipe.toml --prompts field.jsonl --out distilled.jsonl")
        {
            Teacher(console), Generate(console),
        };

    private static Argument<string> RecipeArgument() => new("RECIPE") { Description = "The training recipe (TOML) with a [distill] section" };

    private static Command Teacher(CliConsole console)
    {
        var recipe = RecipeArgument();
        var json = new Option<bool>("--json") { Description = "Print the file's path, positions, bytes and key as JSON" };
        var command = new Command("teacher",
            "Run the teacher once over the recipe's training split and store, per trained position, its top_k token ids and\n" +
            "log-probabilities (renormalised over the k) in [distill].logits (default: teacher-topk.bin in the run folder).\n" +
            "The file is keyed by the training file's, the teacher's and its adapter's SHA-256 and the templated examples:\n" +
            "reused while they are unchanged, recomputed here when they changed (train refuses a stale one).\n" +
            "GGUF teachers run in llama.cpp (any quantisation), Hugging Face folders in EdgeTune's reference forward.\n\n" +
            "Example: edgetune distill teacher recipe.toml")
        {
            recipe, json,
        };
        command.SetAction((parse, cancel) =>
        {
            var r = Recipe.Load(parse.GetValue(recipe)!);
            var started = DateTime.UtcNow;
            var logits = console.WithProgress("teacher", report => Trainer.PrepareTeacher(r, line => console.Error.WriteLine(line), cancel));
            long bytes = new FileInfo(r.Distill!.Logits).Length;
            double seconds = (DateTime.UtcNow - started).TotalSeconds;
            if (parse.GetValue(json))
            {
                console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    logits = r.Distill.Logits, examples = logits.Examples.Count, positions = logits.Positions, top_k = logits.TopK, bytes,
                    bytes_per_position = TeacherLogits.BytesPerPosition(logits.TopK),
                    train_sha256 = logits.Key.TrainSha256, teacher_sha256 = logits.Key.TeacherSha256, template_sha256 = logits.Key.TemplateSha256,
                }, Json));
                return Task.FromResult(CliApp.Success);
            }
            console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{r.Distill.Logits}: {logits.Examples.Count} examples, {logits.Positions} positions × top {logits.TopK} ({bytes:N0} bytes, {TeacherLogits.BytesPerPosition(logits.TopK)} B/position) in {seconds:F1} s"));
            return Task.FromResult(CliApp.Success);
        });
        return command;
    }

    private static Command Generate(CliConsole console)
    {
        var recipe = RecipeArgument();
        var prompts = new Option<string>("--prompts") { Description = "JSONL of prompts: {\"prompt\": …} (optionally \"system\"), or {\"messages\": […]} ending with a user turn", Required = true };
        var output = new Option<string>("--out") { Description = "The dataset JSONL to write ({prompt, completion, provenance}); never a frozen test split", Required = true };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Longest answer in tokens", DefaultValueFactory = _ => 256 };
        var temperature = new Option<double>("--temperature") { Description = "Sampling temperature (0: greedy, the default)", DefaultValueFactory = _ => 0 };
        var topP = new Option<double>("--top-p") { Description = "Nucleus sampling mass", DefaultValueFactory = _ => 1 };
        var seed = new Option<ulong>("--seed") { Description = "Sampling seed (recorded in the provenance)", DefaultValueFactory = _ => 42 };
        var command = new Command("generate",
            "Sequence-level distillation: the recipe's teacher answers unlabelled prompts (field data without corrections, say);\n" +
            "the answers become a dataset with provenance (teacher, its SHA-256, sampling) that data check, data split and\n" +
            "train take like any other. Refuses to write into a split folder's frozen test split or the recipe's test file.\n\n" +
            "Example: edgetune distill generate recipe.toml --prompts field.jsonl --out distilled.jsonl")
        {
            recipe, prompts, output, maxTokens, temperature, topP, seed,
        };
        command.SetAction((parse, cancel) =>
        {
            var r = Recipe.Load(parse.GetValue(recipe)!);
            var d = r.Distill ?? throw new EdgeTuneException($"{r.File}: no [distill] section (teacher = \"…\" names the model that answers)");
            string outPath = Path.GetFullPath(parse.GetValue(output)!);
            RefuseTestSplit(outPath, r);
            var rows = ReadPrompts(parse.GetValue(prompts)!);
            var options = new ModelOptions { Path = d.Teacher, Adapters = d.TeacherAdapter is null ? [] : [d.TeacherAdapter], Exact = true };
            IInferenceModel teacher;
            try
            {
                teacher = Directory.Exists(d.Teacher) ? ReferenceRuntime.Instance.Open(options, cancel) : LlamaCppRuntime.Default.Open(options, cancel);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                throw new EdgeTuneException($"{d.Teacher}: the teacher cannot be loaded: {MessageText.OneLine(e.Message)}");
            }
            using var _ = teacher;
            var sampling = new SamplingSettings(parse.GetValue(maxTokens), (float)parse.GetValue(temperature), (float)parse.GetValue(topP), parse.GetValue(seed), []);
            var hashes = new RunRegistry(r.Output.Dir);
            var provenance = new Dictionary<string, object?>
            {
                ["teacher"] = d.Teacher, ["teacher_sha256"] = hashes.HashOf(d.Teacher), ["teacher_adapter"] = d.TeacherAdapter,
                ["teacher_adapter_sha256"] = hashes.HashOf(d.TeacherAdapter),
                ["sampling"] = new { max_tokens = sampling.MaxTokens, temperature = sampling.Temperature, top_p = sampling.TopP, seed = sampling.Seed },
            };
            var text = new StringBuilder();
            int done = 0;
            console.WithProgress("generate", report =>
            {
                foreach (var (line, messages) in rows)
                {
                    cancel.ThrowIfCancellationRequested();
                    int[] ids = teacher.Tokenize(teacher.ApplyChatTemplate(messages), addSpecial: true, parseSpecial: true);
                    int room = Math.Max(0, teacher.ContextSize - ids.Length);
                    var result = teacher.Generate(ids, sampling with { MaxTokens = Math.Min(sampling.MaxTokens, room) }, null, cancel);
                    var row = new Dictionary<string, object?>();
                    if (messages.Count > 1) row["messages"] = messages.Select(m => new { role = m.Role, content = m.Content }).Append(new { role = "assistant", content = result.Text }).ToList();
                    else { row["prompt"] = messages[0].Content; row["completion"] = result.Text; }
                    row["provenance"] = new Dictionary<string, object?>(provenance) { ["prompts"] = $"{Path.GetFullPath(parse.GetValue(prompts)!)}:{line}", ["finish"] = result.FinishReason };
                    text.Append(JsonSerializer.Serialize(row, Json)).Append('\n');
                    report((double)++done / rows.Count, $"{done}/{rows.Count} prompts");
                }
                return 0;
            });
            Directory.CreateDirectory(Path.GetDirectoryName(outPath)!);
            DurableFiles.WriteAllText(outPath, text.ToString());
            console.Out.WriteLine($"{outPath}: {rows.Count} answers by {d.Teacher}");
            return Task.FromResult(CliApp.Success);
        });
        return command;
    }

    /// <summary>A split folder's test.jsonl (its manifest freezes it) and the recipe's own test file are never written.</summary>
    private static void RefuseTestSplit(string outPath, Recipe r)
    {
        string dir = Path.GetDirectoryName(outPath)!;
        if (string.Equals(Path.GetFileName(outPath), "test.jsonl", StringComparison.Ordinal) && File.Exists(Path.Combine(dir, Manifest.FileName)))
            throw new EdgeTuneException($"{outPath}: is the frozen test split of {Path.Combine(dir, Manifest.FileName)}; teacher answers must not go into it (write elsewhere, then `edgetune data split`)");
        if (r.Data.Test is { } test && string.Equals(Path.GetFullPath(test), outPath, StringComparison.Ordinal))
            throw new EdgeTuneException($"{outPath}: is the recipe's [data].test ({r.File}); teacher answers must not go into the test split");
    }

    /// <summary>The prompts as chat turns, with their line numbers; a malformed line is one error naming the file and line.</summary>
    private static List<(int Line, List<ChatMessage> Messages)> ReadPrompts(string path)
    {
        if (!File.Exists(path)) throw new EdgeTuneException($"{path}: no such prompts file");
        var rows = new List<(int, List<ChatMessage>)>();
        int line = 0;
        foreach (string text in File.ReadLines(path))
        {
            line++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            EdgeTuneException Bad(string why) => new($"{path}:{line}: {why}");
            JsonElement e;
            try { e = JsonDocument.Parse(text).RootElement; }
            catch (JsonException x) { throw Bad($"not JSON: {MessageText.OneLine(x.Message)}"); }
            var messages = new List<ChatMessage>();
            if (e.ValueKind == JsonValueKind.Object && e.TryGetProperty("prompt", out var p) && p.ValueKind == JsonValueKind.String)
            {
                if (e.TryGetProperty("system", out var s) && s.ValueKind == JsonValueKind.String) messages.Add(new ChatMessage("system", s.GetString()!));
                messages.Add(new ChatMessage("user", p.GetString()!));
            }
            else if (e.ValueKind == JsonValueKind.Object && e.TryGetProperty("messages", out var m) && m.ValueKind == JsonValueKind.Array)
            {
                foreach (var turn in m.EnumerateArray())
                {
                    if (turn.ValueKind != JsonValueKind.Object || !turn.TryGetProperty("role", out var role) || !turn.TryGetProperty("content", out var content)
                        || role.ValueKind != JsonValueKind.String || content.ValueKind != JsonValueKind.String)
                        throw Bad("every message needs a string role and content");
                    messages.Add(new ChatMessage(role.GetString()!, content.GetString()!));
                }
                if (messages.Count == 0 || messages[^1].Role != "user") throw Bad("the messages must end with a user turn (the teacher answers it)");
            }
            else throw Bad("expected {\"prompt\": \"…\"} or {\"messages\": [...]}");
            if (messages[^1].Content.Length == 0) throw Bad("empty prompt");
            rows.Add((line, messages));
        }
        if (rows.Count == 0) throw new EdgeTuneException($"{path}: no prompts");
        return rows;
    }
}
