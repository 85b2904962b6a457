using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using EdgeTune.Export.Onnx;
using EdgeTune.Formats.Onnx;

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
    };

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
