using EdgeTune.Core;
using EdgeTune.Data;
using EdgeTune.Evaluation.Reports;
using EdgeTune.Evaluation.Runners;
using EdgeTune.Models.Chat;
using EdgeTune.Testing;

namespace EdgeTune.Evaluation.Tests;

public class EndToEndTests
{
    private static EvalPlan Plan(string dir, string? adapter = null, string? gguf = null, string? ggufAdapter = null) => new()
    {
        BaseModel = Path.Combine(dir, "model.gguf"),
        TrainFile = Path.Combine(dir, "train.jsonl"),
        TestFile = Path.Combine(dir, "test.jsonl"),
        SystemPrompt = "Answer in one word.",
        FewShot = 2,
        MaxNewTokens = 1,
        Adapter = adapter,
        Gguf = gguf,
        GgufAdapter = ggufAdapter,
        RunDir = Path.Combine(dir, "run"),
        Scoring = new ScoringOptions { Task = "exact", Resamples = 300 },
        Threads = 2,
    };

    [Fact]
    public void The_reference_forward_and_llama_cpp_give_the_same_greedy_answers_and_reference_nll()
    {
        using var dir = new TempDir();
        TinyTask.WriteRecipe(dir.Path);
        string model = dir.File("model.gguf");
        var template = ChatTemplate.FromText(TinyTask.ChatMl);
        var items = Evaluator.ReadExamples(dir.File("test.jsonl"), FieldMapping.Default).Take(3).Select(EvalItem.From).ToList();
        using var ours = new EvalRunner("ref", Engines.Reference(model), template, new PromptStyle { SystemPrompt = "Be brief." }, 4);
        using var llama = new EvalRunner("llama", Engines.LlamaCpp(model, threads: 2), template, new PromptStyle { SystemPrompt = "Be brief." }, 4);
        foreach (var item in items)
        {
            var a = ours.Answer(item, scoreReference: true, default);
            var b = llama.Answer(item, scoreReference: true, default);
            Assert.Equal(a.PromptTokens, b.PromptTokens);
            Assert.Equal(a.Text, b.Text);
            Assert.Equal(a.GeneratedTokens, b.GeneratedTokens);
            Assert.Equal(a.ReferenceTokens, b.ReferenceTokens);
            Assert.Equal(a.ReferenceNll!.Value, b.ReferenceNll!.Value, 2);
        }
        // With the task adapter merged (reference forward) or attached (llama.cpp), both say the same.
        TinyTask.WriteAdapter(dir.File("hello.gguf"), zero: false);
        using var oursTuned = new EvalRunner("ref", Engines.Reference(model, dir.File("hello.gguf")), template, new PromptStyle(), 2);
        using var llamaTuned = new EvalRunner("llama", Engines.LlamaCpp(model, dir.File("hello.gguf"), threads: 2), template, new PromptStyle(), 2);
        foreach (var item in items)
        {
            var a = oursTuned.Answer(item, scoreReference: true, default);
            Assert.Equal("hello hello", a.Text);
            var b = llamaTuned.Answer(item, scoreReference: true, default);
            // llama.cpp keeps the first piece's SentencePiece space (" hello", as its server sends it); our decoder drops it.
            Assert.Equal(" hello hello", b.Text);
            Assert.Equal(a.ReferenceNll!.Value, b.ReferenceNll!.Value, 2);
        }
        // Perplexity material of plain text agrees too.
        var (n1, t1) = EvalRunner.TextNll(ours.Engine, "the model is hello world");
        var (n2, t2) = EvalRunner.TextNll(llama.Engine, "the model is hello world");
        Assert.Equal(t1, t2);
        Assert.Equal(n1, n2, 2);
    }

    [Fact]
    public void A_tuned_adapter_that_learned_the_task_beats_the_baselines_and_a_zero_adapter_does_not()
    {
        using var dir = new TempDir();
        TinyTask.WriteRecipe(dir.Path);
        string good = dir.File("hello.gguf"), zero = dir.File("zero.gguf");
        TinyTask.WriteAdapter(good, zero: false);
        TinyTask.WriteAdapter(zero, zero: true);

        var tuned = Evaluator.Run(Plan(dir.Path, adapter: good, gguf: dir.File("model.gguf"), ggufAdapter: good));
        Assert.Equal(["base", "few_shot", "tuned", "exported"], tuned.Runners.Select(r => r.Runner));
        var em = tuned.Runners.ToDictionary(r => r.Runner, r => r.Metric("exact_match")!.Value);
        Assert.Equal(1.0, em["tuned"].Value);
        Assert.True(em["base"].Value < 0.5, $"base exact match {em["base"].Value}");
        Assert.True(tuned.Verdict!.TunedBetterThanBaselines, tuned.Verdict.Summary);
        Assert.True(tuned.Verdict.PValue < 0.05);
        Assert.Equal(0.0, tuned.Verdict.QuantisationCost); // the exported F32 GGUF + adapter answers as the tuned model
        // The random base is near-uniform over its 281 tokens (perplexity ≈ 280), so there is little general ability to lose;
        // the adapter still makes general text less likely, which is what the check measures.
        Assert.True(tuned.Forgetting!.TunedPerplexity > tuned.Forgetting.BasePerplexity * 1.02,
            $"{tuned.Forgetting.BasePerplexity} → {tuned.Forgetting.TunedPerplexity} over {tuned.Forgetting.Tokens} tokens");
        Assert.True(File.Exists(dir.File("run/eval.json")));

        var useless = Evaluator.Run(Plan(dir.Path, adapter: zero) with { RunDir = dir.File("run-zero") });
        var v = useless.Verdict!;
        Assert.False(v.TunedBetterThanBaselines, v.Summary);
        var paired = useless.Comparisons.Single(c => c.A == "tuned" && c.B == "base" && c.Metric == "exact_match");
        Assert.Equal(0, paired.Test.Discordant); // identical answers
        Assert.Equal(1.0, paired.Test.PValue);
        Assert.Equal(useless.Forgetting!.BasePerplexity, useless.Forgetting.TunedPerplexity, 6);
    }

    [Fact]
    public void Answers_resume_from_the_run_folder_and_are_recomputed_when_the_runner_changes()
    {
        using var dir = new TempDir();
        TinyTask.WriteRecipe(dir.Path, test: 4);
        var plan = Plan(dir.Path) with { FewShot = 0 };
        Evaluator.Run(plan);
        string file = dir.File("run/answers-base.jsonl");
        var lines = File.ReadAllLines(file);
        Assert.Equal(4, lines.Length);
        // Replace one stored answer: a rerun must keep it (skipped), proving nothing is recomputed.
        lines[1] = lines[1].Replace("\"answer\":\"", "\"answer\":\"STORED", StringComparison.Ordinal);
        File.WriteAllLines(file, lines.Take(3)); // and drop the last one, as an interrupted run would
        var again = Evaluator.Run(plan);
        var answers = EvalRunner.ReadAnswers(file);
        Assert.Equal(4, answers.Count);
        Assert.StartsWith("STORED", answers[1].Text);
        // Another system prompt is another runner: the old answers are not reused.
        Evaluator.Run(plan with { SystemPrompt = "Other." });
        Assert.DoesNotContain(EvalRunner.ReadAnswers(file), a => a.Text.StartsWith("STORED", StringComparison.Ordinal));
    }

    [Fact]
    public void A_test_split_that_overlaps_training_is_refused_naming_the_lines()
    {
        using var dir = new TempDir();
        TinyTask.WriteRecipe(dir.Path);
        // test lines 2 and 3 repeat training rows 5 and 6 (case and spacing differ: the normalised hash matches).
        var test = File.ReadAllLines(dir.File("test.jsonl")).ToList();
        test.Insert(1, File.ReadAllLines(dir.File("train.jsonl"))[4].Replace("say it", "SAY   it", StringComparison.Ordinal));
        test.Insert(2, File.ReadAllLines(dir.File("train.jsonl"))[5]);
        File.WriteAllLines(dir.File("test.jsonl"), test);
        var e = Assert.Throws<EdgeTuneException>(() => Evaluator.Run(Plan(dir.Path)));
        Assert.Contains("overlaps the training split in 2 examples", e.Message);
        Assert.Contains($"{dir.File("test.jsonl")}:2 (= {dir.File("train.jsonl")}:5)", e.Message);
        Assert.Contains($"{dir.File("test.jsonl")}:3 (= {dir.File("train.jsonl")}:6)", e.Message);
    }

    [Fact]
    public void The_report_is_self_contained_with_plots_confusion_matrix_and_loss_curve()
    {
        using var dir = new TempDir();
        TinyTask.WriteRecipe(dir.Path, test: 6);
        File.WriteAllLines(dir.File("run/metrics.jsonl").Also(p => Directory.CreateDirectory(Path.GetDirectoryName(p)!)),
            ["{\"step\": 1, \"loss\": 2.5}", "{\"step\": 2, \"loss\": 2.1}", "{\"step\": 2, \"eval_loss\": 2.3}", "{\"step\": 3, \"lo"]);
        var plan = Plan(dir.Path) with { Scoring = new ScoringOptions { Task = "classification", Resamples = 200 } };
        var outcome = Evaluator.Run(plan);
        var (md, html) = EvalReportWriter.Write(outcome, plan.RunDir, "Tiny");
        string page = File.ReadAllText(html);
        Assert.Contains("data:image/png;base64,", page);
        Assert.Contains("alt=\"confusion base\"", page);
        Assert.Contains("alt=\"loss\"", page);
        Assert.DoesNotContain("http://", page);
        Assert.DoesNotContain("https://", page);
        string text = File.ReadAllText(md);
        Assert.Contains("| base (", text);
        Assert.Contains("Confusion matrix of base", text);
        Assert.Equal(3, EvalReportWriter.ReadLoss(dir.File("run/metrics.jsonl")).Count);
    }
}

internal static class Extensions
{
    public static string Also(this string s, Action<string> action)
    {
        action(s);
        return s;
    }
}
