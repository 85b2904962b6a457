using System.Device.Gpio;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using EdgeTune.Agent;
using EdgeTune.Agent.Config;
using EdgeTune.Cli.Commands;
using EdgeTune.Core;
using EdgeTune.Data;
using EdgeTune.Data.Synthetic;
using EdgeTune.Data.Templating;
using EdgeTune.Evaluation;
using EdgeTune.Evaluation.Reports;
using EdgeTune.Formats.Gguf.Quantize;
using EdgeTune.Hardware.Simulation;
using EdgeTune.Kernels;
using EdgeTune.Recipes;
using EdgeTune.Training;

namespace EdgeTune.Cli.Demo;

/// <summary>
/// The whole loop on an embedded default, through the product's own code paths, each step leaving in the run
/// folder what a user needs to repeat it with the individual commands.
/// </summary>
internal sealed partial class DemoPipeline(CliConsole console, string work, DemoScale scale, IComputeBackend backend, int threads)
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;
    private readonly TextWriter _o = console.Out;
    private readonly Stopwatch _clock = Stopwatch.StartNew();

    private const int Steps = 11;

    /// <summary>The board the demo ships to.</summary>
    private const string ShipProfile = "jetson-orin-nano-8gb";

    private void Step(int n, string title) => _o.WriteLine(string.Create(C, $"\n[{n}/{Steps} {_clock.Elapsed:mm\\:ss}] {title}"));

    public void Run(CancellationToken cancel)
    {
        string models = Path.Combine(work, "models"), runs = Path.Combine(work, "runs");
        Directory.CreateDirectory(models);
        Directory.CreateDirectory(runs);
        const int maxSeqLen = 192;

        // 2 before 1: the data check counts tokens with the model's tokenizer and chat template.
        Step(1, "base model: a tiny llama given general ability by a short pre-training (stands in for a real 1–7B checkpoint)");
        string general = Path.Combine(work, "data", "general.jsonl");
        Directory.CreateDirectory(Path.GetDirectoryName(general)!);
        PretrainingText.Write(general, scale.GeneralTexts, seed: 11);
        string initial = DemoWorld.WriteInitialModel(Path.Combine(models, "init.gguf"), scale, general);
        var pretrain = WriteRecipe(Path.Combine(runs, "pretrain.toml"), $"""
            # Pre-training stand-in: full fine-tuning of the random model on general text (inputs too).
            [model]
            base = "../models/init.gguf"
            [data]
            train = "../data/general.jsonl"
            train_on_inputs = true
            [adapter]
            method = "full"
            [train]
            learning_rate = 2e-3
            max_steps = {scale.PretrainSteps}
            batch_size = 16
            max_seq_len = {maxSeqLen}
            warmup_steps = 10
            checkpoint_every = 0
            [output]
            dir = "pretrain"
            """);
        var pre = Train(pretrain, "pre-train", cancel);
        string basePath = Path.Combine(models, "base.gguf");
        File.Copy(pre.ModelGguf!, basePath, overwrite: true);
        _o.WriteLine(string.Create(C, $"  {basePath}: loss {pre.FinalLoss:F3} after {pre.Steps} steps"));

        Step(2, "data: support tickets → JSON triage, with planted defects; data check, clean, split with a frozen test set");
        var (template, tokenizer, _) = Templater.LoadModel(basePath);
        var templater = new Templater(template, tokenizer, new TemplateOptions { MaxTokens = maxSeqLen });
        var data = DemoWorld.BuildData(work, scale, templater, maxSeqLen, _o);
        string test = Path.Combine(data.DatasetDir, "test.jsonl");
        string testSample = Path.Combine(data.DatasetDir, "test-sample.jsonl");
        File.WriteAllLines(testSample, File.ReadLines(test).Take(scale.TestLimit));

        SupportTickets.WriteTriageGuide(Path.Combine(work, "data", "triage-guide"));
        var recipe = WriteRecipe(Path.Combine(runs, "qlora.toml"), $"""
            # QLoRA on the demo base: NF4 frozen base, rank 16 on all seven linear layers.
            [model]
            base = "../models/base.gguf"
            [data]
            train = "../data/v1/train.jsonl"
            eval = "../data/v1/eval.jsonl"
            test = "../data/v1/test-sample.jsonl"
            [adapter]
            method = "qlora"
            rank = 16
            alpha = 32
            dropout = 0.05
            [train]
            learning_rate = 2e-3
            max_steps = {scale.TuneSteps}
            batch_size = 8
            max_seq_len = {maxSeqLen}
            warmup_steps = 10
            eval_every = {Math.Max(10, scale.TuneSteps / 5)}
            checkpoint_every = 50
            [eval]
            task = "extraction"
            primary_metric = "field_accuracy"
            system_prompt = {JsonSerializer.Serialize(SupportTickets.SystemPrompt)}
            few_shot = 3
            max_new_tokens = 40
            target_metric = "exact_match"
            target_value = 0.9
            [baseline]
            knowledge = "../data/triage-guide"
            chunk_tokens = 64
            top_k = 2
            [output]
            dir = "qlora"
            """);

        Step(3, "prompt baselines: the base model zero-shot, few-shot (fixed and retrieved by BM25 from the training split) and RAG over the team's triage guide");
        var baselinePlan = EvalCommand.Plan(recipe, null, null, null, threads) with { GeneralTextFile = null };
        var baseline = Evaluator.Run(baselinePlan, EvalProgress(), cancel);
        foreach (var r in baseline.Runners) _o.WriteLine($"  {r.Runner,-18} {Describe(r)}");

        Step(4, $"QLoRA: {recipe.File} (first `edgetune plan`: memory, tokens and time before training)");
        var estimate = PlanTraining(recipe);
        var trainClock = Stopwatch.StartNew();
        var tuned = Train(recipe, "qlora", cancel);
        _o.WriteLine(string.Create(C, $"  loss {tuned.FinalLoss:F3}, eval loss {tuned.FinalEvalLoss:F3}; adapter {tuned.AdapterGguf}"));
        _o.WriteLine(string.Create(C, $"  trained in {trainClock.Elapsed.TotalSeconds:0} s (the plan said {estimate.Seconds:0} s, {(estimate.Seconds - trainClock.Elapsed.TotalSeconds) * 100 / trainClock.Elapsed.TotalSeconds:+0;-0}%)"));
        string? trainRun = RunLog.RecordTrain(console, Registry, recipe, tuned);

        Step(5, $"export: GGUF fitted to the {ShipProfile} (each type that fits scored on the test split against base + adapter; the smallest not worse ships), and ONNX int4 for ONNX Runtime");
        var profile = new EdgeTune.Profiles.ProfileLoader().Load(ShipProfile);
        var request = ExportCommand.GgufRequest(recipe.File, null, tuned.AdapterGguf, null, Path.Combine(models, "ship-" + ShipProfile), null, threads, profile) with
        {
            Mode = EdgeTune.Export.Gguf.GgufExportMode.Separate, // the device keeps the adapter hot-swappable
            AcceptLicence = "EdgeTune demo: the base model is generated by this run (random weights pre-trained on generated text), no licence applies",
        };
        var timer = Stopwatch.StartNew();
        var shipped = EdgeTune.Export.Gguf.GgufExporter.Export(request, new SyncProgress<string>(line => console.Error.WriteLine($"  export gguf: {line}")), cancel);
        foreach (var c in shipped.Candidates)
            _o.WriteLine(string.Create(C, $"  {c.Type,-7} {c.TotalBytes / 1048576.0,7:0.0} MiB {(c.Fits ? "fits" : "too big")}  ") +
                         (c.Score?.Metric(shipped.PrimaryMetric) is { } m ? string.Create(C, $"{shipped.PrimaryMetric} {m.Value.Value:0.###}{(c.VersusReference is { } t ? $" (vs base + adapter {t.Difference:+0.###;-0.###;0}, p = {t.PValue:0.###})" : "")}") : c.NotScoredBecause ?? ""));
        _o.WriteLine(string.Create(C, $"  chose {shipped.ChosenType}: {shipped.Reason} ({timer.Elapsed.TotalSeconds:0} s; {shipped.Folder}: MODEL_CARD.md, export.json)"));
        string exported = shipped.ModelFile, shippedAdapter = shipped.AdapterFile!;
        RunLog.RecordExport(console, Registry, request, shipped);
        string onnx = ExportOnnx(basePath, tuned.AdapterGguf!, models, cancel);

        Step(6, "evaluate on the frozen test split: base, prompt baseline, tuned, and both shipped artifacts (GGUF through llama.cpp, ONNX int4 through ONNX Runtime GenAI)");
        var plan = EvalCommand.Plan(recipe, tuned.AdapterGguf, exported, shippedAdapter, threads) with { Onnx = onnx };
        var outcome = Evaluator.Run(plan, EvalProgress(), cancel);
        foreach (var r in outcome.Runners) _o.WriteLine($"  {r.Runner,-18} {Describe(r)}");
        var (markdown, html) = EvalReportWriter.Write(outcome, plan.RunDir, "EdgeTune demo: support ticket triage");
        string champion = RunLog.RecordEval(console, Registry, recipe, plan, outcome) ?? throw new EdgeTuneException($"{Registry}: the evaluation was not recorded");
        _o.WriteLine($"  runs: train {trainRun}, eval {champion} in {Registry}; {Indent(RunCli("runs", "promote", champion, "--registry", Registry).Trim())}");
        var v = outcome.Verdict;
        if (v is not null)
            _o.WriteLine(string.Create(C, $"  verdict: tuned {(v.TunedBetterThanBaselines ? "IS" : "is NOT")} better than the best baseline ({v.BestBaseline}) on {v.PrimaryMetric}: {v.TunedValue:0.###} vs {v.BestBaselineValue:0.###}, p = {v.PValue:0.####}; quantisation cost {v.QuantisationCost:+0.###;-0.###;0}"));
        if (v is not null && outcome.Comparisons.FirstOrDefault(c => c.A == Comparer.Onnx && c.B == Comparer.Tuned && c.Metric == v.PrimaryMetric) is { } onnxVsTuned)
            _o.WriteLine(string.Create(C, $"  ONNX int4 vs tuned on {v.PrimaryMetric}: {onnxVsTuned.Test.Difference:+0.###;-0.###;0}, p = {onnxVsTuned.Test.PValue:0.####} ({onnxVsTuned.Test.Test})"));

        var field = RunDevice(exported, shippedAdapter, data, cancel);

        Step(10, "iteration 2: retrain on the dataset with the field data, evaluate on the same frozen test split, then runs compare and runs promote (champion against challenger)");
        var recipe2 = WriteRecipe(Path.Combine(runs, "qlora-v2.toml"), File.ReadAllText(recipe.File).Replace("dir = \"qlora\"", "dir = \"qlora-v2\"", StringComparison.Ordinal)
            .Replace("# QLoRA on the demo base", "# Iteration 2: the same recipe on the dataset grown by the field data; QLoRA on the demo base", StringComparison.Ordinal));
        var tuned2 = Train(recipe2, "qlora v2", cancel);
        string? trainRun2 = RunLog.RecordTrain(console, Registry, recipe2, tuned2);
        var plan2 = EvalCommand.Plan(recipe2, tuned2.AdapterGguf, null, null, threads) with { Baselines = false };
        var outcome2 = Evaluator.Run(plan2, EvalProgress(), cancel);
        string challenger = RunLog.RecordEval(console, Registry, recipe2, plan2, outcome2) ?? throw new EdgeTuneException($"{Registry}: the evaluation was not recorded");
        _o.WriteLine($"  runs: train {trainRun2}, eval {challenger}");
        _o.WriteLine($"  $ edgetune runs compare {champion} {challenger}");
        foreach (var line in RunCli("runs", "compare", champion, challenger, "--registry", Registry).Split('\n')
                     .Where(l => l.StartsWith("tuned.", StringComparison.Ordinal) || l.StartsWith("inputs", StringComparison.Ordinal) || l.StartsWith("paired", StringComparison.Ordinal) || l.StartsWith("  ", StringComparison.Ordinal)))
            _o.WriteLine("    " + line.TrimEnd());
        var (promoteCode, promoted) = RunCliAllowingRefusal("runs", "promote", challenger, "--registry", Registry);
        _o.WriteLine($"  $ edgetune runs promote {challenger}: {(promoteCode == CliApp.Success ? "promoted" : "refused")}: {Indent(promoted.Trim())}");

        Step(11, "where everything is");
        _o.WriteLine($"  run folder:   {work}");
        _o.WriteLine($"  data:         {data.DatasetDir} (train/eval/test.jsonl, manifest.json)");
        _o.WriteLine($"  recipe:       {recipe.File}");
        _o.WriteLine($"  loss curve:   {tuned.LossCurve}");
        _o.WriteLine($"  adapter:      {tuned.AdapterGguf} (llama.cpp), {tuned.AdapterPeft} (PEFT)");
        _o.WriteLine($"  report:       {html}");
        _o.WriteLine($"  shipped GGUF: {shipped.Folder} ({shipped.ChosenType} + adapter, fitted to {ShipProfile})");
        _o.WriteLine($"  ONNX:         {onnx}");
        _o.WriteLine($"  bundles:      {Path.Combine(work, "release")} (signed .etb; the device trusts keys/demo-signing.pub)");
        _o.WriteLine($"  field data:   {field}");
        _o.WriteLine($"  runs:         {Registry} (edgetune runs list --registry {Registry})");
        _o.WriteLine("  next:");
        _o.WriteLine($"    edgetune data check {data.Raw} --model {basePath}");
        _o.WriteLine($"    edgetune train {recipe.File}");
        _o.WriteLine($"    edgetune export onnx {basePath} --adapter {tuned.AdapterGguf} --precision int4 --out {onnx}-again");
        _o.WriteLine($"    edgetune bundle verify {Path.Combine(work, "release", "support-triage-1.0.0.etb")} --trust {Path.Combine(work, "keys", "demo-signing.pub")}");
        _o.WriteLine($"    edgetune export gguf {recipe.File} --profile {ShipProfile} --separate --accept-licence \"demo model\" --out {shipped.Folder}-again");
        _o.WriteLine($"    edgetune eval {recipe.File} --adapter {tuned.AdapterGguf} --gguf {exported} --gguf-adapter {shippedAdapter}");
        _o.WriteLine($"    edgetune review export --answers {Path.Combine(plan.RunDir, "answers-base.jsonl")} --answers {Path.Combine(plan.RunDir, "answers-tuned.jsonl")} --out {Path.Combine(work, "review")}");
        _o.WriteLine("  with a real model: set [model] base in the recipe to a GGUF or Hugging Face folder (e.g. Llama-3.2-1B-Instruct) and your data's train.jsonl.");
    }

    /// <summary>The demo's run registry: train, eval and export runs with their lineage, champion and challenger.</summary>
    private string Registry => Path.Combine(work, "registry");

    private static string Indent(string text) => text.Replace("\n", "\n    ", StringComparison.Ordinal);

    /// <summary>`edgetune plan RECIPE --device cpu` in-process: the summary lines, and the estimate to hold training against.</summary>
    private PlanCommand.Plan PlanTraining(Recipe recipe)
    {
        var schedule = TrainingSchedule.For(recipe);
        var plan = PlanCommand.OnCpu(recipe, schedule, backend, line => console.Error.WriteLine(line));
        var text = new StringWriter(CultureInfo.InvariantCulture);
        PlanCommand.Write(text, recipe, plan);
        foreach (var line in text.ToString().Split('\n').Where(l => l.StartsWith("  data", StringComparison.Ordinal) || l.StartsWith("  time", StringComparison.Ordinal) || l.Contains(" total ", StringComparison.Ordinal)))
            _o.WriteLine("  plan: " + line.Trim());
        return plan;
    }

    private static Recipe WriteRecipe(string path, string text)
    {
        File.WriteAllText(path, text + "\n");
        return Recipe.Load(path);
    }

    private TrainResult Train(Recipe recipe, string title, CancellationToken cancel) =>
        console.WithProgress(title, report =>
        {
            var progress = new SyncProgress<TrainProgress>(p =>
            {
                if (p.Message is not null) { if (p.Message.StartsWith("memory", StringComparison.Ordinal)) _o.WriteLine("  " + p.Message); return; }
                report((double)p.Step / p.TotalSteps, string.Create(C, $"step {p.Step}/{p.TotalSteps} loss {p.Loss:F3} {p.TokensPerSecond:F0} tok/s"));
            });
            return new Trainer(recipe, backend, progress).Run(resume: false, cancel);
        });

    private SyncProgress<EvalStage> EvalProgress()
    {
        string? last = null;
        return new SyncProgress<EvalStage>(s =>
        {
            if (s.Stage == last) return;
            last = s.Stage;
            console.Error.WriteLine($"  running {s.Stage} on {s.Total} examples");
        });
    }

    private static string Describe(RunnerResult r) =>
        string.Join("  ", r.Metrics.Take(4).Select(m => string.Create(C, $"{m.Name} {m.Value.Value:0.###} [{m.Value.Low:0.###}, {m.Value.High:0.###}]")));

    /// <summary>
    /// Steps 7–9 around one running agent: a signed bundle installed through its admin endpoint (and a broken one
    /// rolled back), clients and the feedback button, then the field records it published over MQTT collected.
    /// </summary>
    private string RunDevice(string model, string adapter, DemoWorld.DataResult data, CancellationToken cancel)
    {
        string deviceDir = Path.Combine(work, "device");
        Directory.CreateDirectory(deviceDir);
        string token = Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(24));
        const int up = 17, down = 27;
        string signingKey = MakeSigningKey();
        using var broker = DemoBroker.Start(cancel);
        var config = new AgentConfig
        {
            File = Path.Combine(deviceDir, "agent.toml"),
            Server = new ServerConfig { Listen = "http://127.0.0.1:0", ApiToken = token },
            Model = new Agent.Config.ModelConfig { Path = model, Name = "support-triage", Adapters = [adapter], Context = 512, Threads = threads },
            FieldLog = new FieldLogConfig { Path = Path.Combine(deviceDir, "field.db"), DeviceId = DeviceId },
            Gpio = new GpioConfig { Enabled = true, FeedbackUpPin = up, FeedbackDownPin = down, DebounceMs = 10 },
            Telemetry = new TelemetryConfig { Enabled = false },
            Bundles = new BundlesConfig { Trust = signingKey + ".pub", StateDir = Path.Combine(deviceDir, "state"), Board = Board, CanaryPrompt = CanaryPrompt },
            Fleet = new Agent.Fleet.FleetConfig
            {
                Connection = new Agent.Fleet.FleetConnection { Broker = broker.Url, ClientId = DeviceId },
                Device = DeviceId, Fleet = FleetName, StatusEverySeconds = 5,
            },
        };
        var chip = new SimulatedGpioDriver();
        var app = AgentApp.Build(config, gpioFactory: () => new GpioController(chip));
        app.StartAsync(cancel).GetAwaiter().GetResult();
        try
        {
            string url = app.Urls.First();
            using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromMinutes(2) };
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
            for (int i = 0; i < 50 && !http.GetAsync("/health", cancel).GetAwaiter().GetResult().IsSuccessStatusCode; i++) Thread.Sleep(100);
            _o.WriteLine($"  agent on {url} (model {Path.GetFileName(model)}, adapter {Path.GetFileName(adapter)}, field log {config.FieldLog.Path}, fleet broker {broker.Url})");
            // The frozen test split as it was before any field data; compared after the collection.
            int testBefore = Manifest.Load(data.DatasetDir)!.Counts["test"];
            string testHashBefore = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(Path.Combine(data.DatasetDir, "test.jsonl"))));
            // The collector's persistent session exists before the first record, so the broker keeps every record for it.
            CollectFleet(broker.Url, data.DatasetDir, idleSeconds: 0.5);

            Step(7, "release: bundle → sign (a throw-away key) → install on the agent through POST /v1/admin/bundles → health check; a broken bundle rolls back");
            InstallBundles(http, config.Bundles.StateDir, model, adapter, signingKey, cancel);

            Step(8, "device: the agent serves the installed bundle; a client asks, the feedback button is pressed, field data comes back");
            var rng = new Random(99);
            int presses = 0;
            for (int i = 0; i < 4; i++)
            {
                var ticket = SupportTickets.Generate(rng);
                string answer = Ask(http, SupportTickets.SystemPrompt, ticket.Text, cancel);
                bool right = answer.Trim() == ticket.Answer;
                _o.WriteLine($"  client: \"{Shorten(ticket.Text)}\" → {answer.Trim()}");
                // The operator presses thumbs up or down on the device for the answer just given.
                chip.Press(right ? up : down);
                presses++;
                Thread.Sleep(50);
                _o.WriteLine($"    button: {(right ? "thumbs up" : "thumbs down")}");
            }
            // Export as a fleet consumer does: page by cursor, store each page, then acknowledge its cursor.
            string fieldFile = Path.Combine(deviceDir, "field-export.jsonl");
            var latest = new Dictionary<string, EdgeTune.Formats.FieldData.FieldExample>(StringComparer.Ordinal);
            long cursor = 0;
            using (var writer = new StreamWriter(fieldFile, append: false, new UTF8Encoding(false)))
            {
                while (true)
                {
                    using var page = http.GetAsync(string.Create(C, $"/v1/field-data?after={cursor}&limit=1000"), cancel).GetAwaiter().GetResult();
                    string jsonl = page.Content.ReadAsStringAsync(cancel).GetAwaiter().GetResult();
                    if (!page.IsSuccessStatusCode) throw new EdgeTuneException($"agent answered {(int)page.StatusCode} to the field-data export: {jsonl}");
                    var lines = jsonl.Split('\n', StringSplitOptions.RemoveEmptyEntries);
                    if (lines.Length == 0) break;
                    foreach (var line in lines)
                    {
                        writer.Write(line + "\n");
                        var example = EdgeTune.Formats.FieldData.FieldExample.FromJsonLine(line)!;
                        latest[example.Metadata.Id] = example; // a record exported again (with later feedback) replaces the earlier line
                    }
                    writer.Flush();
                    cursor = long.Parse(page.Headers.GetValues("EdgeTune-Next-Cursor").First(), C);
                    using var ack = http.PostAsync("/v1/field-data/ack", new StringContent(string.Create(C, $"{{\"through\": {cursor}}}"), Encoding.UTF8, "application/json"), cancel).GetAwaiter().GetResult();
                    if (!ack.IsSuccessStatusCode) throw new EdgeTuneException($"agent answered {(int)ack.StatusCode} to the acknowledgement: {ack.Content.ReadAsStringAsync(cancel).GetAwaiter().GetResult()}");
                }
            }
            // What the demo reports about feedback is what came back in the field data, not what it pressed.
            int thumbsUp = latest.Values.Count(e => e.Metadata.Feedback?.Rating > 0), thumbsDown = latest.Values.Count(e => e.Metadata.Feedback?.Rating < 0);
            _o.WriteLine(string.Create(C, $"  field data read back: {latest.Count} records (cursor {cursor}, acknowledged); feedback in them: {thumbsUp} thumbs up, {thumbsDown} thumbs down, {latest.Count - thumbsUp - thumbsDown} unrated ({presses} button presses)"));

            Step(9, $"fleet: the agent published its field records over MQTT (in-process broker {broker.Url}); fleet collect writes them into the dataset");
            string collected = CollectFleet(broker.Url, data.DatasetDir, idleSeconds: 3);
            _o.WriteLine($"  fleet collect: {collected}");
            int distinct = CollectedRecordIds(data.DatasetDir).Count;
            _o.WriteLine(string.Create(C, $"  records collected: {distinct} (distinct record ids in {Path.Combine(data.DatasetDir, "fleet", "ledger.tsv")}); the agent's field log holds {latest.Count}"));
            if (distinct != latest.Count)
                throw new EdgeTuneException($"fleet collection: {distinct} records collected, but the agent's field log holds {latest.Count}");
            int testAfter = Manifest.Load(data.DatasetDir)!.Counts["test"];
            bool same = testHashBefore == Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(Path.Combine(data.DatasetDir, "test.jsonl"))));
            _o.WriteLine(string.Create(C, $"  test split {(same && testAfter == testBefore ? "unchanged" : "CHANGED")}: {testAfter} examples (frozen in step 2; field data never enters it)"));
            if (!same || testAfter != testBefore) throw new EdgeTuneException($"{Path.Combine(data.DatasetDir, "test.jsonl")}: the frozen test split changed during field-data collection");
            return fieldFile;
        }
        finally
        {
            app.StopAsync(CancellationToken.None).GetAwaiter().GetResult();
            ((IDisposable)app).Dispose();
        }
    }

    private static string Shorten(string s) => s.Length <= 70 ? s : s[..67] + "...";
}
