using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using EdgeTune.Kernels;
using EdgeTune.Profiles.Sensors;
using EdgeTune.Recipes;
using EdgeTune.Training;

namespace EdgeTune.Cli.Commands;

/// <summary>`edgetune bench train`: tokens/s and memory of fixed training configurations.</summary>
internal static class TrainBenchCommand
{
    public static Command Create(CliConsole console)
    {
        var method = new Option<string>("--method") { Description = "lora, qlora, full or all", DefaultValueFactory = _ => "all" };
        method.AcceptOnlyFromAmong("lora", "qlora", "full", "all");
        var device = new Option<string>("--device") { Description = "auto, cuda or cpu", DefaultValueFactory = _ => "auto" };
        device.AcceptOnlyFromAmong("auto", "cuda", "cpu");
        var threads = new Option<int>("--threads") { Description = "CPU threads (0: all cores)" };
        var steps = new Option<int>("--steps") { Description = "Timed optimizer steps per configuration", DefaultValueFactory = _ => 5 };
        steps.Validators.Add(r => { if (r.GetValueOrDefault<int>() < 1) r.AddError("--steps must be at least 1"); });
        var seq = new Option<int>("--seq") { Description = "Sequence length", DefaultValueFactory = _ => 256 };
        var batch = new Option<int>("--batch") { Description = "Sequences per step", DefaultValueFactory = _ => 4 };
        var small = new Option<bool>("--small") { Description = "A tiny shape (dim 64, 2 layers, seq 32) for a quick check of the harness" };
        var json = new Option<bool>("--json") { Description = "Print the results as JSON" };
        var distillTopK = new Option<int>("--distill-top-k") { Description = "Also time each method with the distillation head over K teacher entries per position (the KD term's cost)" };
        distillTopK.Validators.Add(r => { if (r.GetValueOrDefault<int>() < 0) r.AddError("--distill-top-k must not be negative"); });
        var command = new Command("train",
            "Measure training throughput: full optimizer steps (forward, loss, backward, AdamW) of a synthetic llama of a fixed shape " +
            "(default: dim 256, 4 layers, 8 heads (4 KV), FFN 688, vocab 4096, sequence 256, batch 4; LoRA rank 8 on all seven targets), " +
            "for LoRA, QLoRA (NF4) and full fine-tuning. Prints tokens/s, step time and the memory of every part.\n\n" +
            "With --distill-top-k K each method runs again with knowledge distillation over K teacher entries (forward KL, alpha 0.5).\n\n" +
            "Example: edgetune bench train --device cpu --steps 5\n         edgetune bench train --method lora --distill-top-k 64")
        {
            method, device, threads, steps, seq, batch, small, json, distillTopK,
        };
        command.SetAction((parse, cancel) =>
        {
            using var backend = Backends.Create(parse.GetValue(device)!, parse.GetValue(threads), line => console.Error.WriteLine(line));
            var baseConfig = new TrainBenchConfig { SeqLen = parse.GetValue(seq), Batch = parse.GetValue(batch), Steps = parse.GetValue(steps) };
            if (parse.GetValue(small)) baseConfig = baseConfig with { Embedding = 64, Layers = 2, Heads = 4, KvHeads = 2, FeedForward = 128, Vocab = 512, SeqLen = 32, Batch = 2 };
            var methods = parse.GetValue(method) switch
            {
                "lora" => new[] { TuningMethod.Lora },
                "qlora" => [TuningMethod.Qlora],
                "full" => [TuningMethod.Full],
                _ => [TuningMethod.Lora, TuningMethod.Qlora, TuningMethod.Full],
            };
            string work = Path.Combine(Path.GetTempPath(), "edgetune-bench-train");
            var results = new List<TrainBenchResult>();
            console.Error.WriteLine($"machine: {Environment.ProcessorCount} cores, {CpuName()}, .NET {Environment.Version}");
            foreach (var m in methods)
            {
                cancel.ThrowIfCancellationRequested();
                foreach (int k in parse.GetValue(distillTopK) > 0 ? new[] { 0, parse.GetValue(distillTopK) } : [0])
                {
                    var config = baseConfig with { Method = m, DistillTopK = k };
                    console.Error.WriteLine(config.Describe());
                    results.Add(TrainingBenchmark.Run(config, backend, work, new SyncProgress<string>(line => console.Error.WriteLine("  " + line)),
                        () => ProcessMemory.ResetPeak(), ProcessMemory.PeakResidentBytes));
                }
            }
            if (parse.GetValue(json))
            {
                console.Out.WriteLine(JsonSerializer.Serialize(results, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));
                return Task.FromResult(CliApp.Success);
            }
            static string Mib(long bytes) => (bytes / 1048576.0).ToString("F1", CultureInfo.InvariantCulture);
            console.Out.WriteLine($"backend: {backend.Name}");
            console.Out.WriteLine("| method | tokens/s | step ms | frozen base MiB | other frozen MiB | trainable params | grads+AdamW MiB | activations MiB | peak RSS MiB |");
            console.Out.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
            foreach (var r in results)
                console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {r.Config.Method.ToString().ToLowerInvariant()}{(r.Config.DistillTopK > 0 ? $" + KD top {r.Config.DistillTopK}" : "")} | {r.TokensPerSecond:F0} | {r.StepMilliseconds:F0} | {Mib(r.FrozenLinearBytes)} | {Mib(r.FrozenOtherBytes)} | {r.TrainableParameters:N0} | {Mib(r.TrainableParameters * 12)} | {Mib(r.ActivationBytes)} | {(r.PeakResidentBytes is { } p ? Mib(p) : "n/a")} |"));
            return Task.FromResult(CliApp.Success);
        });
        return command;
    }

    private static string CpuName()
    {
        try
        {
            return File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown CPU";
        }
        catch (IOException) { return "unknown CPU"; }
    }
}
