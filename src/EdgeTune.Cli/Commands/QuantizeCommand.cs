using System.CommandLine;
using System.Globalization;
using EdgeTune.Core;
using EdgeTune.Formats.Gguf.Quantize;

namespace EdgeTune.Cli.Commands;

internal static class QuantizeCommand
{
    public static Command Create(CliConsole console)
    {
        var input = new Argument<string>("IN.gguf") { Description = "The model to quantise (F32, F16 or BF16 weights)" };
        var output = new Argument<string>("OUT.gguf") { Description = "Where to write the quantised model" };
        var type = new Argument<string>("TYPE")
        {
            Description = "llama-quantize's type names: " + string.Join(", ", LlamaFileTypes.All.Select(t => t.Name)),
        };
        type.Validators.Add(result =>
        {
            var value = result.GetValueOrDefault<string>();
            if (value is not null && !LlamaFileTypes.TryParse(value, out _))
                result.AddError($"unknown quantisation type '{value}'; choose one of {string.Join(", ", LlamaFileTypes.All.Select(t => t.Name))}");
        });
        var pure = new Option<bool>("--pure") { Description = "Use TYPE for every quantisable tensor, without llama.cpp's per-tensor mix rules" };
        var threads = new Option<int>("--threads") { Description = "Worker threads (default: one per core)" };
        threads.Validators.Add(r => { if (r.GetValueOrDefault<int>() < 0) r.AddError("--threads must be 0 or more"); });
        var requantize = new Option<bool>("--allow-requantize") { Description = "Allow already-quantised tensors to be quantised again (loses quality)" };
        var json = new Option<bool>("--json") { Description = "Print the per-tensor plan and sizes as JSON" };
        var dryRun = new Option<bool>("--dry-run") { Description = "Show the type each tensor would get and the resulting size; write nothing" };

        var command = new Command("quantize",
            "Quantise a GGUF model with llama.cpp's algorithms and type mixes (the bytes equal llama-quantize's).\n\n" +
            "Example: edgetune quantize model-f32.gguf model-q4_k_m.gguf Q4_K_M --threads 8")
        {
            input, output, type, pure, threads, requantize, json, dryRun,
        };
        command.SetAction((parse, cancellationToken) =>
        {
            var fileType = LlamaFileTypes.Parse(parse.GetValue(type)!);
            var options = new QuantizeOptions
            {
                Pure = parse.GetValue(pure),
                Threads = parse.GetValue(threads),
                AllowRequantize = parse.GetValue(requantize),
            };
            string inPath = parse.GetValue(input)!, outPath = parse.GetValue(output)!;
            if (!File.Exists(inPath)) throw new EdgeTuneException($"{inPath}: no such file");

            QuantizeResult result;
            if (parse.GetValue(dryRun))
            {
                using var model = Formats.Gguf.GgufFile.Open(inPath);
                var plan = QuantPlan.Create(model, fileType, options.Pure);
                result = new QuantizeResult(plan, model.FileSize, plan.Sum(p => p.TargetBytes), TimeSpan.Zero);
            }
            else
            {
                result = console.WithProgress($"quantize {LlamaFileTypes.Name(fileType)}", report =>
                    GgufQuantizer.Run(inPath, outPath, fileType, options,
                        new SyncProgress<QuantizeProgress>(p => report((double)p.BytesDone / Math.Max(1, p.BytesTotal), p.Tensor)),
                        cancellationToken));
            }

            if (parse.GetValue(json)) WriteJson(console.Out, result, fileType, outPath, parse.GetValue(dryRun));
            else WriteText(console, result, fileType, outPath, parse.GetValue(dryRun));
            return Task.FromResult(CliApp.Success);
        });
        return command;
    }

    private static void WriteText(CliConsole console, QuantizeResult r, LlamaFileType fileType, string outPath, bool dryRun)
    {
        var o = console.Out;
        int nameWidth = r.Plan.Count == 0 ? 4 : Math.Min(48, r.Plan.Max(p => p.Source.Name.Length));
        foreach (var p in r.Plan)
        {
            string change = p.Converts ? $"{GgmlTypes.Name(p.Source.Type)} -> {GgmlTypes.Name(p.Target)}" : $"{GgmlTypes.Name(p.Target)} (kept)";
            o.WriteLine($"  {p.Source.Name.PadRight(nameWidth)}  {change}{(p.FellBack ? "  (fallback: rows not whole blocks)" : "")}");
        }
        long weights = r.Plan.Sum(p => p.Source.ElementCount);
        double bpw = weights == 0 ? 0 : r.Plan.Sum(p => p.TargetBytes) * 8.0 / weights;
        string verb = dryRun ? "would write" : "wrote";
        o.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{verb} {outPath}: {LlamaFileTypes.Name(fileType)}, {ModelSummary.Bytes(r.InputBytes)} -> {ModelSummary.Bytes(r.OutputBytes)}, {bpw:0.00} bits per weight"));
        if (!dryRun && r.Elapsed.TotalSeconds > 0)
            o.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {r.Elapsed.TotalSeconds:0.00} s, {r.InputBytes / 1e6 / r.Elapsed.TotalSeconds:0.0} MB/s of input"));
    }

    private static void WriteJson(TextWriter o, QuantizeResult r, LlamaFileType fileType, string outPath, bool dryRun)
    {
        using var buffer = new MemoryStream();
        using (var w = new System.Text.Json.Utf8JsonWriter(buffer, new System.Text.Json.JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("output", outPath);
            w.WriteBoolean("dry_run", dryRun);
            w.WriteString("type", LlamaFileTypes.Name(fileType));
            w.WriteNumber("input_bytes", r.InputBytes);
            w.WriteNumber("output_bytes", r.OutputBytes);
            w.WriteNumber("seconds", r.Elapsed.TotalSeconds);
            w.WriteStartArray("tensors");
            foreach (var p in r.Plan)
            {
                w.WriteStartObject();
                w.WriteString("name", p.Source.Name);
                w.WriteString("from", GgmlTypes.Name(p.Source.Type));
                w.WriteString("to", GgmlTypes.Name(p.Target));
                w.WriteBoolean("fallback", p.FellBack);
                w.WriteNumber("bytes", p.TargetBytes);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        o.WriteLine(System.Text.Encoding.UTF8.GetString(buffer.ToArray()));
    }
}
