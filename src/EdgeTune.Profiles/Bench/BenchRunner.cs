using EdgeTune.Inference;
using EdgeTune.Models.Reference;

namespace EdgeTune.Profiles.Bench;

/// <summary>What a benchmark runs: llama-bench's pp/tg sizes, repetitions and warm-up.</summary>
public sealed record BenchSettings
{
    public int PromptTokens { get; init; } = 512;
    public int GenTokens { get; init; } = 128;
    public int Repetitions { get; init; } = 5;

    /// <summary>Full repetitions run first and left out of every figure (caches, page faults, clocks ramping up).</summary>
    public int Warmup { get; init; } = 1;

    /// <summary>Seed of the prompt's token ids.</summary>
    public int Seed { get; init; } = 42;

    public void Validate()
    {
        if (PromptTokens < 1) throw new Core.EdgeTuneException($"--prompt-tokens must be at least 1, got {PromptTokens}");
        if (GenTokens < 1) throw new Core.EdgeTuneException($"--gen-tokens must be at least 1, got {GenTokens}");
        if (Repetitions < 1) throw new Core.EdgeTuneException($"--repetitions must be at least 1, got {Repetitions}");
        if (Warmup < 0) throw new Core.EdgeTuneException($"--warmup must be 0 or more, got {Warmup}");
    }
}

/// <summary>
/// One repetition, timed by the harness: the prompt (until its logits are ready), the first token (TTFT:
/// prompt evaluation and picking the token), then <see cref="BenchSettings.GenTokens"/> decode steps, each
/// one evaluation and one pick. Timestamps are <see cref="TimeProvider"/> ticks.
/// </summary>
public sealed record RepetitionTiming(
    int Index,
    bool Warmup,
    long Start,
    long FirstToken,
    long End,
    double PromptSeconds,
    double TtftSeconds,
    IReadOnlyList<double> TokenSeconds,
    RuntimeTimings? Runtime)
{
    public double GenSeconds => TokenSeconds.Sum();
    public double PromptTokensPerSecond(int promptTokens) => promptTokens / PromptSeconds;
    public double GenTokensPerSecond => TokenSeconds.Count / GenSeconds;
}

public sealed record BenchProgress(int Repetition, int Total, bool Warmup, string Phase);

/// <summary>
/// The measuring loop, runtime-neutral: every repetition starts from an empty context, evaluates the same
/// prompt of seeded random token ids (as llama-bench does), then decodes greedily. Timing is the harness's
/// own clock around each call; the runtime's own counters are kept beside it.
/// </summary>
public static class BenchRunner
{
    public static IReadOnlyList<RepetitionTiming> Run(IDecodeSession session, int vocabularySize, BenchSettings settings, TimeProvider time,
        IProgress<BenchProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        settings.Validate();
        var prompt = PromptTokens(settings, vocabularySize);
        int total = settings.Warmup + settings.Repetitions;
        var runs = new List<RepetitionTiming>(total);
        for (int r = 0; r < total; r++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            bool warmup = r < settings.Warmup;
            progress?.Report(new BenchProgress(r, total, warmup, "prompt"));
            session.Reset();

            long start = time.GetTimestamp();
            session.Prompt(prompt);
            long promptDone = time.GetTimestamp();
            int token = ReferenceModel.ArgMax(session.LastLogits());
            long firstToken = time.GetTimestamp();

            var steps = new double[settings.GenTokens];
            long before = firstToken;
            for (int i = 0; i < steps.Length; i++)
            {
                if ((i & 15) == 0) cancellationToken.ThrowIfCancellationRequested();
                session.Decode(token);
                token = ReferenceModel.ArgMax(session.LastLogits());
                long after = time.GetTimestamp();
                steps[i] = Seconds(time, before, after);
                before = after;
            }
            runs.Add(new RepetitionTiming(r - settings.Warmup, warmup, start, firstToken, before,
                Seconds(time, start, promptDone), Seconds(time, start, firstToken), steps, session.Timings));
        }
        progress?.Report(new BenchProgress(total, total, false, "done"));
        return runs;
    }

    /// <summary>The prompt: seeded random ids over the vocabulary, the same for every repetition.</summary>
    public static int[] PromptTokens(BenchSettings settings, int vocabularySize)
    {
        if (vocabularySize < 1) throw new Core.EdgeTuneException("the model has no vocabulary");
        var rng = new Random(settings.Seed);
        return Enumerable.Range(0, settings.PromptTokens).Select(_ => rng.Next(vocabularySize)).ToArray();
    }

    private static double Seconds(TimeProvider time, long from, long to) => (double)(to - from) / time.TimestampFrequency;
}
