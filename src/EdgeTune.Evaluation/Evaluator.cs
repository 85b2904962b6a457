using EdgeTune.Inference;
using System.Text.Encodings.Web;
using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Data;
using EdgeTune.Evaluation.Runners;
using EdgeTune.Models.Chat;
using EdgeTune.Retrieval;

namespace EdgeTune.Evaluation;

/// <summary>What to evaluate: the recipe's model, data and [eval] table, and what the command line adds.</summary>
public sealed record EvalPlan
{
    public required string BaseModel { get; init; }
    /// <summary>Jinja chat template overriding the model's own (the recipe's [model].chat_template).</summary>
    public string? ChatTemplate { get; init; }
    public required string TrainFile { get; init; }
    public required string TestFile { get; init; }
    public FieldMapping Fields { get; init; } = FieldMapping.Default;
    public string? SystemPrompt { get; init; }
    public int FewShot { get; init; } = 3;
    /// <summary>Demonstrations retrieved per test prompt from the training split (runner retrieved_few_shot; 0: none).</summary>
    public int RetrievedFewShot { get; init; }
    /// <summary>The knowledge folder for the rag runner (null: none), its chunking and how many chunks a prompt gets.</summary>
    public string? Knowledge { get; init; }
    public int ChunkTokens { get; init; } = 256;
    public int ChunkOverlap { get; init; } = 32;
    public int TopK { get; init; } = 4;
    /// <summary>Warnings that do not stop the run (a knowledge file of another kind skipped).</summary>
    public Action<string>? Warn { get; init; }
    public int MaxNewTokens { get; init; } = 256;
    /// <summary>A PEFT folder or a GGUF adapter on the base model (runner "tuned").</summary>
    public string? Adapter { get; init; }
    /// <summary>The base the adapter belongs to when it is not <see cref="BaseModel"/>: the run's base.gguf of [model] add_tokens.</summary>
    public string? AdapterBase { get; init; }
    /// <summary>The exported GGUF (runner "exported"), with an optional GGUF adapter.</summary>
    public string? Gguf { get; init; }
    public string? GgufAdapter { get; init; }
    /// <summary>A folder written by `edgetune export onnx` (runner "onnx"), run through ONNX Runtime GenAI as the agent serves it.</summary>
    public string? Onnx { get; init; }
    /// <summary>General text for the forgetting check; null: the shipped default. Only with a tuned runner.</summary>
    public string? GeneralTextFile { get; init; }
    public bool Baselines { get; init; } = true;
    public required string RunDir { get; init; }
    public required ScoringOptions Scoring { get; init; }
    public int Threads { get; init; }
}

public sealed record EvalStage(string Stage, int Done, int Total);

/// <summary>Runs the runners a plan asks for over the test split and compares them.</summary>
public static class Evaluator
{
    public static IReadOnlyList<DatasetExample> ReadExamples(string file, FieldMapping fields)
    {
        var examples = new List<DatasetExample>();
        foreach (var item in DatasetReader.Read(file, new ReadOptions { Fields = fields }))
        {
            if (item.Finding is { } f) throw new EdgeTuneException(f.ToString());
            examples.Add(item.Example!);
        }
        return examples;
    }

    /// <summary>Is the base model and adapter pair one llama.cpp can run (a GGUF file and no adapter or a GGUF adapter)?</summary>
    public static bool UsesLlamaCpp(string model, string? adapter) =>
        File.Exists(model) && (adapter is null || File.Exists(adapter) && adapter.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase));

    /// <summary>
    /// The engine for the base model (and the adapter): llama.cpp when <paramref name="llamaCpp"/>, else the reference
    /// forward. Base and tuned are opened with the same choice, so their comparison is not a comparison of runtimes.
    /// </summary>
    public static IInferenceModel OpenEngine(string model, string? adapter, int threads, bool llamaCpp) =>
        llamaCpp ? Engines.LlamaCpp(model, adapter, threads) : Engines.Reference(model, adapter);

    public static ChatTemplate Template(string model, string? overrideText)
    {
        if (overrideText is not null) return ChatTemplate.FromText(overrideText, "[model] chat_template");
        return EdgeTune.Data.Templating.Templater.LoadModel(model).Template;
    }

    public static EvalOutcome Run(EvalPlan plan, IProgress<EvalStage>? progress = null, CancellationToken cancellationToken = default)
    {
        var train = ReadExamples(plan.TrainFile, plan.Fields);
        var test = ReadExamples(plan.TestFile, plan.Fields);
        if (test.Count == 0) throw new EdgeTuneException($"{plan.TestFile}: no test examples");
        LeakGuard.Check(train, test);
        var items = test.Select(EvalItem.From).ToList();
        var template = Template(plan.BaseModel, plan.ChatTemplate);
        Directory.CreateDirectory(plan.RunDir);

        var answers = new Dictionary<string, IReadOnlyList<RunnerAnswer>>();
        var descriptions = new Dictionary<string, string>();
        var zeroShot = new PromptStyle { SystemPrompt = plan.SystemPrompt };
        bool scoreNll = Scoring.MetricNames(plan.Scoring).Any(n => n is "nll" or "perplexity");

        void RunOne(string name, IInferenceModel engine, PromptStyle style)
        {
            var runner = new EvalRunner(name, engine, template, style, plan.MaxNewTokens);
            var report = progress is null ? null : new SyncProgress(p => progress.Report(new EvalStage(p.Runner, p.Done, p.Total)));
            answers[name] = runner.Run(items, Path.Combine(plan.RunDir, $"answers-{name}.jsonl"), scoreNll, report, cancellationToken);
            descriptions[name] = runner.Description;
        }

        ForgettingResult? forgetting = null;
        bool llamaCpp = UsesLlamaCpp(plan.BaseModel, plan.Adapter) && UsesLlamaCpp(plan.AdapterBase ?? plan.BaseModel, plan.Adapter);
        using (var baseEngine = OpenEngine(plan.BaseModel, null, plan.Threads, llamaCpp))
        {
            if (plan.Baselines)
            {
                RunOne(Comparer.Base, baseEngine, zeroShot);
                if (plan.FewShot > 0)
                    RunOne(Comparer.FewShot, baseEngine, zeroShot with { Shots = PromptStyle.DrawShots(train, plan.FewShot, plan.Scoring.Seed) });
                if (plan.RetrievedFewShot > 0)
                {
                    // Built from the training split alone: a test row cannot be retrieved.
                    using var shots = new RetrievedShots(train, plan.RetrievedFewShot);
                    RunOne(Comparer.RetrievedFewShot, baseEngine, zeroShot with { Retriever = shots });
                }
                if (plan.Knowledge is not null)
                {
                    using var chunks = new KnowledgeChunks(KnowledgeIndexFor(plan, baseEngine, progress, cancellationToken), plan.TopK);
                    RunOne(Comparer.Rag, baseEngine, zeroShot with { Retriever = chunks });
                }
            }
            if (plan.Adapter is not null)
            {
                using var tunedEngine = OpenEngine(plan.AdapterBase ?? plan.BaseModel, plan.Adapter, plan.Threads, llamaCpp);
                RunOne(Comparer.Tuned, tunedEngine, zeroShot);
                string text = plan.GeneralTextFile is null ? GeneralText.Default() : File.ReadAllText(plan.GeneralTextFile);
                progress?.Report(new EvalStage("forgetting", 0, 1));
                forgetting = GeneralText.Measure(baseEngine, tunedEngine, text, plan.GeneralTextFile ?? "built-in general text");
                progress?.Report(new EvalStage("forgetting", 1, 1));
            }
        }
        if (plan.Gguf is not null)
        {
            using var exported = Engines.LlamaCpp(plan.Gguf, plan.GgufAdapter, plan.Threads);
            RunOne(Comparer.Exported, exported, zeroShot);
        }
        if (plan.Onnx is not null)
        {
            using var onnx = Engines.Onnx(plan.Onnx, plan.Threads);
            RunOne(Comparer.Onnx, onnx, zeroShot);
        }

        var results = answers.Select(kv => Scoring.Score(kv.Key, descriptions[kv.Key], kv.Value, plan.Scoring)).ToList();
        var comparisons = Comparer.Compare(answers, plan.Scoring);
        var verdict = Comparer.Decide(results, comparisons, plan.Scoring);
        var outcome = new EvalOutcome(results, comparisons, verdict, forgetting);
        File.WriteAllText(Path.Combine(plan.RunDir, "eval.json"), ToJson(outcome));
        return outcome;
    }

    /// <summary>The run folder's knowledge.etidx for the plan's folder, built or updated (only changed documents) with the base model's tokenizer.</summary>
    public static KnowledgeIndex KnowledgeIndexFor(EvalPlan plan, IInferenceModel engine, IProgress<EvalStage>? progress, CancellationToken cancellationToken)
    {
        // A chunk must leave room in the context for the question and the answer: at most half of what the prompt may take.
        int room = (engine.ContextSize - Math.Min(plan.MaxNewTokens, engine.ContextSize / 2)) / 2;
        if (plan.ChunkTokens > room)
            throw new EdgeTuneException($"[baseline] chunk_tokens = {plan.ChunkTokens} is over the {room} tokens a chunk may take in this model's context of {engine.ContextSize} (half of it after the answer's room): lower it");
        string file = Path.Combine(plan.RunDir, "knowledge.etidx");
        var options = new ChunkingOptions { ChunkTokens = plan.ChunkTokens, ChunkOverlap = plan.ChunkOverlap, Tokenize = engine.EncodePlain, MaxChunkTokens = room };
        var report = progress is null ? null : new SyncIndexProgress(p => progress.Report(new EvalStage("knowledge index", p.Done, p.Total)));
        var built = KnowledgeIndex.Build(plan.Knowledge!, file, options, engine.Description, plan.Warn, report, cancellationToken);
        if (built.UpToDate) progress?.Report(new EvalStage("knowledge index (unchanged)", built.Files, built.Files));
        return KnowledgeIndex.Open(file);
    }

    private sealed class SyncIndexProgress(Action<IndexProgress> report) : IProgress<IndexProgress>
    {
        public void Report(IndexProgress value) => report(value);
    }

    /// <summary>IProgress that reports on the calling thread (Progress&lt;T&gt; posts to the thread pool, out of order).</summary>
    private sealed class SyncProgress(Action<RunnerProgress> report) : IProgress<RunnerProgress>
    {
        public void Report(RunnerProgress value) => report(value);
    }

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static double? Finite(double v) => double.IsFinite(v) ? Math.Round(v, 6) : null;

    /// <summary>The machine-readable result: every runner's metrics with intervals, the paired tests and the verdict.</summary>
    public static object ToJsonObject(EvalOutcome o) => new
    {
        runners = o.Runners.Select(r => new
        {
            name = r.Runner,
            description = r.Description,
            examples = r.Examples,
            metrics = r.Metrics.ToDictionary(m => m.Name, m => new { value = Finite(m.Value.Value), ci95 = new[] { Finite(m.Value.Low), Finite(m.Value.High) }, higher_is_better = m.HigherIsBetter }),
            confusion = r.Confusion is null ? null : new { labels = r.Confusion.Labels, counts = r.Confusion.Rows },
            field_accuracy = r.FieldAccuracy,
        }),
        comparisons = o.Comparisons.Select(c => new { a = c.A, b = c.B, metric = c.Metric, difference = Finite(c.Test.Difference), p_value = Finite(c.Test.PValue), test = c.Test.Test }),
        verdict = o.Verdict is not { } v ? null : new
        {
            tuned_better_than_baselines = v.TunedBetterThanBaselines,
            primary_metric = v.PrimaryMetric,
            best_baseline = v.BestBaseline,
            tuned = v.TunedValue,
            best_baseline_value = v.BestBaselineValue,
            p_value = v.PValue,
            test = v.Test,
            quantisation_cost = v.QuantisationCost,
            quantisation_p_value = v.QuantisationPValue,
            summary = v.Summary,
        },
        forgetting = o.Forgetting is not { } f ? null : new
        {
            text = f.TextSource, tokens = f.Tokens, base_perplexity = Finite(f.BasePerplexity), tuned_perplexity = Finite(f.TunedPerplexity),
            relative_change = Finite(f.RelativeChange), flagged = f.Flagged,
        },
    };

    public static string ToJson(EvalOutcome o) => JsonSerializer.Serialize(ToJsonObject(o), Indented);
}
