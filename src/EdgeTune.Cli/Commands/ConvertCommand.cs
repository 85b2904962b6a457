using System.CommandLine;
using System.Globalization;
using EdgeTune.Core;
using EdgeTune.Models.Conversion;
using EdgeTune.Models.Tokenizers;

namespace EdgeTune.Cli.Commands;

internal static class ConvertCommand
{
    private static readonly Dictionary<string, GgmlType> OutTypes = new(StringComparer.OrdinalIgnoreCase)
    {
        ["f32"] = GgmlType.F32,
        ["f16"] = GgmlType.F16,
        ["bf16"] = GgmlType.BF16,
        ["q8_0"] = GgmlType.Q8_0,
    };

    public static Command Create(CliConsole console)
    {
        var input = new Argument<string>("HF_DIR") { Description = "A Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json)" };
        var output = new Argument<string>("OUT.gguf") { Description = "The GGUF file to write" };
        var outType = new Option<string>("--outtype")
        {
            Description = "Type of the 2-D weights: f32, f16 (default, as convert_hf_to_gguf.py), bf16 or q8_0; norms and biases stay f32",
            DefaultValueFactory = _ => "f16",
        };
        outType.Validators.Add(r =>
        {
            var v = r.GetValueOrDefault<string>();
            if (v is not null && !OutTypes.ContainsKey(v)) r.AddError($"unknown --outtype '{v}'; choose f32, f16, bf16 or q8_0");
        });
        var json = new Option<bool>("--json") { Description = "Print a summary of the written file as JSON" };
        var command = new Command("convert",
            "Convert a Hugging Face llama-family checkpoint (llama, mistral, qwen2) to a GGUF that llama.cpp runs: weights, tokenizer, chat template and metadata.\n\n" +
            "Example: edgetune convert ./Llama-3.2-1B-Instruct llama-3.2-1b-f16.gguf --outtype f16")
        {
            input, output, outType, json,
        };
        command.SetAction((parse, cancellationToken) =>
        {
            string folder = parse.GetValue(input)!, outPath = parse.GetValue(output)!;
            if (!Directory.Exists(folder)) throw new EdgeTuneException($"{folder}: no such folder (convert takes a Hugging Face checkpoint folder)");
            var type = OutTypes[parse.GetValue(outType)!];
            // Read the tokenizer before touching the weights: a broken tokenizer.json should fail in a second, not after minutes.
            var vocabulary = GgufVocabulary.FromHuggingFace(folder);
            var timer = System.Diagnostics.Stopwatch.StartNew();
            var config = console.WithProgress($"convert {GgmlTypes.Name(type)}", report =>
                HfToGgufConverter.Convert(folder, outPath, type, metadata =>
                    {
                        foreach (var (key, value) in vocabulary) metadata.Set(key, value);
                    },
                    new SyncProgress<(int Done, int Total, string Name)>(p => report((double)p.Done / Math.Max(1, p.Total), p.Name)),
                    cancellationToken));
            timer.Stop();

            var summary = ModelSummary.FromGguf(outPath);
            if (parse.GetValue(json))
            {
                using var buffer = new MemoryStream();
                summary.WriteJson(buffer);
                console.Out.WriteLine(System.Text.Encoding.UTF8.GetString(buffer.ToArray()));
            }
            else
            {
                console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"wrote {outPath}: {config.Architecture}, {ModelSummary.Count(summary.ParameterCount)} parameters, {summary.Tensors.Count} tensors, " +
                    $"{ModelSummary.Bytes(summary.FileSize)}, weights {GgmlTypes.Name(type)}, in {timer.Elapsed.TotalSeconds:0.0} s"));
                console.Out.WriteLine($"  vocabulary: {summary.Metadata.First(m => m.Key == "tokenizer.ggml.model").Display}, " +
                                      $"{summary.Metadata.First(m => m.Key == "tokenizer.ggml.tokens").Value!.ArrayLength} tokens" +
                                      (summary.Metadata.Any(m => m.Key == "tokenizer.chat_template") ? ", chat template included" : ", no chat template"));
            }
            return Task.FromResult(CliApp.Success);
        });
        return command;
    }
}
