using System.CommandLine;
using System.Text.Encodings.Web;
using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Models.Tokenizers;

namespace EdgeTune.Cli.Commands;

internal static class TokenizeCommand
{
    public static Command Create(CliConsole console)
    {
        var model = new Option<string>("--model") { Description = "A .gguf file, or a Hugging Face folder with tokenizer.json", Required = true };
        var text = new Option<string>("--text") { Description = "The text to tokenize (special-token text such as <|eot_id|> becomes its id)", Required = true };
        var json = new Option<bool>("--json") { Description = "Print ids, pieces and their text as JSON" };
        var command = new Command("tokenize",
            "Show the token ids and pieces of a text, as Hugging Face (tokenizer.json) or llama.cpp (GGUF) tokenizes it, BOS/EOS included.\n\n" +
            "Example: edgetune tokenize --model ./Llama-3.2-1B-Instruct --text \"Hello world\" --json")
        {
            model, text, json,
        };
        command.SetAction(parse =>
        {
            string path = parse.GetValue(model)!;
            var (tokenizer, kind) = Load(path);
            var ids = tokenizer.Encode(parse.GetValue(text)!);
            if (parse.GetValue(json)) WriteJson(console.Out, path, kind, tokenizer, ids);
            else WriteText(console.Out, path, kind, tokenizer, ids);
            return CliApp.Success;
        });
        return command;
    }

    internal static (ITokenizer Tokenizer, string Kind) Load(string path)
    {
        if (Directory.Exists(path)) return (HuggingFaceTokenizer.Load(path), "huggingface");
        if (!File.Exists(path)) throw new EdgeTuneException($"{path}: no such file or folder");
        using var file = GgufFile.Open(path);
        return (GgufTokenizer.FromMetadata(file.Metadata, path), "gguf");
    }

    private static void WriteText(TextWriter o, string path, string kind, ITokenizer t, IReadOnlyList<int> ids)
    {
        o.WriteLine($"{ids.Count} tokens ({kind} tokenizer of {path})");
        int width = ids.Count == 0 ? 1 : ids.Max().ToString(System.Globalization.CultureInfo.InvariantCulture).Length;
        foreach (int id in ids)
            o.WriteLine($"  {id.ToString(System.Globalization.CultureInfo.InvariantCulture).PadLeft(width)}  {t.Piece(id)}  {JsonSerializer.Serialize(t.Decode([id]), Relaxed)}");
    }

    private static readonly JsonSerializerOptions Relaxed = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static void WriteJson(TextWriter o, string path, string kind, ITokenizer t, IReadOnlyList<int> ids)
    {
        var report = new
        {
            model = path,
            tokenizer = kind,
            count = ids.Count,
            ids,
            pieces = ids.Select(t.Piece).ToArray(),
            // The text each token stands for; a token holding part of a UTF-8 character shows U+FFFD.
            texts = ids.Select(id => t.Decode([id])).ToArray(),
            special = ids.Select(t.IsSpecial).ToArray(),
        };
        o.WriteLine(JsonSerializer.Serialize(report, new JsonSerializerOptions(Relaxed) { WriteIndented = true }));
    }
}
