using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Evaluation;
using EdgeTune.Export.Gguf;
using EdgeTune.Export.Licensing;
using EdgeTune.Export.Onnx;
using EdgeTune.Formats.Onnx;
using EdgeTune.Formats.Gguf.Quantize;
using EdgeTune.Profiles.Sensors;
using EdgeTune.Recipes;

namespace EdgeTune.Cli.Commands;

internal static class ExportCommand
{
    private static readonly Dictionary<string, OnnxPrecision> Precisions = new(StringComparer.OrdinalIgnoreCase)
    {
        ["fp32"] = OnnxPrecision.Fp32,
        ["fp16"] = OnnxPrecision.Fp16,
        ["int4"] = OnnxPrecision.Int4,
    };

    public static Command Create(CliConsole console) => new("export", "Export a model for a runtime on the device.")
    {
        Onnx(console),
        CheckOnnx(console),
        Gguf(console),
    };

    private static Command Gguf(CliConsole console)
    {
        var recipe = new Argument<string?>("RECIPE") { Description = "The training recipe (TOML): base model, test split, [eval] scoring, [export] use", Arity = ArgumentArity.ZeroOrOne };
        var profile = new Option<string>("--profile") { Description = "The device: a profile name, a .toml path, or 'auto'", Required = true };
        var baseModel = new Option<string?>("--base") { Description = "The base model: a GGUF file or a Hugging Face folder, converted to float32 GGUF for the export (default: the recipe's [model] base)" };
        var adapter = new Option<string?>("--adapter") { Description = "The LoRA adapter (GGUF adapter or PEFT folder; default: adapter.gguf in the recipe's run folder when it exists)" };
        var test = new Option<string?>("--test") { Description = "The frozen test split, JSONL (default: the recipe's [eval] test or [data] test)" };
        var merge = new Option<bool>("--merge") { Description = "Merge the adapter into the weights (default): one file" };
        var separate = new Option<bool>("--separate") { Description = "The base quantised once plus the GGUF adapter, applied at run time (hot-swappable)" };
        var type = new Option<string>("--type")
        {
            Description = "auto (every fitting candidate of " + string.Join(", ", GgufExportRequest.AutoCandidates) + $", and {OnnxCandidate.Type} for a merged export on a profile with an ONNX Runtime, " +
                          "scored; the smallest not worse than base + adapter beyond noise) or one type (a GGUF type, or " + OnnxCandidate.Type + " for the ONNX folder alone)",
            DefaultValueFactory = _ => "auto",
        };
        type.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<string>() is { } v && v != "auto" && v != OnnxCandidate.Type && !LlamaFileTypes.TryParse(v, out _))
                r.AddError($"unknown --type '{v}'; choose auto, {OnnxCandidate.Type} or one of {string.Join(", ", LlamaFileTypes.All.Select(t => t.Name))}");
        });
        var context = new Option<int?>("--context") { Description = "Context length on the device, in tokens (default 4096, or the model's trained context when shorter)" };
        context.Validators.Add(r => { if (r.GetValueOrDefault<int?>() is < 1) r.AddError("--context must be at least 1"); });
        var use = new Option<string?>("--use") { Description = "Declared use the base model's licence is checked against: commercial (default), internal or research (default: the recipe's [export] use)" };
        use.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<string?>() is { } v && !ExportSection.Uses.Contains(v.ToLowerInvariant())) r.AddError($"--use '{v}': choose commercial, internal or research");
        });
        var accept = new Option<string?>("--accept-licence") { Description = "For a licence EdgeTune does not know: who accepts which terms (recorded in the model card)" };
        var output = new Option<string?>("--out") { Description = "The folder to write (must not exist or be empty; default: export-gguf-PROFILE in the recipe's run folder)" };
        var threads = new Option<int>("--threads") { Description = "CPU threads for llama.cpp and the quantiser (0: all cores)" };
        var json = new Option<bool>("--json") { Description = "Print export.json (the table, the choice, the licence decision)" };
        var registry = RunLog.RegistryOption();
        var command = new Command("gguf",
            "Export GGUF for a device profile: the adapter merged in float32 (or kept separate), each candidate type sized against the profile " +
            "(weights + KV cache at the context + runtime buffers vs the memory budget; decode bound from the bandwidth), every fitting candidate " +
            "quantised and scored on the frozen test split through llama.cpp against base + adapter (paired test), and the smallest not worse beyond " +
            "noise chosen. A merged export on a profile with an ONNX Runtime also scores the ONNX int4 folder (through ONNX Runtime GenAI), which ships when chosen. The base model's licence is checked against the declared use first. Writes the model (and adapter), fit.md/fit.json, " +
            "MODEL_CARD.md and export.json; the folder appears only when complete. Progress on stderr.\n\n" +
            "Example: edgetune export gguf runs/qlora.toml --profile jetson-orin-nano-8gb --adapter runs/qlora/adapter.gguf --out ship/")
        {
            recipe, profile, baseModel, adapter, test, merge, separate, type, context, use, accept, output, threads, json, registry,
        };
        command.SetAction((parse, cancellationToken) =>
        {
            if (parse.GetValue(merge) && parse.GetValue(separate)) throw new EdgeTuneException("--merge and --separate exclude each other; choose one");
            var (p, _) = ProfilesCommand.ResolveProfile(parse.GetValue(profile)!, new SystemRoot("/"));
            var request = GgufRequest(parse.GetValue(recipe), parse.GetValue(baseModel), parse.GetValue(adapter), parse.GetValue(test), parse.GetValue(output),
                parse.GetValue(use), parse.GetValue(threads), p) with
            {
                Mode = parse.GetValue(separate) ? GgufExportMode.Separate : GgufExportMode.Merged,
                Type = parse.GetValue(type)!,
                Context = parse.GetValue(context),
                AcceptLicence = parse.GetValue(accept),
            };
            var result = GgufExporter.Export(request, new SyncProgress<string>(line => console.Error.WriteLine($"export gguf: {line}")), cancellationToken);
            RunLog.RecordExport(console, parse.GetValue(registry), request, result);
            if (parse.GetValue(json))
            {
                console.Out.WriteLine(File.ReadAllText(Path.Combine(result.Folder, ExportCard.JsonFile)).TrimEnd());
                return Task.FromResult(CliApp.Success);
            }
            console.Out.Write(ExportCard.TableMarkdown(result));
            var l = result.Licence;
            console.Out.WriteLine($"licence: {l.Reason}");
            foreach (var o in l.Obligations) console.Out.WriteLine($"  obligation: {o}");
            console.Out.WriteLine($"wrote {result.Folder}: {Path.GetFileName(result.ModelFile)} ({result.ChosenType}, {result.ModelFileBytes} bytes)" +
                                  (result.AdapterFile is null ? "" : " + adapter.gguf") + $", {ExportCard.CardFile}, {ExportCard.JsonFile}");
            return Task.FromResult(CliApp.Success);
        });
        return command;
    }

    /// <summary>The export request from a recipe (its scoring exactly as `edgetune eval` builds it) or from flags alone.</summary>
    internal static GgufExportRequest GgufRequest(string? recipeFile, string? baseModel, string? adapter, string? test, string? outDir, string? use, int threads,
        Profiles.DeviceProfile profile)
    {
        if (recipeFile is null)
        {
            if (baseModel is null || test is null) throw new EdgeTuneException("without a RECIPE, give --base MODEL and --test FILE");
            return new GgufExportRequest
            {
                BaseModel = baseModel, Adapter = adapter, TestFile = test, Profile = profile,
                OutDir = outDir ?? $"export-gguf-{profile.Name}", Use = LicenceGate.ParseUse(use ?? "commercial"),
                Scoring = new ScoringOptions(), Threads = threads,
            };
        }
        var r = Recipe.Load(recipeFile);
        string? defaultAdapter = Path.Combine(r.Output.Dir, "adapter.gguf");
        adapter ??= File.Exists(defaultAdapter) ? defaultAdapter : null;
        var plan = EvalCommand.Plan(r, adapter, gguf: null, ggufAdapter: null, threads);
        return new GgufExportRequest
        {
            BaseModel = baseModel ?? plan.AdapterBase ?? plan.BaseModel, Adapter = plan.Adapter, TestFile = test ?? plan.TestFile, Fields = plan.Fields,
            ChatTemplate = plan.ChatTemplate, SystemPrompt = plan.SystemPrompt, MaxNewTokens = plan.MaxNewTokens, Scoring = plan.Scoring,
            Profile = profile, OutDir = outDir ?? Path.Combine(r.Output.Dir, $"export-gguf-{profile.Name}"),
            Use = LicenceGate.ParseUse(use ?? r.Export.Use), RecipeFile = recipeFile, Threads = threads,
        };
    }

    private static Command Onnx(CliConsole console)
    {
        var model = new Argument<string>("MODEL") { Description = "A GGUF file or a Hugging Face checkpoint folder (llama, mistral, qwen2)" };
        var output = new Option<string>("--out") { Description = "The folder to write (must not exist or be empty)", Required = true };
        var adapter = new Option<string?>("--adapter") { Description = "A LoRA adapter (PEFT folder or GGUF adapter) merged into the weights before quantisation" };
        var precision = new Option<string>("--precision")
        {
            Description = "fp32 (exact), fp16 (GPU form; float16 inputs and cache), int4 (MatMulNBits weights, float32 inputs: the CPU form)",
            DefaultValueFactory = _ => "fp32",
        };
        precision.Validators.Add(r =>
        {
            var v = r.GetValueOrDefault<string>();
            if (v is not null && !Precisions.ContainsKey(v)) r.AddError($"unknown --precision '{v}'; choose fp32, fp16 or int4");
        });
        var blockSize = new Option<int>("--block-size") { Description = "int4 block size along the input dimension: 16, 32, 64, 128 or 256", DefaultValueFactory = _ => 32 };
        blockSize.Validators.Add(r =>
        {
            int v = r.GetValueOrDefault<int>();
            if (v is < 16 or > 256 || (v & (v - 1)) != 0) r.AddError($"--block-size {v}: choose 16, 32, 64, 128 or 256");
        });
        var accuracy = new Option<int>("--accuracy-level")
        {
            Description = "int4 MatMulNBits accuracy_level: 0 computes in float32 (default, exact against the dequantised weights), 4 lets ONNX Runtime use int8 activations on CPU (faster)",
            DefaultValueFactory = _ => 0,
        };
        accuracy.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int>() is < 0 or > 4) r.AddError("--accuracy-level takes 0 to 4");
        });
        var json = new Option<bool>("--json") { Description = "Print what was written as JSON" };
        var command = new Command("onnx",
            "Export to a folder ONNX Runtime GenAI loads (its model builder's layout): model.onnx + model.onnx.data, genai_config.json, " +
            "tokenizer.json and tokenizer_config.json with the chat template. An adapter is merged (ONNX has no adapter hot-swap; GGUF keeps it).\n\n" +
            "Example: edgetune export onnx ./Qwen2.5-0.5B-Instruct --out ./qwen-onnx-int4 --precision int4 --adapter ./runs/ticket/adapter")
        {
            model, output, adapter, precision, blockSize, accuracy, json,
        };
        command.SetAction((parse, cancellationToken) =>
        {
            var options = new OnnxExportOptions
            {
                Precision = Precisions[parse.GetValue(precision)!],
                BlockSize = parse.GetValue(blockSize),
                AccuracyLevel = parse.GetValue(accuracy),
                Adapter = parse.GetValue(adapter),
            };
            var timer = System.Diagnostics.Stopwatch.StartNew();
            var result = console.WithProgress($"export onnx {parse.GetValue(precision)}", report =>
                OnnxExporter.Export(parse.GetValue(model)!, parse.GetValue(output)!, options,
                    new SyncProgress<(int Done, int Total, string Name)>(p => report((double)p.Done / Math.Max(1, p.Total), p.Name)), cancellationToken));
            foreach (var warning in result.Warnings) console.Error.WriteLine($"edgetune: warning: {warning}");
            if (parse.GetValue(json))
                console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    folder = result.Folder, type = result.Type, precision = result.Precision.ToString().ToLowerInvariant(), block_size = options.BlockSize,
                    model_bytes = result.ModelBytes, data_bytes = result.DataBytes, nodes = result.Nodes, initializers = result.Initializers,
                    tokenizer_files = result.TokenizerFiles, seconds = Math.Round(timer.Elapsed.TotalSeconds, 2),
                }));
            else console.Out.WriteLine(OnnxExporter.Describe(result) + string.Create(CultureInfo.InvariantCulture, $", in {timer.Elapsed.TotalSeconds:0.0} s"));
            return Task.FromResult(CliApp.Success);
        });
        return command;
    }

    private static Command CheckOnnx(CliConsole console)
    {
        var folder = new Argument<string>("DIR") { Description = "An ONNX model folder (genai_config.json, model.onnx, its external data)" };
        var command = new Command("check-onnx",
            "Check an ONNX model folder as the ONNX runtime does before loading it: genai_config.json complete, known ops, " +
            "shapes that agree with the config, external data inside its file.\n\nExample: edgetune export check-onnx ./qwen-onnx-int4")
        {
            folder,
        };
        command.SetAction(parse =>
        {
            var (config, graph) = OnnxFolder.Validate(parse.GetValue(folder)!);
            var ops = graph.Nodes.GroupBy(n => n.OpType).OrderByDescending(g => g.Count()).Select(g => $"{g.Key} {g.Count()}");
            console.Out.WriteLine($"{parse.GetValue(folder)}: ok: {config.Type}, {config.Layers} layers, {config.Heads}/{config.KvHeads} heads of {config.HeadSize}, " +
                                  $"vocabulary {config.VocabSize}, context {config.ContextLength}; {graph.Nodes.Count} nodes ({string.Join(", ", ops)})");
            return CliApp.Success;
        });
        return command;
    }
}
