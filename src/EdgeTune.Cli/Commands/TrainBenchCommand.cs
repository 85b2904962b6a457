using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using EdgeTune.Kernels;
using EdgeTune.Models.Architectures;
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
        var shape = new Option<string?>("--shape") { Description = $"A real model's dimensions: {string.Join(", ", KnownShapes.All.Select(k => k.Name))}, or a Hugging Face config.json (random weights)" };
        var memoryOnly = new Option<bool>("--memory-only") { Description = "Build the model and its buffers and report every part's bytes beside the plan; no timed steps" };
        var checkpointing = new Option<bool>("--checkpointing") { Description = "Activation checkpointing (keep each block's input, recompute the rest in the backward)" };
        var predict = new Option<bool>("--predict") { Description = "Also make the step-time estimate 'edgetune plan' makes (steps at 1 and 8 blocks) and print it beside the measured step" };
        var distillTopK = new Option<int>("--distill-top-k") { Description = "Also time each method with the distillation head over K teacher entries per position (the KD term's cost)" };
        distillTopK.Validators.Add(r => { if (r.GetValueOrDefault<int>() < 0) r.AddError("--distill-top-k must not be negative"); });
        var command = new Command("train",
            "Measure training throughput: full optimizer steps (forward, loss, backward, AdamW) of a synthetic llama of a fixed shape " +
            "(default: dim 256, 4 layers, 8 heads (4 KV), FFN 688, vocab 4096, sequence 256, batch 4; LoRA rank 8 on all seven targets), " +
            "for LoRA, QLoRA (NF4) and full fine-tuning. Prints tokens/s, step time and the memory of every part.\n\n" +
            "With --distill-top-k K each method runs again with knowledge distillation over K teacher entries (forward KL, alpha 0.5).\n\n" +
            "With --shape the model has a real model's dimensions and vocabulary (random weights); the memory columns put what 'edgetune plan' " +
            "computes beside the measured peak of anonymous memory (the mapped model file is not counted).\n\n" +
            "Example: edgetune bench train --device cpu --steps 5\n         edgetune bench train --method lora --distill-top-k 64\n" +
            "         edgetune bench train --shape qwen2.5-0.5b --method qlora --seq 512 --batch 1 --checkpointing --predict\n" +
            "         edgetune bench train --shape tinyllama-1.1b --method qlora --memory-only")
        {
            method, device, threads, steps, seq, batch, small, json, distillTopK, shape, memoryOnly, checkpointing, predict,
        };
        command.SetAction((parse, cancel) =>
        {
            using var backend = Backends.Create(parse.GetValue(device)!, parse.GetValue(threads), line => console.Error.WriteLine(line));
            var baseConfig = new TrainBenchConfig { SeqLen = parse.GetValue(seq), Batch = parse.GetValue(batch), Steps = parse.GetValue(steps) };
            if (parse.GetValue(shape) is { } shapeName)
            {
                var known = KnownShapes.Resolve(shapeName);
                baseConfig = TrainBenchConfig.FromShape(known) with { SeqLen = baseConfig.SeqLen, Batch = baseConfig.Batch, Steps = baseConfig.Steps };
                console.Error.WriteLine($"shape {known.Name}: {known.Parameters:N0} parameters ({known.Source})");
            }
            if (parse.GetValue(small)) baseConfig = baseConfig with { Embedding = 64, Layers = 2, Heads = 4, KvHeads = 2, FeedForward = 128, Vocab = 512, SeqLen = 32, Batch = 2 };
            baseConfig = baseConfig with { MemoryOnly = parse.GetValue(memoryOnly), ActivationCheckpointing = parse.GetValue(checkpointing), Predict = parse.GetValue(predict) };
            var methods = parse.GetValue(method) switch
            {
                "lora" => new[] { TuningMethod.Lora },
                "qlora" => [TuningMethod.Qlora],
                "full" => [TuningMethod.Full],
                _ => [TuningMethod.Lora, TuningMethod.Qlora, TuningMethod.Full],
            };
            string work = TrainingBenchmark.DefaultWorkDir;
            var results = new List<TrainBenchResult>();
            console.Error.WriteLine($"machine: {Environment.ProcessorCount} cores, {EdgeTune.Core.MachineFacts.CpuName()}, .NET {Environment.Version}");
            foreach (var m in methods)
            {
                cancel.ThrowIfCancellationRequested();
                foreach (int k in parse.GetValue(distillTopK) > 0 ? new[] { 0, parse.GetValue(distillTopK) } : [0])
                {
                    var config = baseConfig with { Method = m, DistillTopK = k };
                    console.Error.WriteLine(config.Describe());
                    using var watch = new AnonymousMemoryWatch();
                    results.Add(TrainingBenchmark.Run(config, backend, work, new SyncProgress<string>(line => console.Error.WriteLine("  " + line)),
                        () => ProcessMemory.ResetPeak(), ProcessMemory.PeakResidentBytes, watch));
                }
            }
            if (parse.GetValue(json))
            {
                console.Out.WriteLine(JsonSerializer.Serialize(results, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals }));
                return Task.FromResult(CliApp.Success);
            }
            static string Mib(long bytes) => (bytes / 1048576.0).ToString("F1", CultureInfo.InvariantCulture);
            console.Out.WriteLine($"backend: {backend.Name}; machine: {Environment.ProcessorCount} cores, {EdgeTune.Core.MachineFacts.CpuName()}");
            if (results.Count > 0 && results[0].Config.ShapeName is not null)
            {
                WritePlanTable(console.Out, results);
                return Task.FromResult(CliApp.Success);
            }
            console.Out.WriteLine("| method | tokens/s | step ms | frozen base MiB | other frozen MiB | trainable params | grads+AdamW MiB | activations MiB | peak RSS MiB |");
            console.Out.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
            foreach (var r in results)
                console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {r.Config.Method.ToString().ToLowerInvariant()}{(r.Config.DistillTopK > 0 ? $" + KD top {r.Config.DistillTopK}" : "")} | {r.TokensPerSecond:F0} | {r.StepMilliseconds:F0} | {Mib(r.FrozenLinearBytes)} | {Mib(r.FrozenOtherBytes)} | {r.TrainableParameters:N0} | {Mib(r.TrainableParameters * 12)} | {Mib(r.ActivationBytes)} | {(r.PeakResidentBytes is { } p ? Mib(p) : "n/a")} |"));
            return Task.FromResult(CliApp.Success);
        });
        return command;
    }

    // Measured against planned, part by part and in total: the check that 'edgetune plan' counts memory and time as training spends them.
    private static void WritePlanTable(TextWriter o, List<TrainBenchResult> results)
    {
        var c = CultureInfo.InvariantCulture;
        static string Mib(long bytes) => (bytes / 1048576.0).ToString("F0", CultureInfo.InvariantCulture);
        foreach (var r in results)
        {
            var plan = r.Plan!;
            o.WriteLine();
            o.WriteLine(r.Config.Describe());
            o.WriteLine("| part | planned MiB | built MiB | basis |");
            o.WriteLine("|---|---:|---:|---|");
            foreach (var part in plan.Parts)
            {
                long? built = part.Name switch
                {
                    TrainingEstimate.FrozenLinear => r.FrozenLinearBytes,
                    TrainingEstimate.FrozenOther => r.FrozenOtherBytes,
                    TrainingEstimate.TrainableParams or TrainingEstimate.Gradients => r.TrainableParameters * 4,
                    TrainingEstimate.AdamMoments => r.TrainableParameters * 8,
                    TrainingEstimate.ActivationsPart => r.ActivationBytes,
                    _ => null,
                };
                o.WriteLine($"| {part.Name} | {Mib(part.Bytes)} | {(built is { } b ? Mib(b) : "")} | {part.Basis} |");
            }
            string measured = r.PeakAnonymousBytes is { } peak ? Mib(peak) : "n/a";
            string error = r.PeakAnonymousBytes is { } p2 && p2 > 0 ? string.Create(c, $"{(plan.Total - p2) * 100.0 / p2:+0.0;-0.0}%") : "";
            o.WriteLine($"| **total** | **{Mib(plan.Total)}** | | measured peak anonymous memory {measured} MiB{(r.Config.MemoryOnly ? " (memory-only: buffers not yet touched by a step are not all resident)" : "")}; plan {error}; runtime before the model {(r.AnonymousBeforeBytes is { } a ? Mib(a) : "n/a")} MiB |");
            if (!r.Config.MemoryOnly)
            {
                string predicted = r.PredictedStepMilliseconds is { } ms
                    ? string.Create(c, $", predicted {ms:F0} ms ({(ms - r.StepMilliseconds) * 100 / r.StepMilliseconds:+0.0;-0.0}%; {r.PredictionBasis})") : "";
                o.WriteLine(string.Create(c, $"step: measured {r.StepMilliseconds:F0} ms ({r.TokensPerSecond:F1} tokens/s){predicted}"));
            }
        }
    }

    /// <summary>Peak anonymous memory by sampling RssAnon every few milliseconds on a background thread (also the chain benchmark's).</summary>
    internal sealed class AnonymousMemoryWatch : IMemoryWatch, IDisposable
    {
        private readonly Thread _thread;
        private volatile bool _stop;
        private long _peak;

        public AnonymousMemoryWatch()
        {
            _thread = new Thread(() =>
            {
                while (!_stop)
                {
                    Sample();
                    Thread.Sleep(2);
                }
            }) { IsBackground = true, Name = "anonymous-memory-watch" };
            _thread.Start();
        }

        private void Sample()
        {
            if (ProcessMemory.AnonymousBytes() is not { } now) return;
            long seen;
            while (now > (seen = Interlocked.Read(ref _peak)) && Interlocked.CompareExchange(ref _peak, now, seen) != seen)
            {
            }
        }

        public long? AnonymousBytes() => ProcessMemory.AnonymousBytes();
        public void ResetPeak() => Interlocked.Exchange(ref _peak, ProcessMemory.AnonymousBytes() ?? 0);
        public long? PeakAnonymousBytes()
        {
            Sample();
            return Interlocked.Read(ref _peak) is > 0 and var p ? p : null;
        }

        public void Dispose()
        {
            _stop = true;
            _thread.Join();
        }
    }

}
