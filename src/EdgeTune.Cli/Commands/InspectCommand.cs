using System.CommandLine;
using EdgeTune.Core;

namespace EdgeTune.Cli.Commands;

internal static class InspectCommand
{
    public static Command Create(CliConsole console)
    {
        var path = new Argument<string>("PATH") { Description = "A .gguf file, a .safetensors file, or a Hugging Face checkpoint folder" };
        var json = new Option<bool>("--json") { Description = "Print the report as JSON (long arrays summarised)" };
        var all = new Option<bool>("--all") { Description = "List every tensor (the text report shows the first 40)" };
        var command = new Command("inspect", "Show a model's architecture, metadata, tensors, parameter count, size and licence.\n\n" +
                                              "Example: edgetune inspect model.gguf --json")
        {
            path, json, all,
        };
        command.SetAction(parse =>
        {
            var summary = Summarise(parse.GetValue(path)!);
            if (parse.GetValue(json))
            {
                console.Out.Flush();
                using var stdout = new MemoryStream();
                summary.WriteJson(stdout);
                console.Out.WriteLine(System.Text.Encoding.UTF8.GetString(stdout.ToArray()));
            }
            else summary.WriteText(console.Out, parse.GetValue(all) ? 0 : 40);
            return CliApp.Success;
        });
        return command;
    }

    internal static ModelSummary Summarise(string path)
    {
        if (Directory.Exists(path)) return CheckpointSummary.FromFolder(path);
        if (!File.Exists(path)) throw new EdgeTuneException($"{path}: no such file or folder");
        Span<byte> magic = stackalloc byte[4];
        int read;
        using (var f = File.OpenRead(path)) read = f.ReadAtLeast(magic, 4, throwOnEndOfStream: false);
        if (read == 4 && magic.SequenceEqual("GGUF"u8)) return ModelSummary.FromGguf(path);
        if (path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)) return CheckpointSummary.FromSafetensors(path);
        throw new EdgeTuneException($"{path}: not a GGUF file (no \"GGUF\" magic) and not named *.safetensors");
    }
}
