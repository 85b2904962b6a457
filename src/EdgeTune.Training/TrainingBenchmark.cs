using System.Diagnostics;
using EdgeTune.Core;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Models.Architectures;
using EdgeTune.Kernels;
using EdgeTune.Recipes;
using EdgeTune.Training.Model;

namespace EdgeTune.Training;

/// <summary>One fixed training configuration to measure.</summary>
public sealed record TrainBenchConfig
{
    public int Embedding { get; init; } = 256;
    public int Layers { get; init; } = 4;
    public int Heads { get; init; } = 8;
    public int KvHeads { get; init; } = 4;
    public int FeedForward { get; init; } = 688;
    public int Vocab { get; init; } = 4096;
    public int SeqLen { get; init; } = 256;
    public int Batch { get; init; } = 4;
    public int Rank { get; init; } = 8;
    public TuningMethod Method { get; init; } = TuningMethod.Lora;
    public string BaseQuant { get; init; } = "nf4";
    public int WarmupSteps { get; init; } = 1;
    public int Steps { get; init; } = 5;
    /// <summary>With K &gt; 0 the loss is the distillation head's over random teacher top-K rows (forward KL, alpha 0.5).</summary>
    public int DistillTopK { get; init; }
    public bool TiedEmbeddings { get; init; }
    public bool ActivationCheckpointing { get; init; }
    /// <summary>A real model's name when the dimensions are its (<see cref="KnownShapes"/>).</summary>
    public string? ShapeName { get; init; }
    /// <summary>Build the model and its buffers, report every part's bytes, run no step.</summary>
    public bool MemoryOnly { get; init; }
    /// <summary>Also measure the step-time estimate (1- and 8-block steps) that <c>edgetune plan</c> makes, to print beside the measured step.</summary>
    public bool Predict { get; init; }

    /// <summary>The dimensions of a real model (random weights; the llama graph, so qwen2's q/k/v biases are left out).</summary>
    public static TrainBenchConfig FromShape(KnownShape shape)
    {
        var c = shape.Config;
        if (c.HeadDim * c.Heads != c.HiddenSize)
            throw new EdgeTuneException($"{shape.Source}: head_dim {c.HeadDim} × {c.Heads} heads ≠ hidden_size {c.HiddenSize}; the benchmark's synthetic model needs hidden = heads × head_dim");
        return new TrainBenchConfig
        {
            ShapeName = shape.Name, Embedding = c.HiddenSize, Layers = c.Layers, Heads = c.Heads, KvHeads = c.KvHeads,
            FeedForward = c.IntermediateSize, Vocab = c.VocabSize, TiedEmbeddings = c.TiedEmbeddings,
        };
    }

    public TrainingSetup Setup => new()
    {
        Method = Method, Rank = Rank, Alpha = 2 * Rank, BaseQuant = BaseQuant, Seed = 1, ActivationCheckpointing = ActivationCheckpointing,
    };

    public string Describe() =>
        $"{Method.ToString().ToLowerInvariant()}{(Method == TuningMethod.Qlora ? $" ({BaseQuant})" : "")}: {(ShapeName is null ? "" : ShapeName + " shape, ")}dim {Embedding}, {Layers} layers, {Heads} heads ({KvHeads} KV), FFN {FeedForward}, vocab {Vocab}{(TiedEmbeddings ? " (tied)" : "")}, " +
        $"seq {SeqLen}, batch {Batch}{(Method == TuningMethod.Full ? "" : $", rank {Rank} on q k v o gate up down")}{(ActivationCheckpointing ? ", activation checkpointing" : "")}{(DistillTopK > 0 ? $", KD top {DistillTopK}" : "")}";
}

/// <summary>Anonymous memory of this process (what the model allocates; mapped file pages are not counted).</summary>
public interface IMemoryWatch
{
    long? AnonymousBytes();
    /// <summary>Starts tracking the peak from now.</summary>
    void ResetPeak();
    long? PeakAnonymousBytes();
}

public sealed record TrainBenchResult(TrainBenchConfig Config, string Backend, double TokensPerSecond, double StepMilliseconds, double[] StepMs,
    long FrozenLinearBytes, long FrozenOtherBytes, long TrainableParameters, long ActivationBytes, long? PeakResidentBytes, double FinalLoss)
{
    /// <summary>The memory <c>edgetune plan</c> computes for this configuration, part by part.</summary>
    public TrainingMemoryPlan? Plan { get; init; }
    /// <summary>Anonymous memory before the model was built (the runtime), and its peak from there to the last step.</summary>
    public long? AnonymousBeforeBytes { get; init; }
    public long? PeakAnonymousBytes { get; init; }
    public double? PredictedStepMilliseconds { get; init; }
    public string? PredictionBasis { get; init; }
}

/// <summary>
/// Times full optimizer steps (forward, loss, backward, AdamW) on a synthetic llama of a fixed shape with random
/// tokens, after warm-up steps, and reports tokens/s with the memory of every part.
/// </summary>
public static class TrainingBenchmark
{
    public static TrainBenchResult Run(TrainBenchConfig b, IComputeBackend backend, string workDir, IProgress<string>? progress = null,
        Action? resetPeakMemory = null, Func<long?>? peakMemory = null, IMemoryWatch? memory = null)
    {
        using var weights = BaseWeights.Open(SyntheticModel(b, workDir, progress));
        var plan = TrainingEstimate.Memory(weights.Config, b.Setup, b.Batch, b.SeqLen);

        // Garbage from writing the file is not the model's: collect it before the peak starts.
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        var result = Measure(b, weights, backend, progress, resetPeakMemory, peakMemory, memory) with { Plan = plan };
        if (b.MemoryOnly || !b.Predict) return result;
        // The estimate's own models come after the measurement (and after its model is freed), so they stay out of its peak.
        var predicted = TrainingEstimate.Calibrate(weights, b.Setup, backend, b.Batch, b.SeqLen, progress: progress);
        return result with { PredictedStepMilliseconds = predicted.PredictMs(b.Layers, (long)b.Batch * b.SeqLen), PredictionBasis = predicted.Basis };
    }

    /// <summary>Where <c>edgetune bench train</c> keeps its synthetic models between runs.</summary>
    public static string DefaultWorkDir => Path.Combine(Path.GetTempPath(), "edgetune-bench-train");

    /// <summary>
    /// The synthetic F32 GGUF of <paramref name="b"/>'s shape (random weights, the synthetic vocabulary padded to its
    /// size), written into <paramref name="workDir"/> when missing and reused after: its path.
    /// </summary>
    public static string SyntheticModel(TrainBenchConfig b, string workDir, IProgress<string>? progress = null)
    {
        var model = new TinyLlamaConfig
        {
            Embedding = b.Embedding, Layers = b.Layers, Heads = b.Heads, KvHeads = b.KvHeads, FeedForward = b.FeedForward, TiedEmbeddings = b.TiedEmbeddings,
            ContextLength = Math.Max(b.SeqLen, 128), ExtraTokens = Math.Max(0, b.Vocab - new TinyLlamaConfig().VocabSize),
        };
        Directory.CreateDirectory(workDir);
        string path = Path.Combine(workDir, $"bench-{b.Embedding}x{b.Layers}-h{b.Heads}-kv{b.KvHeads}-f{b.FeedForward}-{model.VocabSize}{(b.TiedEmbeddings ? "-tied" : "")}.gguf");
        if (!File.Exists(path))
        {
            progress?.Report($"writing the synthetic F32 model {path} ({KnownShape.ParameterCount(ToConfig(b)) * 4 / 1e9:F1} GB; kept for the next run)");
            TinyLlama.WriteGguf(path, model); // the writer writes aside and renames: no half-written model is ever reused
        }
        return path;
    }

    private static TrainBenchResult Measure(TrainBenchConfig b, BaseWeights weights, IComputeBackend backend, IProgress<string>? progress,
        Action? resetPeakMemory, Func<long?>? peakMemory, IMemoryWatch? memory)
    {
        long? before = memory?.AnonymousBytes();
        memory?.ResetPeak();
        resetPeakMemory?.Invoke();
        using var m = new TrainableLlama(weights, b.Setup, backend);
        using var mom = backend.Allocate(Math.Max(1, m.Layout.Total));
        using var vel = backend.Allocate(Math.Max(1, m.Layout.Total));
        m.ReserveActivations(b.Batch, b.SeqLen);
        string Anonymous() => memory?.AnonymousBytes() is { } bytes ? $", anonymous memory {bytes / 1048576.0:F0} MiB" : "";
        progress?.Report($"model built{Anonymous()}");
        var result = new TrainBenchResult(b, backend.Name, 0, 0, [], m.FrozenLinearBytes, m.FrozenOtherBytes, m.Layout.Total, m.ActivationBytes, null, double.NaN)
        {
            AnonymousBeforeBytes = before,
        };
        if (b.MemoryOnly) return result with { PeakResidentBytes = peakMemory?.Invoke(), PeakAnonymousBytes = memory?.PeakAnonymousBytes() };

        TeacherRows? teacher = b.DistillTopK > 0 ? RandomTeacher(b, weights.Config.VocabSize) : null;
        var stepProgress = progress is null ? null : new LineProgress(line => progress.Report(line + Anonymous()));
        var times = TimeSteps(m, backend, b.Batch, b.SeqLen, b.WarmupSteps, b.Steps, teacher, mom, vel, stepProgress, out double loss);
        double mean = times.Average();
        return result with
        {
            TokensPerSecond = b.Batch * b.SeqLen / (mean / 1000), StepMilliseconds = mean, StepMs = [.. times], FinalLoss = loss,
            PeakResidentBytes = peakMemory?.Invoke(), PeakAnonymousBytes = memory?.PeakAnonymousBytes(),
        };
    }

    private static ModelConfig ToConfig(TrainBenchConfig b) => new()
    {
        Architecture = "llama", HfModelType = "llama", VocabSize = b.Vocab, HiddenSize = b.Embedding, Layers = b.Layers, Heads = b.Heads, KvHeads = b.KvHeads,
        HeadDim = b.Embedding / b.Heads, IntermediateSize = b.FeedForward, RmsEpsilon = 1e-5, RopeTheta = 10000, TiedEmbeddings = b.TiedEmbeddings,
        AttentionBias = false, ContextLength = b.SeqLen,
    };

    /// <summary>Times full optimizer steps (forward, loss, backward, AdamW) on random tokens; the warm-up steps are left out.</summary>
    public static List<double> TimeSteps(TrainableLlama m, IComputeBackend backend, int batch, int seqLen, int warmup, int steps, TeacherRows? teacher)
    {
        using var mom = backend.Allocate(Math.Max(1, m.Layout.Total));
        using var vel = backend.Allocate(Math.Max(1, m.Layout.Total));
        return TimeSteps(m, backend, batch, seqLen, warmup, steps, teacher, mom, vel, null, out _);
    }

    private static List<double> TimeSteps(TrainableLlama m, IComputeBackend backend, int batch, int seqLen, int warmup, int steps, TeacherRows? teacher,
        DeviceBuffer mom, DeviceBuffer vel, IProgress<string>? progress, out double loss)
    {
        var rng = new Random(7);
        int n = batch * seqLen, vocab = m.Config.VocabSize;
        var tokens = Enumerable.Range(0, n).Select(_ => rng.Next(vocab)).ToArray();
        var targets = tokens.Skip(1).Append(-1).ToArray();
        for (int s = 1; s <= batch; s++) targets[s * seqLen - 1] = -1;
        int count = targets.Count(t => t >= 0);
        loss = 0;
        var times = new List<double>();
        for (int step = 0; step < warmup + steps; step++)
        {
            var clock = Stopwatch.StartNew();
            m.ZeroGradients();
            loss = m.Step(tokens, targets, batch, seqLen, train: true, 1f / count, (ulong)step, teacher) / count;
            backend.AdamW(m.Parameters, m.Gradients, mom, vel, 1e-4f, 0.9f, 0.999f, 1e-8f, 0f, step + 1);
            backend.SumOfSquares(mom.Slice(0, 1)); // a read-back: a device backend has finished the step
            double ms = clock.Elapsed.TotalMilliseconds;
            if (step >= warmup) times.Add(ms);
            progress?.Report($"{(step < warmup ? "warm-up" : "step")} {step + 1}: {ms:F0} ms, loss {loss:F3}");
        }
        return times;
    }

    // Random distinct ids per row with normalised log-probabilities: the kernel's cost does not depend on their values.
    private static TeacherRows RandomTeacher(TrainBenchConfig b, int vocab)
    {
        var rng = new Random(11);
        int n = b.Batch * b.SeqLen, k = Math.Min(b.DistillTopK, vocab);
        var ids = new int[n * k];
        var logProbs = new float[n * k];
        for (int r = 0; r < n; r++)
        {
            int start = rng.Next(vocab);
            for (int i = 0; i < k; i++) (ids[r * k + i], logProbs[r * k + i]) = ((start + i * 7) % vocab, -MathF.Log(k));
        }
        return new TeacherRows(ids, logProbs, new DistillSettings(DistillDivergence.ForwardKl, 0, 1, 0.5, k));
    }
}

file sealed class LineProgress(Action<string> report) : IProgress<string>
{
    public void Report(string value) => report(value);
}
