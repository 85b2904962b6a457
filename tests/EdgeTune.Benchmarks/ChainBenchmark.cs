using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using EdgeTune.Cli;
using EdgeTune.Cli.Commands;
using EdgeTune.Core;
using EdgeTune.Core.Numerics;
using EdgeTune.Export.Gguf;
using EdgeTune.Formats.Gguf;
using EdgeTune.Inference;
using EdgeTune.Inference.LlamaCpp;
using EdgeTune.Inference.Reference;
using EdgeTune.Kernels;
using EdgeTune.Models.Adapters;
using EdgeTune.Models.Architectures;
using EdgeTune.Models.Chat;
using EdgeTune.Recipes;
using EdgeTune.Training;
using EdgeTune.Training.Checkpoints;
using EdgeTune.Training.Model;

namespace EdgeTune.Benchmarks;

/// <summary>
/// The whole path at a real model's shape (random weights, the vocabulary size `edgetune bench train --shape` gives it):
/// quantise the F32 GGUF with `edgetune quantize`, train QLoRA on that GGUF type with `edgetune train` (base_quant =
/// the type), export the adapter as the separate GGUF export writes it from the run's PEFT folder, then open the
/// quantised base + adapter in llama.cpp and generate. Checks that llama.cpp's logits with the adapter are the trainer's
/// (its own forward on the trained parameters from the run's checkpoint) and that the adapter moves them clearly more
/// than that. Progress on stderr, the table on stdout (or --json); exit 1 with one line when a check fails.
///
///   dotnet run -c Release --project tests/EdgeTune.Benchmarks -- chain --shape qwen2.5-0.5b [--type q4_k|q8_0|q4_0] [--steps 3] [--seq 128] [--threads 2] [--keep DIR]
/// </summary>
public static class ChainBenchmark
{
    public const string Usage =
        "usage: EdgeTune.Benchmarks chain --shape NAME|CONFIG.json [--type q4_k|q8_0|q4_0] [--steps 3] [--seq 128] [--threads 2] [--tokens 16] [--pure]\n" +
        "                                 [--lr 0.002] [--keep DIR] [--work DIR] [--json] [--fault wrong-scale|detached]\n" +
        "  quantise the shape's synthetic F32 GGUF (cached in --work, default the `edgetune bench train` folder) to the type\n" +
        "  (Q4_K_M, Q8_0, Q4_0), train QLoRA on it (base_quant = the type) for --steps steps of sequences up to --seq tokens,\n" +
        "  export the GGUF adapter, run base + adapter in llama.cpp (greedy, --tokens tokens) and check its logits against the\n" +
        "  trainer's forward. --keep DIR keeps the files; --fault breaks the export (wrong scale) or the run (adapter not\n" +
        "  attached) to show that the checks fail. --pure quantises every weight to the type itself (no Q4_K_M mix: Q6_K for some\n" +
        "  attn_v/ffn_down and the head); with the mix the trainer holds each weight as stored. Shapes: ";

    /// <summary>
    /// The largest relative L2 between llama.cpp's last-position logits with the adapter and the trainer's forward. The
    /// trainer multiplies float32 activations by the stored blocks; llama.cpp quantises the activations too (Q8_0 or
    /// Q8_K) before each dot product. Measured here with the trainer holding exactly llama.cpp's blocks: 0.011 (Q8_0,
    /// 0.5B shape), 0.023 (Q4_K, 1.1B shape, --pure); a doubled scale or a detached adapter gives about the adapter's
    /// own effect (over 1.2 at both shapes after 3 steps), so 0.05 leaves room for the noise and none for a wrong adapter.
    /// </summary>
    public const double Tolerance = 0.05;

    /// <summary>The adapter's own effect on llama.cpp's logits must be at least this many tolerances: otherwise parity proves nothing.</summary>
    public const double EffectOverTolerance = 3;

    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    // llama.cpp knows this template by its [INST] markers; its short headers leave most of a short sequence to the text.
    private const string Template =
        "{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}" +
        "{% else %}{{ message['content'] + '</s>' }}{% endif %}{% endfor %}";

    /// <summary>One stage: its wall time, the process's anonymous memory at its start and at its peak (what earlier stages freed the runtime may still hold), its figures.</summary>
    public sealed record Stage(string Name, double Seconds, long? StartAnonymousBytes, long? PeakAnonymousBytes, IReadOnlyDictionary<string, object> Figures, string Summary);

    public sealed record Report(string Machine, string Shape, string Type, int Steps, int SeqLen, int Threads, IReadOnlyList<Stage> Stages,
        double ParityRelativeL2, double BaseRelativeL2, double AdapterEffectRelativeL2, double Tolerance, string Generated, string? Failure);

    public static int Run(string[] args) => Run(args, Console.Out, Console.Error);

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        string? Opt(string name)
        {
            int i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
        }
        string shapes = string.Join(", ", KnownShapes.All.Select(s => s.Name)) + ", or a Hugging Face config.json";
        if (args.Contains("--help") || args.Contains("-h"))
        {
            stdout.WriteLine(Usage + shapes);
            return 0;
        }
        try
        {
            string[] known = ["--shape", "--type", "--steps", "--seq", "--threads", "--tokens", "--pure", "--lr", "--keep", "--work", "--json", "--fault"];
            if (args.FirstOrDefault(a => a.StartsWith("--", StringComparison.Ordinal) && !known.Contains(a)) is { } unknown)
                throw new EdgeTuneException($"{unknown}: not an option of chain (see --help)");
            if (Opt("--shape") is not { } shapeName) throw new EdgeTuneException("--shape is required (" + shapes + ")");
            string type = Opt("--type") ?? "q4_k";
            string fileType = type switch
            {
                "q4_k" => "Q4_K_M", "q8_0" => "Q8_0", "q4_0" => "Q4_0",
                _ => throw new EdgeTuneException($"--type {type}: one of q4_k, q8_0, q4_0 (the GGUF types QLoRA trains on)"),
            };
            int Int(string name, int fallback, int min)
            {
                string? text = Opt(name);
                if (text is null) return fallback;
                if (!int.TryParse(text, NumberStyles.Integer, C, out int v) || v < min) throw new EdgeTuneException($"{name} {text}: a whole number of at least {min}");
                return v;
            }
            double Number(string name, double fallback)
            {
                string? text = Opt(name);
                if (text is null) return fallback;
                if (!double.TryParse(text, NumberStyles.Float, C, out double v) || !(v > 0)) throw new EdgeTuneException($"{name} {text}: a positive number");
                return v;
            }
            string? fault = Opt("--fault");
            if (fault is not (null or "wrong-scale" or "detached")) throw new EdgeTuneException($"--fault {fault}: wrong-scale or detached");
            var options = new Options(shapeName, type, fileType, Int("--steps", 3, 1), Int("--seq", 128, 32), Int("--threads", 2, 1), Int("--tokens", 16, 1),
                Number("--lr", 0.002), Opt("--keep"), Opt("--work") ?? TrainingBenchmark.DefaultWorkDir, fault, args.Contains("--pure"));
            var report = Chain(options, stderr);
            if (args.Contains("--json"))
                stdout.WriteLine(JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));
            else WriteTable(stdout, report);
            if (report.Failure is not null)
            {
                stderr.WriteLine("chain: " + report.Failure);
                return 1;
            }
            return 0;
        }
        catch (EdgeTuneException e)
        {
            stderr.WriteLine("chain: " + e.Message);
            return 1;
        }
    }

    private sealed record Options(string Shape, string Type, string FileType, int Steps, int SeqLen, int Threads, int Tokens, double LearningRate,
        string? Keep, string WorkDir, string? Fault, bool Pure);

    private static Report Chain(Options o, TextWriter log)
    {
        var known = KnownShapes.Resolve(o.Shape);
        var config = TrainBenchConfig.FromShape(known) with { SeqLen = o.SeqLen };
        string machine = Machine();
        log.WriteLine($"machine: {machine}");
        log.WriteLine($"shape {known.Name}: {known.Parameters:N0} parameters ({known.Source}); {o.FileType}, QLoRA base_quant {o.Type}, {o.Steps} steps, seq {o.SeqLen}, {o.Threads} threads");
        string f32 = TrainingBenchmark.SyntheticModel(config, o.WorkDir, new SyncProgress<string>(log.WriteLine));

        string dir = o.Keep is { } keep ? Directory.CreateDirectory(keep).FullName : Directory.CreateTempSubdirectory("edgetune-chain-").FullName;
        using var memory = new TrainBenchCommand.AnonymousMemoryWatch();
        var stages = new List<Stage>();
        // Each stage's figures are logged as it completes: a later stage's failure leaves the earlier ones on stderr.
        var clock = new Stopwatch();
        long? startAnonymous = null;
        void Begin(string what)
        {
            log.WriteLine(what + " ...");
            GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
            memory.ResetPeak();
            startAnonymous = memory.AnonymousBytes();
            clock.Restart();
        }
        void Done(string name, double seconds, Dictionary<string, object> figures, string summary)
        {
            var stage = new Stage(name, seconds, startAnonymous, memory.PeakAnonymousBytes(), figures, summary);
            stages.Add(stage);
            log.WriteLine(string.Create(C, $"  {name}: {seconds:F1} s, anonymous memory {Mib(stage.StartAnonymousBytes)} MiB at the start, {Mib(stage.PeakAnonymousBytes)} MiB at the peak; {summary}"));
        }
        try
        {
            // 1. Quantise: `edgetune quantize`, as a user runs it (in-process).
            string quantised = Path.Combine(dir, $"base-{o.FileType.ToLowerInvariant()}.gguf");
            File.Delete(quantised);
            Begin($"quantise {f32} to {o.FileType}{(o.Pure ? " (pure)" : "")}");
            Cli(log, ["quantize", f32, quantised, o.FileType, "--threads", o.Threads.ToString(C), .. o.Pure ? new[] { "--pure" } : []]);
            double seconds = clock.Elapsed.TotalSeconds;
            long f32Bytes = new FileInfo(f32).Length, qBytes = new FileInfo(quantised).Length;
            var (mix, otherTypes, linear) = LinearMix(quantised, o.Type);
            Done("quantise", seconds, new Dictionary<string, object>
            {
                ["mb_per_s"] = Math.Round(f32Bytes / 1e6 / seconds, 1), ["input_mb"] = Math.Round(f32Bytes / 1e6), ["output_mb"] = Math.Round(qBytes / 1e6), ["linear_types"] = mix,
            }, $"{f32Bytes / 1e6 / seconds:F0} MB/s; {f32Bytes / 1e6:F0} → {qBytes / 1e6:F0} MB; linear weights {mix}");

            // 2. Train: `edgetune train` on a recipe with QLoRA over the GGUF type.
            string recipePath = WriteProject(dir, quantised, o);
            Begin($"train QLoRA ({o.Type}) for {o.Steps} steps");
            // The run is recorded in the chain's folder, not in runs/ of wherever the benchmark was started.
            Cli(log, "train", recipePath, "--device", "cpu", "--threads", o.Threads.ToString(C), "--registry", Path.Combine(dir, "runs"), "--json");
            seconds = clock.Elapsed.TotalSeconds;
            string runDir = Path.Combine(dir, "run");
            var metrics = File.ReadLines(Path.Combine(runDir, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).Where(n => n["loss"] is not null).ToList();
            var losses = metrics.Select(n => n["loss"]!.GetValue<double>()).ToList();
            double tokensPerSecond = metrics[^1]["tokens_per_s"]!.GetValue<double>();
            Done("train", seconds, new Dictionary<string, object>
            {
                ["tokens_per_s"] = tokensPerSecond, ["losses"] = losses.Select(l => Math.Round(l, 4)).ToList(),
            }, $"{tokensPerSecond:F1} tokens/s; loss {string.Join(" → ", losses.Select(l => l.ToString("F3", C)))}");

            // 3. Export: the separate GGUF export's adapter, written from the run's PEFT folder.
            string peft = Path.Combine(runDir, "peft"), adapterPath = Path.Combine(dir, "adapter.gguf");
            if (o.Fault == "wrong-scale") peft = DoubledAlpha(peft, Path.Combine(dir, "peft-wrong-scale"));
            Begin("export the GGUF adapter");
            GgufExporter.WriteAdapterGguf(quantised, LoraAdapter.Open(peft), adapterPath);
            seconds = clock.Elapsed.TotalSeconds;
            long adapterBytes = new FileInfo(adapterPath).Length;
            Done("export adapter", seconds, new Dictionary<string, object> { ["adapter_bytes"] = adapterBytes },
                $"{adapterBytes / 1e6:F1} MB GGUF adapter{(o.Fault == "wrong-scale" ? " (fault: lora_alpha doubled)" : "")}");

            // The prompt both sides see: a user turn through the recipe's template and the model's tokenizer.
            var tokenizer = ReferenceRuntime.LoadTokenizer(quantised);
            string promptText = ChatTemplate.FromText(Template, "chain template").Apply([new ChatMessage("user", Question(3))], addGenerationPrompt: true);
            int[] prompt = [.. tokenizer.Encode(promptText)];

            // 4. llama.cpp: the quantised base with the adapter attached (parity settings), then the adapter detached.
            Begin("llama.cpp: load base + adapter, logits, greedy generation");
            float[] withAdapter, plain;
            GenerationResult generated;
            double loadSeconds;
            using (var model = LlamaCppRuntime.Default.Open(new ModelOptions
            {
                Path = quantised, ContextSize = Math.Max(64, prompt.Length + o.Tokens + 8), Threads = o.Threads, Exact = true,
                Adapters = o.Fault == "detached" ? [] : [adapterPath],
            }))
            {
                loadSeconds = clock.Elapsed.TotalSeconds;
                withAdapter = model.Logits(prompt, prompt.Length - 1);
                generated = model.Generate(prompt, SamplingSettings.Greedy(o.Tokens), null, CancellationToken.None);
                model.SetAdapter(null);
                plain = model.Logits(prompt, prompt.Length - 1);
            }
            seconds = clock.Elapsed.TotalSeconds;
            double decodeSeconds = (generated.GenerationMs - generated.TimeToFirstTokenMs) / 1000;
            double decodeRate = generated.CompletionTokens > 1 && decodeSeconds > 0 ? (generated.CompletionTokens - 1) / decodeSeconds : double.NaN;
            string text = generated.Text.ReplaceLineEndings(" ");
            Done("llama.cpp", seconds, new Dictionary<string, object>
            {
                ["load_s"] = Math.Round(loadSeconds, 2), ["decode_tokens_per_s"] = Math.Round(decodeRate, 1), ["generated_tokens"] = generated.CompletionTokens,
            }, $"load {loadSeconds:F1} s; {generated.CompletionTokens} tokens, decode {decodeRate:F1} tokens/s");

            // The trainer's forward on the trained parameters (the run's checkpoint), with and without the adapter.
            Begin("trainer forward on the trained model");
            float[] ours, oursBase;
            var recipe = Recipe.Load(recipePath);
            using (var weights = BaseWeights.Open(quantised))
            using (var backend = Backends.Create("cpu", o.Threads))
            using (var trained = new TrainableLlama(weights, TrainingSetup.From(recipe), backend))
            using (var m = backend.Allocate(Math.Max(1, trained.Layout.Total)))
            using (var v = backend.Allocate(Math.Max(1, trained.Layout.Total)))
            {
                TrainingCheckpoint.Load(runDir, trained, m, v);
                ours = LastRow(trained.Logits(prompt), trained.Config.VocabSize);
                foreach (var slot in trained.Layout.Slots.Where(s => s.Name.EndsWith(".lora_b", StringComparison.Ordinal)))
                    trained.Write(slot.Name, new float[slot.Length]);
                oursBase = LastRow(trained.Logits(prompt), trained.Config.VocabSize);
            }
            seconds = clock.Elapsed.TotalSeconds;
            Done("trainer forward", seconds, new Dictionary<string, object>(), $"{prompt.Length}-token prompt, with and without the adapter");

            double parity = LogitDistance.RelativeL2(withAdapter, ours);
            double baseParity = LogitDistance.RelativeL2(plain, oursBase);
            double effect = LogitDistance.RelativeL2(withAdapter, plain);
            string? failure = null;
            // A file type's mix (Q4_K_M: Q6_K for some attn_v/ffn_down, Q5_0 where rows are not whole Q4_K blocks): the trainer
            // holds each weight as stored (F32 values where it has no kernel for the type); the line names the mix.
            string storedMix = otherTypes == 0 ? "" : $"; the base stores its {linear} linear weights as {mix}";
            if (!(parity <= Tolerance))
                failure = $"llama.cpp with the adapter vs the trainer's forward: relative L2 {parity:E2} > {Tolerance} (base alone {baseParity:E2}; adapter effect {effect:E2}){storedMix}";
            else if (!(effect >= EffectOverTolerance * Tolerance))
                failure = $"the adapter moves llama.cpp's logits by relative L2 {effect:E2}, under {EffectOverTolerance} × the tolerance {Tolerance}: parity would prove nothing (more --steps or a higher --lr)";
            return new Report(machine, known.Name, o.FileType + (o.Pure ? " (pure)" : ""), o.Steps, o.SeqLen, o.Threads, stages, parity, baseParity, effect, Tolerance, text, failure);
        }
        finally
        {
            if (o.Keep is null) Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Runs an edgetune command in-process; its progress goes to the log, a failure becomes the chain's one line.</summary>
    private static void Cli(TextWriter log, params string[] args)
    {
        var output = new StringWriter();
        var errors = new StringWriter();
        int code = CliApp.Run(args, output, new Tee(log, errors));
        string err = errors.ToString();
        if (code != 0)
            throw new EdgeTuneException($"edgetune {args[0]} failed (exit {code}): {err.Trim().Split('\n').LastOrDefault(l => l.Trim().Length > 0)?.Trim()}");
    }

    /// <summary>The command's stderr, shown as it comes (a long training run's progress) and kept for its last line.</summary>
    private sealed class Tee(TextWriter shown, TextWriter kept) : TextWriter
    {
        public override System.Text.Encoding Encoding => shown.Encoding;
        public override void Write(char value)
        {
            shown.Write(value);
            kept.Write(value);
        }
        public override void Write(string? value)
        {
            shown.Write(value);
            kept.Write(value);
        }
        public override void WriteLine(string? value)
        {
            shown.WriteLine(value);
            kept.WriteLine(value);
        }
    }

    private static string Mib(long? bytes) => bytes is { } b ? (b / 1048576.0).ToString("F0", C) : "n/a";

    private static float[] LastRow(float[] logits, int vocab) => logits[^vocab..];

    /// <summary>How many linear weights (the LoRA targets) the quantiser stored in each type, and how many not in the QLoRA type.</summary>
    private static (string Mix, int OtherTypes, int Linear) LinearMix(string path, string qloraType)
    {
        using var file = GgufFile.Open(path);
        var stems = TrainingSetup.Stems.Values.ToHashSet();
        var linear = file.Tensors.Where(t => t.Name.StartsWith("blk.", StringComparison.Ordinal) && stems.Contains(t.Name.Split('.')[2])).ToList();
        string mix = string.Join(", ", linear.GroupBy(t => GgmlTypes.Name(t.Type)).OrderByDescending(g => g.Count()).Select(g => $"{g.Key} {g.Count()}"));
        return (mix, linear.Count(t => !string.Equals(GgmlTypes.Name(t.Type), qloraType, StringComparison.OrdinalIgnoreCase)), linear.Count);
    }

    private static string Question(int i) => $"status of device {i}?";

    /// <summary>A small chat task whose answers the synthetic vocabulary's pieces mostly cover, sized to fill about the sequence length.</summary>
    private static string WriteProject(string dir, string basePath, Options o)
    {
        var tokenizer = ReferenceRuntime.LoadTokenizer(basePath);
        var template = ChatTemplate.FromText(Template, "chain template");
        string[] words = ["the device", "is in the model", "and it is", "hello world", "for you", "that is the model"];
        using (var data = new StreamWriter(Path.Combine(dir, "train.jsonl")))
            for (int i = 0; i < 16; i++)
            {
                string answer = $"device {i % 4}";
                for (int w = 0; ; w++)
                {
                    string longer = answer + " " + words[(i + w) % words.Length];
                    var messages = new[] { new ChatMessage("user", Question(i % 4)), new ChatMessage("assistant", longer) };
                    if (tokenizer.Encode(template.Apply(messages, false)).Count > o.SeqLen - 2) break;
                    answer = longer;
                }
                data.WriteLine(JsonSerializer.Serialize(new { messages = new[] { new { role = "user", content = Question(i % 4) }, new { role = "assistant", content = answer } } }));
            }
        string recipe = Path.Combine(dir, "recipe.toml");
        File.WriteAllText(recipe, string.Create(C, $"""
            [model]
            base = "{basePath}"
            chat_template = "{Template.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal)}"
            [data]
            train = "train.jsonl"
            [adapter]
            method = "qlora"
            base_quant = "{o.Type}"
            rank = 8
            alpha = 16
            dropout = 0
            [train]
            max_steps = {o.Steps}
            batch_size = 2
            max_seq_len = {o.SeqLen}
            learning_rate = {o.LearningRate}
            warmup_steps = 0
            seed = 1
            [output]
            dir = "run"
            """));
        return recipe;
    }

    /// <summary>A copy of the PEFT folder with lora_alpha doubled: an export that gets the scale wrong.</summary>
    private static string DoubledAlpha(string peft, string copy)
    {
        Directory.CreateDirectory(copy);
        foreach (var file in Directory.EnumerateFiles(peft)) File.Copy(file, Path.Combine(copy, Path.GetFileName(file)), overwrite: true);
        string configPath = Path.Combine(copy, "adapter_config.json");
        var json = JsonNode.Parse(File.ReadAllText(configPath))!;
        json["lora_alpha"] = json["lora_alpha"]!.GetValue<double>() * 2;
        File.WriteAllText(configPath, json.ToJsonString());
        return copy;
    }

    private static void WriteTable(TextWriter o, Report r)
    {
        o.WriteLine($"machine: {r.Machine}");
        o.WriteLine($"chain: {r.Shape} shape (random weights), {r.Type}, QLoRA {r.Steps} steps at seq {r.SeqLen}, {r.Threads} threads");
        o.WriteLine();
        o.WriteLine("| stage | seconds | anon MiB at start | peak anon MiB | figures |");
        o.WriteLine("|---|---:|---:|---:|---|");
        foreach (var s in r.Stages)
            o.WriteLine(string.Create(C, $"| {s.Name} | {s.Seconds:F1} | {Mib(s.StartAnonymousBytes)} | {Mib(s.PeakAnonymousBytes)} | {s.Summary} |"));
        o.WriteLine();
        o.WriteLine(string.Create(C, $"llama.cpp + adapter vs trainer forward (last prompt position): relative L2 {r.ParityRelativeL2:E2} (tolerance {r.Tolerance}); base alone {r.BaseRelativeL2:E2}; adapter effect in llama.cpp {r.AdapterEffectRelativeL2:E2}"));
        o.WriteLine($"generated: \"{r.Generated}\"");
        o.WriteLine(r.Failure is null ? "checks: pass" : "checks: FAIL: " + r.Failure);
    }

    private static string Machine() =>
        $"{Environment.ProcessorCount} cores, {MachineFacts.CpuName()}, load average {MachineFacts.LoadAverages()}, .NET {Environment.Version}";
}
