using EdgeTune.Core;
using EdgeTune.Evaluation.Metrics;
using EdgeTune.Evaluation.Runners;

namespace EdgeTune.Evaluation.Tests;

/// <summary>Scoring and the verdict on hand-made answer sets (no model involved).</summary>
public class VerdictTests
{
    private static List<RunnerAnswer> Answers(IEnumerable<(string Text, string Reference)> rows, double? nll = null) =>
        rows.Select((r, i) => new RunnerAnswer
        {
            Id = $"e{i}", Text = r.Text, Reference = r.Reference, Seconds = 0.5, GeneratedTokens = 5,
            ReferenceNll = nll, ReferenceTokens = nll is null ? 0 : 2,
        }).ToList();

    private static List<RunnerAnswer> Correct(int n, int right) =>
        Answers(Enumerable.Range(0, n).Select(i => (i < right ? "yes" : "no", "yes")));

    private static readonly ScoringOptions Exact = new() { Task = "exact", Metrics = ["exact_match"], Resamples = 300 };

    private static EvalOutcome Evaluate(Dictionary<string, IReadOnlyList<RunnerAnswer>> answers, ScoringOptions o)
    {
        var results = answers.Select(kv => Scoring.Score(kv.Key, kv.Key, kv.Value, o)).ToList();
        var comparisons = Comparer.Compare(answers, o);
        return new EvalOutcome(results, comparisons, Comparer.Decide(results, comparisons, o), null);
    }

    [Fact]
    public void Tuned_must_beat_the_best_baseline_beyond_noise()
    {
        // 40 examples: base 10 right, few-shot 30, tuned 32 (only 2 more than the best baseline: not significant).
        var o = Evaluate(new() { ["base"] = Correct(40, 10), ["few_shot"] = Correct(40, 30), ["tuned"] = Correct(40, 32) }, Exact);
        Assert.Equal("few_shot", o.Verdict!.BestBaseline);
        Assert.False(o.Verdict.TunedBetterThanBaselines);
        Assert.Equal(0.5, o.Verdict.PValue!.Value, 9); // McNemar b = 2, c = 0: exact p = 2·(1/2)² = 0.5
        // tuned beats base clearly, but that is not the question.
        Assert.True(o.Comparisons.Single(c => c.B == "base" && c.Metric == "exact_match").Test.PValue < 0.001);

        var clear = Evaluate(new() { ["base"] = Correct(40, 10), ["few_shot"] = Correct(40, 20), ["tuned"] = Correct(40, 38) }, Exact);
        Assert.True(clear.Verdict!.TunedBetterThanBaselines, clear.Verdict.Summary);
        Assert.True(clear.Verdict.PValue < 0.05);
    }

    [Fact]
    public void A_worse_tuned_model_is_never_better_even_when_significant()
    {
        var o = Evaluate(new() { ["base"] = Correct(40, 35), ["tuned"] = Correct(40, 5) }, Exact);
        Assert.False(o.Verdict!.TunedBetterThanBaselines);
        Assert.True(o.Verdict.PValue < 0.05);
    }

    [Fact]
    public void Lower_is_better_for_nll_and_the_quantisation_cost_is_exported_minus_tuned()
    {
        var o = new ScoringOptions { Task = "free_text", Metrics = ["nll", "rouge_l"], Primary = "nll", Resamples = 300 };
        var rows = Enumerable.Range(0, 30).Select(i => ("a b c", "a b c")).ToList();
        var baseA = Answers(rows, nll: 4.0);
        var tuned = Answers(rows, nll: 1.0);
        // Vary the tuned NLL a little so the bootstrap has spread.
        for (int i = 0; i < tuned.Count; i++) tuned[i] = tuned[i] with { ReferenceNll = 1.0 + 0.01 * i };
        var exported = tuned.Select(a => a with { ReferenceNll = a.ReferenceNll + 0.2 }).ToList();
        var outcome = Evaluate(new() { ["base"] = baseA, ["tuned"] = tuned, ["exported"] = exported }, o);
        Assert.True(outcome.Verdict!.TunedBetterThanBaselines, outcome.Verdict.Summary);
        // Per token: NLL per example over 2 tokens.
        Assert.Equal((1.0 + 0.01 * 14.5) / 2, outcome.Runners.Single(r => r.Runner == "tuned").Metric("nll")!.Value.Value, 9);
        Assert.Equal(0.1, outcome.Verdict.QuantisationCost!.Value, 9);
        Assert.True(outcome.Verdict.QuantisationPValue < 0.05);
        Assert.False(outcome.Runners[0].Metric("nll")!.HigherIsBetter);
    }

    [Fact]
    public void Without_a_tuned_runner_the_verdict_is_false_and_says_why()
    {
        var o = Evaluate(new() { ["base"] = Correct(10, 5), ["few_shot"] = Correct(10, 6) }, Exact);
        Assert.False(o.Verdict!.TunedBetterThanBaselines);
        Assert.Contains("no tuned model", o.Verdict.Summary);
        Assert.Single(o.Comparisons, c => c.A == "few_shot" && c.B == "base");
    }

    [Fact]
    public void Classification_and_extraction_scores_from_answers()
    {
        var o = new ScoringOptions { Task = "classification", LabelField = "label", Normalise = new NormaliseOptions { IgnoreCase = true }, Resamples = 200 };
        var answers = Answers([("{\"label\":\"A\"}", "{\"label\":\"a\"}"), ("{\"label\":\"b\"}", "{\"label\":\"a\"}"), ("b", "{\"label\":\"b\"}")]);
        var r = Scoring.Score("x", "x", answers, o);
        Assert.Equal(1.0 / 3, r.Metric("accuracy")!.Value.Value, 12);
        // gold [a, a, b], predicted [a, b, ""]: a → 2/3, b → 0, "" → 0; macro = 2/9.
        Assert.Equal(2.0 / 9, r.Metric("macro_f1")!.Value.Value, 12);
        Assert.Equal(["a", "b", ""], r.Confusion!.Labels);
        Assert.Null(r.Metric("nll")); // no reference NLL in the answers: left out, not guessed

        var x = new ScoringOptions { Task = "extraction", Resamples = 200, Normalise = new NormaliseOptions { JsonCanonical = true } };
        var e = Scoring.Score("x", "x", Answers([("{\"a\":1,\"b\":2}", "{\"b\":2,\"a\":1}"), ("{\"a\":1}", "{\"a\":1,\"b\":3}"), ("oops", "{\"a\":1}")]), x);
        Assert.Equal(2.0 / 3, e.Metric("json_valid")!.Value.Value, 12);
        Assert.Equal(3.0 / 5, e.Metric("field_accuracy")!.Value.Value, 12); // 2 + 1 + 0 right of 2 + 2 + 1
        Assert.Equal(1.0 / 3, e.Metric("exact_match")!.Value.Value, 12);
        Assert.Equal(2.0 / 3, e.FieldAccuracy!["a"], 12);
        Assert.Equal(0.5, e.FieldAccuracy["b"], 12);

        Assert.Throws<EdgeTuneException>(() => Scoring.MetricNames(new ScoringOptions { Metrics = ["schema_valid"] }));
    }
}
