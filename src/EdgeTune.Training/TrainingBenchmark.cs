using System.Diagnostics;
using EdgeTune.Formats.Synthetic;
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

    public string Describe() =>
        $"{Method.ToString().ToLowerInvariant()}{(Method == TuningMethod.Qlora ? $" ({BaseQuant})" : "")}: dim {Embedding}, {Layers} layers, {Heads} heads ({KvHeads} KV), FFN {FeedForward}, vocab {Vocab}, " +
        $"seq {SeqLen}, batch {Batch}{(Method == TuningMethod.Full ? "" : $", rank {Rank} on q k v o gate up down")}{(DistillTopK > 0 ? $", KD top {DistillTopK}" : "")}";
}

public sealed record TrainBenchResult(TrainBenchConfig Config, string Backend, double TokensPerSecond, double StepMilliseconds, double[] StepMs,
    long FrozenLinearBytes, long FrozenOtherBytes, long TrainableParameters, long ActivationBytes, long? PeakResidentBytes, double FinalLoss);

/// <summary>
/// Times full optimizer steps (forward, loss, backward, AdamW) on a synthetic llama of a fixed shape with random
/// tokens, after warm-up steps, and reports tokens/s with the memory of every part.
/// </summary>
public static class TrainingBenchmark
{
    public static TrainBenchResult Run(TrainBenchConfig b, IComputeBackend backend, string workDir, IProgress<string>? progress = null,
        Action? resetPeakMemory = null, Func<long?>? peakMemory = null)
    {
        var model = new TinyLlamaConfig
        {
            Embedding = b.Embedding, Layers = b.Layers, Heads = b.Heads, KvHeads = b.KvHeads, FeedForward = b.FeedForward,
            ContextLength = Math.Max(b.SeqLen, 128), ExtraTokens = Math.Max(0, b.Vocab - new TinyLlamaConfig().VocabSize),
        };
        Directory.CreateDirectory(workDir);
        string path = Path.Combine(workDir, $"bench-{b.Embedding}x{b.Layers}-{model.VocabSize}.gguf");
        if (!File.Exists(path)) TinyLlama.WriteGguf(path, model);
        using var weights = BaseWeights.Open(path);
        var setup = new TrainingSetup { Method = b.Method, Rank = b.Rank, Alpha = 2 * b.Rank, BaseQuant = b.BaseQuant, Seed = 1 };
        using var m = new TrainableLlama(weights, setup, backend);
        using var mom = backend.Allocate(Math.Max(1, m.Layout.Total));
        using var vel = backend.Allocate(Math.Max(1, m.Layout.Total));

        var rng = new Random(7);
        int n = b.Batch * b.SeqLen;
        var tokens = Enumerable.Range(0, n).Select(_ => rng.Next(model.VocabSize)).ToArray();
        var targets = tokens.Skip(1).Append(-1).ToArray();
        for (int s = 1; s <= b.Batch; s++) targets[s * b.SeqLen - 1] = -1;
        int count = targets.Count(t => t >= 0);
        TeacherRows? teacher = null;
        if (b.DistillTopK > 0)
        {
            // Random distinct ids per row with normalised log-probabilities: the kernel's cost does not depend on their values.
            int k = Math.Min(b.DistillTopK, model.VocabSize);
            var ids = new int[n * k];
            var logProbs = new float[n * k];
            for (int r = 0; r < n; r++)
            {
                int start = rng.Next(model.VocabSize);
                for (int i = 0; i < k; i++) (ids[r * k + i], logProbs[r * k + i]) = ((start + i * 7) % model.VocabSize, -MathF.Log(k));
            }
            teacher = new TeacherRows(ids, logProbs, new DistillSettings(DistillDivergence.ForwardKl, 0, 1, 0.5, k));
        }
        resetPeakMemory?.Invoke();
        double loss = 0;
        var times = new List<double>();
        for (int step = 0; step < b.WarmupSteps + b.Steps; step++)
        {
            var clock = Stopwatch.StartNew();
            m.ZeroGradients();
            loss = m.Step(tokens, targets, b.Batch, b.SeqLen, train: true, 1f / count, (ulong)step, teacher) / count;
            backend.AdamW(m.Parameters, m.Gradients, mom, vel, 1e-4f, 0.9f, 0.999f, 1e-8f, 0f, step + 1);
            backend.SumOfSquares(mom.Slice(0, 1)); // a read-back: a device backend has finished the step
            double ms = clock.Elapsed.TotalMilliseconds;
            if (step >= b.WarmupSteps) times.Add(ms);
            progress?.Report($"{(step < b.WarmupSteps ? "warm-up" : "step")} {step + 1}: {ms:F0} ms, loss {loss:F3}");
        }
        double mean = times.Average();
        return new TrainBenchResult(b, backend.Name, n / (mean / 1000), mean, [.. times], m.FrozenLinearBytes, m.FrozenOtherBytes, m.Layout.Total, m.ActivationBytes, peakMemory?.Invoke(), loss);
    }
}
