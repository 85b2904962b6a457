using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using EdgeTune.Core;
using EdgeTune.Formats.Gguf.Quantize;
using EdgeTune.Kernels;
using EdgeTune.Formats.Synthetic;

namespace EdgeTune.Cli.Commands;

/// <summary>
/// The main job on an embedded default: `edgetune demo` runs the whole loop (data → base → baseline → QLoRA →
/// evaluation → ONNX → bundle install → device → fleet collection); `edgetune demo quantization` compares quantisation types with llama.cpp; `edgetune demo distill` distils a tuned teacher into a smaller student.
/// </summary>
internal static class DemoCommand
{
    private static readonly string[] DefaultTypes = ["Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K"];

    public static Command Create(CliConsole console)
    {
        var outDir = new Option<string>("--out") { Description = "Run folder (kept: data, models, recipes, runs, report, field data)", DefaultValueFactory = _ => "edgetune-demo" };
        var fast = new Option<bool>("--fast") { Description = "A smaller world (fewer tickets, steps and test examples): minutes instead of a quarter hour" };
        var device = new Option<string>("--device") { Description = "auto, cuda or cpu", DefaultValueFactory = _ => "auto" };
        device.AcceptOnlyFromAmong("auto", "cuda", "cpu");
        var threads = new Option<int>("--threads") { Description = "Worker threads (default: one per core)" };
        var command = new Command("demo",
            "Run the main job end to end on a built-in small world: a support-ticket dataset with planted defects (check, clean, split with a frozen test set), " +
            "a tiny llama pre-trained on generated text (standing in for a real 1–7B checkpoint), the prompt baseline, QLoRA training, evaluation of base, baseline, " +
            "tuned and exported (Q8_0 GGUF + adapter through llama.cpp) with confidence intervals and a verdict, an ONNX int4 export checked by ONNX Runtime, " +
            "a signed bundle installed on the device agent (and a broken one rolled back), the agent serving it with a simulated feedback button, " +
            "and its field records collected over MQTT (an in-process broker) into the next dataset version.\n\n" +
            "Examples:\n  edgetune demo\n  edgetune demo --fast --out /tmp/demo\n  edgetune demo quantization --types Q8_0,Q4_K_M")
        {
            outDir, fast, device, threads, Quantization(console), Distill(console),
        };
        command.SetAction((parse, cancel) =>
        {
            var (pipeline, backend) = Pipeline(console, parse, outDir, fast, device, threads);
            using (backend)
            {
                console.Out.WriteLine("EdgeTune demo: from business data to a tuned model served on a device, with an honest verdict.");
                pipeline.Run(cancel);
            }
            return Task.FromResult(CliApp.Success);
        });
        return command;
    }

    /// <summary>`edgetune demo distill`: the ticket task with a 4-layer teacher and a 2-layer student, label-only against distilled.</summary>
    private static Command Distill(CliConsole console)
    {
        var outDir = new Option<string>("--out") { Description = "Run folder (kept: data, models, recipes, runs, answers)", DefaultValueFactory = _ => "edgetune-demo-distill" };
        var fast = new Option<bool>("--fast") { Description = "The demo's smaller world (fewer tickets, steps and test examples): a few minutes on 2 cores" };
        var device = new Option<string>("--device") { Description = "auto, cuda or cpu", DefaultValueFactory = _ => "auto" };
        device.AcceptOnlyFromAmong("auto", "cuda", "cpu");
        var threads = new Option<int>("--threads") { Description = "Worker threads (default: one per core)" };
        var command = new Command("distill",
            "Distillation on the demo's ticket task: a teacher tuned on a 4-layer base, and a 2-layer student tuned twice with the same recipe, " +
            "seed and steps, on the labels alone and distilled from the teacher's top-64 log-probabilities. Reports on the frozen test split, with " +
            "95% confidence intervals and paired tests: the task metric of the three, and how often each student agrees with the teacher " +
            "(next token at the trained positions, and the whole answer).\n\n" +
            "Examples:\n  edgetune demo distill\n  edgetune demo distill --fast --out /tmp/distill")
        {
            outDir, fast, device, threads,
        };
        command.SetAction((parse, cancel) =>
        {
            var (pipeline, backend) = Pipeline(console, parse, outDir, fast, device, threads);
            using (backend)
            {
                console.Out.WriteLine("EdgeTune demo distill: a tuned 4-layer teacher into a 2-layer student, judged on the frozen test split.");
                pipeline.RunDistill(cancel);
            }
            return Task.FromResult(CliApp.Success);
        });
        return command;
    }

    /// <summary>The run folder (an earlier demo run in it is replaced; any other content is refused), the backend and the pipeline.</summary>
    private static (Demo.DemoPipeline Pipeline, IComputeBackend Backend) Pipeline(CliConsole console, ParseResult parse, Option<string> outDir, Option<bool> fast, Option<string> device, Option<int> threads)
    {
        string work = Path.GetFullPath(parse.GetValue(outDir)!);
        string marker = Path.Combine(work, ".edgetune-demo");
        if (Directory.Exists(work) && Directory.EnumerateFileSystemEntries(work).Any())
        {
            if (!File.Exists(marker)) throw new EdgeTuneException($"{work}: the folder exists and is not an earlier demo run; choose another --out");
            Directory.Delete(work, recursive: true);
        }
        Directory.CreateDirectory(work);
        File.WriteAllText(marker, "written by edgetune demo; the next demo run into this folder replaces it\n");
        int t = parse.GetValue(threads) is > 0 and var n ? n : Environment.ProcessorCount;
        var backend = Backends.Create(parse.GetValue(device)!, t, line => console.Error.WriteLine(line));
        var scale = parse.GetValue(fast) ? Demo.DemoScale.Fast : Demo.DemoScale.Full;
        return (new Demo.DemoPipeline(console, work, scale, backend, t), backend);
    }

    /// <summary>`edgetune demo quantization`: what each quantisation type costs in logit accuracy, judged by llama.cpp.</summary>
    private static Command Quantization(CliConsole console)
    {
        var dir = new Option<string?>("--dir") { Description = "Working folder (default: a new temporary folder, removed afterwards)" };
        var types = new Option<string>("--types") { Description = "Comma-separated quantisation types to compare", DefaultValueFactory = _ => string.Join(',', DefaultTypes) };
        types.Validators.Add(r =>
        {
            foreach (var t in (r.GetValueOrDefault<string>() ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries))
                if (!LlamaFileTypes.TryParse(t.Trim(), out _)) r.AddError($"unknown quantisation type '{t}'");
        });
        var threads = new Option<int>("--threads") { Description = "Worker threads (default: one per core)" };
        var command = new Command("quantization",
            "Quantise a built-in model to the usual edge types and let llama.cpp measure what each costs in accuracy.\n\n" +
            "Example: edgetune demo quantization --types Q8_0,Q4_K_M")
        {
            dir, types, threads,
        };
        command.SetAction(parse =>
        {
            string? requested = parse.GetValue(dir);
            string work = requested ?? Path.Combine(Path.GetTempPath(), "edgetune-demo-" + Guid.NewGuid().ToString("N")[..8]);
            Directory.CreateDirectory(work);
            try
            {
                Run(console, work, parse.GetValue(types)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
                    parse.GetValue(threads) is > 0 and var t ? t : Environment.ProcessorCount);
            }
            finally
            {
                if (requested is null) Directory.Delete(work, recursive: true);
            }
            return CliApp.Success;
        });
        return command;
    }

    private static void Run(CliConsole console, string work, string[] typeNames, int threads)
    {
        var o = console.Out;
        // 8 layers, 512 wide, grouped-query attention (8 heads over 2 KV heads), a 4k vocabulary: ~22 M weights.
        var config = new TinyLlamaConfig { Embedding = 512, Layers = 8, Heads = 8, KvHeads = 2, FeedForward = 1536, ExtraTokens = 4096 - 281, Seed = 2026 };
        string basePath = Path.Combine(work, "demo-f32.gguf");
        TinyLlama.WriteGguf(basePath, config, modelName: "edgetune-demo");
        var summary = ModelSummary.FromGguf(basePath);
        o.WriteLine("EdgeTune demo: quantise a built-in llama-family model and let llama.cpp judge each file.");
        o.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"model: {summary.Name}, {config.Layers} layers, {config.Embedding} wide, {ModelSummary.Count(summary.ParameterCount)} weights (synthetic), {ModelSummary.Bytes(summary.FileSize)} as F32"));
        o.WriteLine($"work folder: {work}");
        o.WriteLine();

        // A fixed prompt of ordinary token ids; logits at every position are compared with the F32 model's.
        var rng = new Random(7);
        int[] prompt = [1, .. Enumerable.Range(0, 31).Select(_ => 259 + rng.Next(config.VocabSize - 259))];
        var reference = LlamaCppRunner.Logits(basePath, prompt, threads);

        o.WriteLine($"{"type",-8} {"size",10} {"bits/w",7} {"quantise",9} {"logit RMSE",11} {"rel. error",11} {"top-1 agree",12}");
        o.WriteLine($"{"F32",-8} {ModelSummary.Bytes(summary.FileSize),10} {32.0,7:0.00} {"-",9} {0.0,11:0.0000} {0.0,11:P2} {1.0,12:P0}");
        foreach (var name in typeNames)
        {
            var fileType = LlamaFileTypes.Parse(name);
            string path = Path.Combine(work, $"demo-{name.ToLowerInvariant()}.gguf");
            var timer = Stopwatch.StartNew();
            var result = console.WithProgress($"quantize {name}", report => GgufQuantizer.Run(basePath, path, fileType,
                new QuantizeOptions { Threads = threads }, new SyncProgress<QuantizeProgress>(p => report((double)p.BytesDone / Math.Max(1, p.BytesTotal), p.Tensor))));
            timer.Stop();
            var logits = LlamaCppRunner.Logits(path, prompt, threads);
            var (rmse, relative, agree) = Compare(reference, logits);
            double bpw = result.Plan.Sum(p => p.TargetBytes) * 8.0 / summary.ParameterCount;
            o.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{LlamaFileTypes.Name(fileType),-8} {ModelSummary.Bytes(result.OutputBytes),10} {bpw,7:0.00} {timer.Elapsed.TotalSeconds,8:0.00}s {rmse,11:0.0000} {relative,11:P2} {agree,12:P0}"));
        }
        o.WriteLine();
        o.WriteLine("rel. error = logit RMSE / RMS of the F32 logits; top-1 agree = positions where the most likely next token is unchanged.");
        o.WriteLine("The weights are synthetic, so these figures show quantisation error, not task quality. For a real model:");
        o.WriteLine("  edgetune inspect model.gguf");
        o.WriteLine("  edgetune quantize model-f16.gguf model-q4_k_m.gguf Q4_K_M");
    }

    private static (double Rmse, double Relative, double TopOneAgreement) Compare(float[][] reference, float[][] candidate)
    {
        double squaredError = 0, squaredReference = 0;
        long count = 0;
        int agree = 0;
        for (int p = 0; p < reference.Length; p++)
        {
            var a = reference[p];
            var b = candidate[p];
            for (int i = 0; i < a.Length; i++)
            {
                squaredError += (a[i] - b[i]) * (double)(a[i] - b[i]);
                squaredReference += a[i] * (double)a[i];
            }
            count += a.Length;
            if (ArgMax(a) == ArgMax(b)) agree++;
        }
        double rmse = Math.Sqrt(squaredError / count);
        return (rmse, rmse / Math.Sqrt(squaredReference / count), (double)agree / reference.Length);
    }

    private static int ArgMax(float[] values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }
}
