using EdgeTune.Inference;
using EdgeTune.Core;
using EdgeTune.Data;
using EdgeTune.Evaluation.Runners;
using EdgeTune.Evaluation.Statistics;

namespace EdgeTune.Evaluation;

/// <summary>A paired test of runner A against runner B on one metric (difference A − B).</summary>
public sealed record PairedComparison(string A, string B, string Metric, PairedTest Test);

/// <summary>Perplexity on general text before and after tuning: a rise means the model lost general ability.</summary>
public sealed record ForgettingResult(string TextSource, int Tokens, double BasePerplexity, double TunedPerplexity)
{
    public double RelativeChange => TunedPerplexity / BasePerplexity - 1;
    /// <summary>Flagged when perplexity rose by more than 10%.</summary>
    public bool Flagged => RelativeChange > 0.10;
}

/// <summary>The answer to "did fine-tuning help?".</summary>
public sealed record Verdict(
    bool TunedBetterThanBaselines,
    string PrimaryMetric,
    string? BestBaseline,
    double? TunedValue,
    double? BestBaselineValue,
    double? PValue,
    string? Test,
    double? QuantisationCost,
    double? QuantisationPValue,
    string Summary);

public sealed record EvalOutcome(
    IReadOnlyList<RunnerResult> Runners,
    IReadOnlyList<PairedComparison> Comparisons,
    Verdict? Verdict,
    ForgettingResult? Forgetting);

public static class Comparer
{
    public const string Base = "base";
    public const string FewShot = "few_shot";
    public const string RetrievedFewShot = "retrieved_few_shot";
    public const string Rag = "rag";
    public const string Tuned = "tuned";
    public const string Exported = "exported";
    public const string Onnx = "onnx";
    /// <summary>Runners that need no training, in the order they are run and reported.</summary>
    public static readonly string[] Baselines = [Base, FewShot, RetrievedFewShot, Rag];

    /// <summary>A baseline's name in plain words, for sentences.</summary>
    public static string PlainName(string runner) => runner switch
    {
        Base => "The base model zero-shot",
        FewShot => "Fixed few-shot",
        RetrievedFewShot => "Retrieved few-shot",
        Rag => "RAG",
        _ => runner,
    };

    /// <summary>The baseline with the best value of <paramref name="metric"/> (by its direction); null when none computed it.</summary>
    public static RunnerResult? BestBaseline(IReadOnlyList<RunnerResult> runners, string metric)
    {
        var baselines = runners.Where(r => Baselines.Contains(r.Runner) && r.Metric(metric) is not null).ToList();
        if (baselines.Count == 0) return null;
        bool higher = baselines[0].Metric(metric)!.HigherIsBetter;
        // Ties go to the cheaper baseline (the earlier one in Baselines): MaxBy/MinBy keep the first.
        return higher ? baselines.MaxBy(r => r.Metric(metric)!.Value.Value) : baselines.MinBy(r => r.Metric(metric)!.Value.Value);
    }

    /// <summary>
    /// Paired tests for every metric: tuned against each baseline, and exported (GGUF) and onnx against tuned (the
    /// cost of quantisation and export). McNemar for per-example right/wrong metrics, the paired bootstrap for the others.
    /// </summary>
    public static List<PairedComparison> Compare(IReadOnlyDictionary<string, IReadOnlyList<RunnerAnswer>> answers, ScoringOptions o)
    {
        var pairs = new List<(string A, string B)>();
        if (answers.ContainsKey(Tuned))
        {
            foreach (var b in Baselines) if (answers.ContainsKey(b)) pairs.Add((Tuned, b));
            if (answers.ContainsKey(Exported)) pairs.Add((Exported, Tuned));
            if (answers.ContainsKey(Onnx)) pairs.Add((Onnx, Tuned));
        }
        else if (answers.ContainsKey(Base))
            foreach (var b in Baselines.Skip(1)) if (answers.ContainsKey(b)) pairs.Add((b, Base));
        var result = new List<PairedComparison>();
        foreach (var (a, b) in pairs) result.AddRange(Pair(a, answers[a], b, answers[b], o));
        return result;
    }

    /// <summary>
    /// Paired tests of runner <paramref name="a"/> against <paramref name="b"/> on every quality metric (difference A − B):
    /// McNemar for per-example right/wrong metrics, the paired bootstrap for the others. Export re-scoring uses it for
    /// each quantised candidate against base + adapter.
    /// </summary>
    public static List<PairedComparison> Pair(string a, IReadOnlyList<RunnerAnswer> answersA, string b, IReadOnlyList<RunnerAnswer> answersB, ScoringOptions o)
    {
        if (!answersA.Select(x => x.Id).SequenceEqual(answersB.Select(x => x.Id)))
            throw new EdgeTuneException($"runners {a} and {b} answered different examples; cannot pair them");
        var result = new List<PairedComparison>();
        var sa = Scoring.Series(answersA, o);
        var sb = Scoring.Series(answersB, o);
        int k = 0;
        foreach (var x in sa)
        {
            var y = sb.First(s => s.Name == x.Name);
            k++;
            if (x.Name is "latency_s" or "tokens_per_s") continue; // speed differs by runtime, not by tuning: reported, not tested
            var test = x.Correct is not null && y.Correct is not null
                ? Stats.McNemar(x.Correct, y.Correct)
                : Stats.PairedBootstrap(answersA.Count, x.Statistic, y.Statistic, o.Seed + 1000 + (ulong)k, o.Resamples);
            result.Add(new PairedComparison(a, b, x.Name, test));
        }
        return result;
    }

    /// <summary>
    /// Tuned is better only when its primary metric beats the best baseline's (by the metric's direction) and the
    /// paired test against that baseline gives p &lt; 0.05. Quantisation cost: exported minus tuned on the primary metric.
    /// </summary>
    public static Verdict Decide(IReadOnlyList<RunnerResult> runners, IReadOnlyList<PairedComparison> comparisons, ScoringOptions o, double alpha = 0.05)
    {
        string primary = Scoring.PrimaryMetric(o);
        var tuned = runners.FirstOrDefault(r => r.Runner == Tuned);
        if (tuned is null)
            return new Verdict(false, primary, null, null, null, null, null, null, null, "no tuned model was evaluated (train first: edgetune train RECIPE, or give --adapter)");
        var t = tuned.Metric(primary) ?? throw new EdgeTuneException($"the primary metric {primary} was not computed (e.g. nll needs answers within the context)");
        bool higher = t.HigherIsBetter;
        var best = BestBaseline(runners, primary);
        double? bestValue = best?.Metric(primary)!.Value.Value;
        var test = best is null ? null : comparisons.FirstOrDefault(c => c.A == Tuned && c.B == best.Runner && c.Metric == primary)?.Test;
        bool better = best is not null && test is not null &&
                      (higher ? t.Value.Value > bestValue : t.Value.Value < bestValue) && test.PValue < alpha;
        var exported = runners.FirstOrDefault(r => r.Runner == Exported)?.Metric(primary);
        var quant = comparisons.FirstOrDefault(c => c.A == Exported && c.B == Tuned && c.Metric == primary)?.Test;
        string summary = best is null
            ? "no baseline was run: nothing to compare the tuned model with"
            : better
                ? $"the tuned model beats the best baseline ({best.Runner}) on {primary}: {t.Value.Value:0.###} vs {bestValue:0.###} (p = {test!.PValue:0.####}, {test.Test})"
                : $"the tuned model is not better than the best baseline ({best.Runner}) beyond noise on {primary}: {t.Value.Value:0.###} vs {bestValue:0.###}" +
                  (test is null ? "" : $" (p = {test.PValue:0.####}, {test.Test})");
        if (exported is not null)
            summary += $"; quantisation cost (exported − tuned) {exported.Value.Value - t.Value.Value:+0.###;-0.###;0}" + (quant is null ? "" : $" (p = {quant.PValue:0.####})");
        return new Verdict(better, primary, best?.Runner, t.Value.Value, bestValue, test?.PValue, test?.Test,
            exported is null ? null : exported.Value.Value - t.Value.Value, quant?.PValue, summary);
    }

    /// <summary>Is the target met by a runner: the metric's value (point estimate) at or beyond the target in the metric's direction.</summary>
    public static bool Meets(RunnerResult r, string metric, double target) =>
        r.Metric(metric) is { } m && (m.HigherIsBetter ? m.Value.Value >= target : m.Value.Value <= target);
}

/// <summary>The test split must not contain training examples: the same normalised-example hash the split uses.</summary>
public static class LeakGuard
{
    /// <summary>Throws naming every overlapping test line (file:line) and its training twin, up to ten of them.</summary>
    public static void Check(IEnumerable<DatasetExample> train, IEnumerable<DatasetExample> test)
    {
        var seen = new Dictionary<ulong, string>();
        foreach (var e in train) seen.TryAdd(e.Hash, $"{e.File}:{e.Line}");
        var overlaps = test.Where(e => seen.ContainsKey(e.Hash)).Select(e => $"{e.File}:{e.Line} (= {seen[e.Hash]})").ToList();
        if (overlaps.Count == 0) return;
        throw new EdgeTuneException($"the test split overlaps the training split in {overlaps.Count} example{(overlaps.Count == 1 ? "" : "s")}: " +
                                    string.Join(", ", overlaps.Take(10)) + (overlaps.Count > 10 ? ", ..." : "") +
                                    "; an evaluation on trained examples would overstate the model (split with `edgetune data split`)");
    }
}

/// <summary>Default general text for the forgetting check, shipped with the library.</summary>
public static class GeneralText
{
    public static string Default()
    {
        using var stream = typeof(GeneralText).Assembly.GetManifestResourceStream("EdgeTune.Evaluation.general-text.txt")
                           ?? throw new InvalidOperationException("the embedded general text is missing");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    /// <summary>Perplexity of base and tuned on <paramref name="text"/> (exp of total NLL over total tokens).</summary>
    public static ForgettingResult Measure(IInferenceModel baseEngine, IInferenceModel tunedEngine, string text, string source)
    {
        var (bn, bt) = EvalRunner.TextNll(baseEngine, text);
        var (tn, tt) = EvalRunner.TextNll(tunedEngine, text);
        if (bt == 0 || tt == 0) throw new EdgeTuneException($"{source}: the general text has no tokens");
        return new ForgettingResult(source, bt, Math.Exp(bn / bt), Math.Exp(tn / tt));
    }
}
