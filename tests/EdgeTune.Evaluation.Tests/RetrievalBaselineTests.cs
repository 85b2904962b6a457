using EdgeTune.Core;
using EdgeTune.Data;
using EdgeTune.Data.Synthetic;
using EdgeTune.Evaluation.Runners;
using EdgeTune.Retrieval;
using EdgeTune.Testing;

namespace EdgeTune.Evaluation.Tests;

/// <summary>The retrieval baselines (retrieved_few_shot, rag) on a tiny GGUF through llama.cpp, read back from their answers files.</summary>
public class RetrievalBaselineTests
{
    private static EvalPlan Plan(string dir) => new()
    {
        BaseModel = Path.Combine(dir, "model.gguf"),
        TrainFile = Path.Combine(dir, "train.jsonl"),
        TestFile = Path.Combine(dir, "test.jsonl"),
        SystemPrompt = "Answer in one word.",
        FewShot = 0,
        MaxNewTokens = 1,
        RunDir = Path.Combine(dir, "run"),
        Scoring = new ScoringOptions { Task = "exact", Resamples = 200 },
        Threads = 2,
    };

    [Fact]
    public void Rag_shows_the_gold_chunk_in_the_prompt_it_sent_and_records_the_chunk_ids()
    {
        using var dir = new TempDir();
        TinyTask.WriteModel(dir.File("model.gguf"));
        string docs = dir.File("docs");
        var questions = ProductKnowledge.Write(docs, products: 5, seed: 4);
        File.WriteAllLines(dir.File("train.jsonl"), ProductKnowledge.Lines(questions.Where((_, i) => i % 4 == 0)));
        var test = questions.Where((_, i) => i % 4 != 0).ToList();
        File.WriteAllLines(dir.File("test.jsonl"), ProductKnowledge.Lines(test));

        var warnings = new List<string>();
        File.WriteAllText(Path.Combine(docs, "logo.svg"), "<svg/>");
        var plan = Plan(dir.Path) with { Knowledge = docs, ChunkTokens = 100, ChunkOverlap = 10, TopK = 4, Warn = warnings.Add };
        var outcome = Evaluator.Run(plan);
        Assert.Equal(["base", "rag"], outcome.Runners.Select(r => r.Runner));
        Assert.Single(warnings, w => w.Contains("logo.svg: skipped", StringComparison.Ordinal));
        Assert.Contains(outcome.Comparisons, c => c.A == "rag" && c.B == "base");

        using var index = KnowledgeIndex.Open(Path.Combine(plan.RunDir, "knowledge.etidx"));
        var chunks = index.Chunks().ToDictionary(c => c.ChunkId);
        var answers = EvalRunner.ReadAnswers(Path.Combine(plan.RunDir, "answers-rag.jsonl"));
        Assert.Equal(test.Count, answers.Count);
        int goldShown = 0;
        foreach (var (q, a) in test.Zip(answers))
        {
            Assert.Equal(q.Text, a.Question);
            Assert.NotNull(a.Retrieved);
            Assert.InRange(a.Retrieved!.Count, 1, 4);
            Assert.Equal(4, a.Retrieved.Count + a.RetrievedOverBudget!.Count);
            Assert.True(a.PromptTokens <= 512 - 1, $"{a.PromptTokens} prompt tokens"); // the budget: context less the answer's room
            foreach (var id in a.Retrieved) Assert.Contains(chunks[id].Text, a.Prompt); // what was recorded is what was shown
            var gold = chunks.Values.Single(c => c.Text.Contains(q.GoldSentence, StringComparison.Ordinal));
            if (a.Retrieved.Contains(gold.ChunkId))
            {
                Assert.Contains(gold.Text, a.Prompt);
                goldShown++;
            }
        }
        Assert.True(goldShown >= 0.9 * test.Count, $"the gold chunk was in {goldShown} of {test.Count} rag prompts");
        // The base runner's answers carry no retrieval fields.
        Assert.DoesNotContain("\"retrieved\"", File.ReadAllText(Path.Combine(plan.RunDir, "answers-base.jsonl")));

        // A second run reuses the index (content unchanged) and the answers (same retrieval key).
        var again = Evaluator.Run(plan);
        Assert.Equal(outcome.Runners.Select(r => r.Metric("exact_match")!.Value.Value), again.Runners.Select(r => r.Metric("exact_match")!.Value.Value));

        // A chunk size the context cannot take: one line naming the key.
        var e = Assert.Throws<EdgeTuneException>(() => Evaluator.Run(plan with { ChunkTokens = 400 }));
        Assert.StartsWith("[baseline] chunk_tokens = 400 is over the 255 tokens", e.Message);
    }

    [Fact]
    public void Retrieved_few_shot_never_shows_a_test_row_even_with_near_duplicates_across_splits()
    {
        using var dir = new TempDir();
        TinyTask.WriteModel(dir.File("model.gguf"));
        // Each test question has a near-duplicate in the training split (one word differs) and in the test split itself.
        string Line(string q, string a) => SupportTickets.Line("Answer in one word.", q, a);
        var train = Enumerable.Range(0, 12).Select(i => Line($"does the widget{i} blink red when overheating", "hello")).ToList();
        var test = Enumerable.Range(0, 12).SelectMany(i => new[]
        {
            Line($"does the widget{i} blink red when overheated", "hello"),
            Line($"does the widget{i} blink red when overheated today", "hello"),
        }).ToList();
        File.WriteAllLines(dir.File("train.jsonl"), train);
        File.WriteAllLines(dir.File("test.jsonl"), test);
        var plan = Plan(dir.Path) with { RetrievedFewShot = 3 };
        var outcome = Evaluator.Run(plan);
        Assert.Equal(["base", "retrieved_few_shot"], outcome.Runners.Select(r => r.Runner));

        var trainIds = Evaluator.ReadExamples(plan.TrainFile, FieldMapping.Default).Select(e => TextHash.Hex(e.Hash)).ToHashSet();
        var testIds = Evaluator.ReadExamples(plan.TestFile, FieldMapping.Default).Select(e => TextHash.Hex(e.Hash)).ToHashSet();
        var answers = EvalRunner.ReadAnswers(Path.Combine(plan.RunDir, "answers-retrieved_few_shot.jsonl"));
        Assert.Equal(test.Count, answers.Count);
        var trainByText = Evaluator.ReadExamples(plan.TrainFile, FieldMapping.Default).ToDictionary(e => TextHash.Hex(e.Hash), e => e.Messages.First(m => m.Role == "user").Content);
        for (int i = 0; i < answers.Count; i++)
        {
            var shown = answers[i].Retrieved!;
            Assert.NotEmpty(shown);
            Assert.All(shown, id => Assert.Contains(id, trainIds));
            Assert.All(shown, id => Assert.DoesNotContain(id, testIds));
            // The training near-duplicate ranks first, and it is in the prompt as a demonstration.
            Assert.Equal($"does the widget{i / 2} blink red when overheating", trainByText[shown[0]]);
            Assert.Contains(trainByText[shown[0]], answers[i].Prompt);
        }
    }
}
