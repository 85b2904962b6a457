using System.CommandLine;
using System.Globalization;
using EdgeTune.Inference;
using EdgeTune.Inference.LlamaCpp;
using EdgeTune.Inference.Onnx;
using EdgeTune.Core;
using EdgeTune.Profiles.Bench;
using EdgeTune.Profiles.Schema;
using EdgeTune.Profiles.Sensors;

namespace EdgeTune.Cli.Commands;

/// <summary>
/// <c>edgetune bench</c>: llama-bench-style prompt and generation speed, latency percentiles, memory, power
/// and temperatures where the board has sensors, each figure against the profile's budgets and the
/// bandwidth bound; <c>edgetune bench compare</c> puts results side by side.
/// </summary>
internal static class BenchCommand
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    public static Command Create(CliConsole console)
    {
        var profile = new Option<string>("--profile") { Description = "A profile name, a .toml path, or 'auto' to recognise this board", Required = true };
        var model = new Option<string>("--model") { Description = "The model to run: a .gguf file (llama.cpp) or a folder written by 'edgetune export onnx' (ONNX Runtime GenAI)", Required = true };
        var runtimeName = new Option<string?>("--runtime") { Description = "llama.cpp (a .gguf) or onnx (a folder with genai_config.json); default: the one the model is for" };
        runtimeName.AcceptOnlyFromAmong("llama.cpp", "onnx");
        var adapter = new Option<string?>("--adapter") { Description = "A GGUF LoRA adapter to apply" };
        var promptTokens = Positive(new Option<int>("--prompt-tokens") { Description = "Prompt length (llama-bench's pp)", DefaultValueFactory = _ => 512 });
        var genTokens = Positive(new Option<int>("--gen-tokens") { Description = "Tokens generated after the prompt (llama-bench's tg)", DefaultValueFactory = _ => 128 });
        var repetitions = Positive(new Option<int>("--repetitions") { Description = "Measured repetitions (mean ± sd over them)", DefaultValueFactory = _ => 5 });
        var warmup = new Option<int>("--warmup") { Description = "Repetitions run first and left out of the figures", DefaultValueFactory = _ => 1 };
        warmup.Validators.Add(r => { if (r.GetValueOrDefault<int>() < 0) r.AddError("--warmup must be 0 or more"); });
        var threads = new Option<int>("--threads") { Description = "CPU threads (default: one per logical core)" };
        threads.Validators.Add(r => { if (r.GetValueOrDefault<int>() < 0) r.AddError("--threads must be 0 or more"); });
        var gpuLayers = new Option<int>("--gpu-layers") { Description = "Layers to offload when the runtime has a GPU (default: all)", DefaultValueFactory = _ => 999 };
        var json = new Option<bool>("--json") { Description = "Print the full result as JSON instead of the summary" };
        var outDir = new Option<string>("--out") { Description = "Folder for the JSON, Markdown and PNG results", DefaultValueFactory = _ => "bench-out" };
        var failOnBudget = new Option<bool>("--fail-on-budget") { Description = "Exit with status 1 when a figure misses its budget (for CI)" };
        var root = ProfilesCommand.BoardRootOption();

        var command = new Command("bench",
            "Benchmark a model on this machine against a device profile: prompt and generation tokens/s (mean ± sd over repetitions, warm-up excluded), " +
            "time to first token and per-token latency percentiles, peak memory, power, energy per token and temperatures where sensors exist, throttling; " +
            "each figure against its budget and the bandwidth bound. Writes JSON, a Markdown summary and a PNG chart.\n\n" +
            "Example: edgetune bench --profile jetson-orin-nano-8gb --model model-q4_k_m.gguf --repetitions 5\n" +
            "Example: edgetune bench --profile jetson-orin-nano-8gb --model model-onnx-int4 --runtime onnx")
        {
            profile, model, runtimeName, adapter, promptTokens, genTokens, repetitions, warmup, threads, gpuLayers, json, outDir, failOnBudget, root,
            Compare(console),
            TrainBenchCommand.Create(console),
        };
        command.SetAction((parse, cancellationToken) =>
        {
            var board = new SystemRoot(parse.GetValue(root) ?? "/");
            var (p, detected) = ProfilesCommand.ResolveProfile(parse.GetValue(profile)!, board);
            string modelPath = Path.TrimEndingDirectorySeparator(parse.GetValue(model)!);
            if (!File.Exists(modelPath) && !Directory.Exists(modelPath)) throw new EdgeTuneException($"{modelPath}: no such file");
            if (PickRuntime(modelPath, parse.GetValue(runtimeName)) is not { } runtime)
            {
                console.Error.WriteLine(MismatchMessage(modelPath, parse.GetValue(runtimeName)));
                return Task.FromResult(CliApp.Usage);
            }
            var request = new BenchmarkRequest
            {
                Profile = p,
                ModelPath = modelPath,
                AdapterPath = parse.GetValue(adapter),
                Settings = new BenchSettings
                {
                    PromptTokens = parse.GetValue(promptTokens),
                    GenTokens = parse.GetValue(genTokens),
                    Repetitions = parse.GetValue(repetitions),
                    Warmup = parse.GetValue(warmup),
                },
                Threads = parse.GetValue(threads) is > 0 and var t ? t : Environment.ProcessorCount,
                GpuLayers = parse.GetValue(gpuLayers),
                Board = board,
                DetectedProfile = detected is null ? null : $"{p.Name}: {detected}",
            };
            var report = console.WithProgress("bench", progress =>
                Benchmark.Run(runtime, request, new SyncProgress<BenchProgress>(b => progress((double)b.Repetition / b.Total,
                    b.Phase == "done" ? "done" : $"repetition {b.Repetition + 1}/{b.Total}{(b.Warmup ? " (warm-up)" : "")}")), cancellationToken));

            string dir = parse.GetValue(outDir)!;
            Directory.CreateDirectory(dir);
            string stem = Path.Combine(dir, $"{Path.GetFileNameWithoutExtension(modelPath)}-{p.Name}");
            File.WriteAllText(stem + ".json", report.ToJson());
            File.WriteAllText(stem + ".md", BenchMarkdown.Write(report));
            BenchChart.Write(report, stem + ".png");

            if (parse.GetValue(json)) console.Out.WriteLine(report.ToJson());
            else WriteText(console.Out, report);
            console.Error.WriteLine($"wrote {stem}.json, {stem}.md, {stem}.png");

            var failed = report.Budgets.Where(b => b.Status == "fail").ToList();
            if (failed.Count > 0 && parse.GetValue(failOnBudget))
            {
                console.Error.WriteLine($"edgetune: {modelPath}: misses the {p.Name} budget{(failed.Count > 1 ? "s" : "")} {string.Join(", ", failed.Select(f => $"{f.Name} ({FormatMeasured(f)} against {BenchMarkdown.FormatValue(f.Limit, f.Unit)})"))}");
                return Task.FromResult(CliApp.Failure);
            }
            return Task.FromResult(CliApp.Success);
        });
        return command;
    }

    private static bool IsOnnxFolder(string path) => Directory.Exists(path) && File.Exists(Path.Combine(path, OnnxFolderConfig));

    private const string OnnxFolderConfig = EdgeTune.Formats.Onnx.OnnxFolder.ConfigFile;

    /// <summary>The runtime the model is for (a GGUF file: llama.cpp; an exported folder: ONNX Runtime GenAI), or null when the two disagree.</summary>
    private static IInferenceRuntime? PickRuntime(string modelPath, string? requested)
    {
        string? fits = IsOnnxFolder(modelPath) ? "onnx" : File.Exists(modelPath) ? "llama.cpp" : null;
        if (fits is null || (requested is not null && requested != fits)) return null;
        return fits == "onnx" ? OnnxGenAiRuntime.Default : LlamaCppRuntime.Default;
    }

    private static string MismatchMessage(string modelPath, string? requested) =>
        Directory.Exists(modelPath) && !IsOnnxFolder(modelPath)
            ? $"edgetune: {modelPath}: a folder without {OnnxFolderConfig}; --model takes a .gguf file or a folder written by 'edgetune export onnx'"
            : $"edgetune: {modelPath}: --runtime {requested} cannot run {(IsOnnxFolder(modelPath) ? "an ONNX folder (use --runtime onnx)" : "a GGUF file (use --runtime llama.cpp)")}";

    private static Option<int> Positive(Option<int> option)
    {
        option.Validators.Add(r => { if (r.GetValueOrDefault<int>() < 1) r.AddError($"{option.Name} must be at least 1"); });
        return option;
    }

    private static string FormatMeasured(BudgetCheck b) => b.Measured is { } m ? BenchMarkdown.FormatValue(m, b.Unit) : "not measured";

    private static void WriteText(TextWriter o, BenchReport r)
    {
        var res = r.Results;
        string Budget(string name)
        {
            if (r.Budgets.FirstOrDefault(b => b.Name == name) is not { } b) return "";
            string op = b.Name.StartsWith("min", StringComparison.Ordinal) ? ">=" : "<=";
            return $"budget {op} {BenchMarkdown.FormatValue(b.Limit, b.Unit)}: {b.Status}{(b.Marginal ? " (marginal)" : "")}";
        }
        o.WriteLine($"bench {r.Model.Name ?? Path.GetFileName(r.Model.Path)} ({r.Model.Type}) on {r.Profile.Name}: {r.Runtime.Description}, {r.Runtime.Threads} threads");
        o.WriteLine(string.Create(C, $"  run            prompt {r.Settings.PromptTokens} tokens, generate {r.Settings.GenTokens}, {r.Settings.Repetitions} repetitions after {r.Settings.Warmup} warm-up"));
        o.WriteLine(string.Create(C, $"  prompt         {BenchMarkdown.MeanSd(res.PromptTokensPerSecond, "tokens/s")}"));
        o.WriteLine(string.Create(C, $"  generation     {BenchMarkdown.MeanSd(res.GenTokensPerSecond, "tokens/s"),-28} {r.Bound.GenPercentOfBound:0.#}% of the {r.Bound.GenTokensPerSecondBound:0.#} tokens/s bandwidth bound   {Budget("min_decode_tokens_per_s")}"));
        o.WriteLine(string.Create(C, $"  first token    p50 {res.TtftMs.P50:0.##}  p95 {res.TtftMs.P95:0.##}  p99 {res.TtftMs.P99:0.##} ms   {Budget("max_ttft_p95")}"));
        o.WriteLine(string.Create(C, $"  per token      p50 {res.TokenLatencyMs.P50:0.###}  p95 {res.TokenLatencyMs.P95:0.###}  p99 {res.TokenLatencyMs.P99:0.###} ms   bound {r.Bound.TokenLatencyBoundMs:0.###} ms"));
        o.WriteLine($"  peak memory    {Units.FormatBytes(res.PeakMemoryBytes)}   {Budget("max_model_memory")}");
        if (res.Power is { } pw)
            o.WriteLine(string.Create(C, $"  power          {pw.AverageWatts:0.##} W, {pw.GenJoulesPerToken:0.####} J per generated token   {Budget("max_watts")}"));
        else o.WriteLine($"  power          not measured ({Absent(r, "power")})   {Budget("max_watts")}".TrimEnd());
        if (res.TemperaturesC is { Count: > 0 } temps)
            o.WriteLine($"  temperatures   {string.Join(", ", temps.Select(kv => string.Create(C, $"{kv.Key} max {kv.Value.Max:0.#} °C")))}");
        else o.WriteLine($"  temperatures   not measured ({Absent(r, "temperatures")})");
        string throttle = res.Throttling.Noticed ? "NOTICED: " + string.Join("; ", res.Throttling.Events)
            : res.Throttling.Checked.Count > 0 ? "none noticed" : "cannot be observed here (no thermal sensors)";
        o.WriteLine(string.Create(C, $"  throttling     {throttle}; generation drift {res.Throttling.GenDriftPercent:+0.#;-0.#;0}% first to last repetition"));
        if (res.RuntimeReported is { } rr)
            o.WriteLine(string.Create(C, $"  runtime count  prompt {rr.PromptTokensPerSecond:0.#} tokens/s, generation {rr.GenTokensPerSecond:0.#} tokens/s (llama.cpp's own timings)"));
        o.WriteLine($"  spread         {r.Spread.Verdict}");
        foreach (var note in r.Notes) o.WriteLine($"  note: {note}");
    }

    private static string Absent(BenchReport r, string what) =>
        r.Host.Sensors.FirstOrDefault(s => s.StartsWith(what + ":", StringComparison.Ordinal)) is { } line ? line[(what.Length + 1)..].Trim() : "no sensor";

    private static Command Compare(CliConsole console)
    {
        var files = new Argument<string[]>("RESULT.json") { Description = "Results written by edgetune bench (two or more)", Arity = new ArgumentArity(2, ArgumentArity.OneOrMore.MaximumNumberOfValues) };
        var json = new Option<bool>("--json") { Description = "Print the comparison as JSON" };
        var markdown = new Option<bool>("--markdown") { Description = "Print the comparison as a Markdown table" };
        var command = new Command("compare",
            "Put bench results side by side (two boards, two quantisation types, before and after), with each change against the first and whether it exceeds the runs' noise.\n\n" +
            "Example: edgetune bench compare bench-out/model-q8_0-jetson-orin-nano-8gb.json bench-out/model-q4_k_m-jetson-orin-nano-8gb.json")
        {
            files, json, markdown,
        };
        command.SetAction(parse =>
        {
            var paths = parse.GetValue(files)!;
            var reports = paths.Select(BenchReport.Read).ToList();
            var labels = Labels(paths);
            if (parse.GetValue(json)) console.Out.WriteLine(BenchComparison.Json(labels, reports));
            else if (parse.GetValue(markdown)) console.Out.Write(BenchComparison.Markdown(labels, reports));
            else console.Out.Write(BenchComparison.Text(labels, reports));
            return CliApp.Success;
        });
        return command;
    }

    // File names without the folder and extension; the folder too when two names collide.
    private static List<string> Labels(IReadOnlyList<string> paths)
    {
        var stems = paths.Select(Path.GetFileNameWithoutExtension).ToList();
        return stems.Distinct().Count() == stems.Count ? stems! : paths.Select(p => Path.ChangeExtension(p, null)).ToList();
    }
}
