using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using EdgeTune.Kernels;
using EdgeTune.Recipes;
using EdgeTune.Training;

namespace EdgeTune.Cli.Commands;

internal static class TrainCommand
{
    public static Command Create(CliConsole console)
    {
        var recipe = new Argument<string>("RECIPE") { Description = "The training recipe (TOML): [model] base, [data] train/eval, [adapter], [train], [output]" };
        var device = new Option<string?>("--device") { Description = "auto (CUDA when present, else CPU), cuda or cpu; overrides [train].device" };
        device.AcceptOnlyFromAmong("auto", "cuda", "cpu");
        var threads = new Option<int?>("--threads") { Description = "CPU threads (default: all cores); overrides [train].threads" };
        var resume = new Option<bool>("--resume") { Description = "Continue from the run folder's checkpoint (the losses continue exactly as without the interruption)" };
        var maxSteps = new Option<int?>("--max-steps") { Description = "Stop after this many optimizer steps; overrides [train].max_steps" };
        var json = new Option<bool>("--json") { Description = "Print the result (paths, steps, losses) as JSON" };
        var registry = RunLog.RegistryOption();
        var command = new Command("train",
            "Tune a model with LoRA, QLoRA (NF4 or GGUF-quantised frozen base) or full fine-tuning, as a recipe says.\n" +
            "Writes to the run folder: metrics.jsonl (train and eval loss), loss.png, checkpoint/ (resumable), and the\n" +
            "adapter as adapter.gguf (llama.cpp: --lora) and peft/ (Hugging Face PEFT), or model.gguf for full fine-tuning.\n" +
            "A NaN, infinite or exploding loss stops the run with the step and what to change.\n\n" +
            "Examples:\n  edgetune train recipe.toml\n  edgetune train recipe.toml --device cpu --threads 8\n  edgetune train recipe.toml --resume")
        {
            recipe, device, threads, resume, maxSteps, json, registry,
        };
        command.SetAction((parse, cancel) =>
        {
            var r = Recipe.Load(parse.GetValue(recipe)!);
            r = r with
            {
                Train = r.Train with
                {
                    Device = parse.GetValue(device) ?? r.Train.Device,
                    Threads = parse.GetValue(threads) ?? r.Train.Threads,
                    MaxSteps = parse.GetValue(maxSteps) ?? r.Train.MaxSteps,
                },
            };
            if (parse.GetValue(resume)) Trainer.CheckResumable(r);
            using var backend = Backends.Create(r.Train.Device, r.Train.Threads, line => console.Error.WriteLine(line));
            var result = console.WithProgress("train", report =>
            {
                var progress = new SyncProgress<TrainProgress>(p =>
                {
                    if (p.Message is not null) { console.Error.WriteLine(p.Message); return; }
                    string eval = p.EvalLoss is { } e ? string.Create(CultureInfo.InvariantCulture, $" eval {e:F4}") : "";
                    report((double)p.Step / p.TotalSteps, string.Create(CultureInfo.InvariantCulture,
                        $"step {p.Step}/{p.TotalSteps} loss {p.Loss:F4}{eval} lr {p.LearningRate:G3} {p.TokensPerSecond:F0} tok/s ETA {p.Eta:hh\\:mm\\:ss}"));
                });
                return new Trainer(r, backend, progress).Run(parse.GetValue(resume), cancel);
            });
            RunLog.RecordTrain(console, parse.GetValue(registry), r, result);
            if (parse.GetValue(json))
            {
                console.Out.WriteLine(JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));
                return Task.FromResult(CliApp.Success);
            }
            var o = console.Out;
            o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{result.StopReason}: {result.Steps} steps, final loss {result.FinalLoss:F4}{(result.FinalEvalLoss is { } ev ? $", eval loss {ev:F4}" : "")}"));
            o.WriteLine($"run folder:  {result.RunDir}");
            if (result.AdapterGguf is not null) o.WriteLine($"adapter:     {result.AdapterGguf} (llama.cpp), {result.AdapterPeft} (PEFT)");
            if (result.ModelGguf is not null) o.WriteLine($"model:       {result.ModelGguf}");
            o.WriteLine($"metrics:     {result.MetricsPath}{(result.LossCurve is not null ? $", {result.LossCurve}" : "")}");
            return Task.FromResult(CliApp.Success);
        });
        return command;
    }
}
