using System.Diagnostics;
using System.Numerics;
using EdgeTune.Core;
using EdgeTune.Kernels;
using EdgeTune.Models.Architectures;
using EdgeTune.Recipes;
using EdgeTune.Training.Model;

namespace EdgeTune.Training;

/// <summary>One part of a training run's memory and what it is made of.</summary>
public sealed record MemoryPart(string Name, long Bytes, string Basis);

public sealed record TrainingMemoryPlan(IReadOnlyList<MemoryPart> Parts)
{
    public long Total => Parts.Sum(p => p.Bytes);
    public long Bytes(string name) => Parts.FirstOrDefault(p => p.Name == name)?.Bytes ?? 0;
}

/// <summary>A step-time model measured on a backend: steps of a 1- and an 8-block model of the real shape, extrapolated to every block.</summary>
public sealed record StepTimeModel(int CalibrationRows, double FixedMs, double PerLayerMs, string Basis)
{
    /// <summary>Milliseconds of one optimizer step over <paramref name="rows"/> tokens (batch × sequence) with <paramref name="layers"/> blocks.</summary>
    public double PredictMs(int layers, long rows) => (FixedMs + layers * PerLayerMs) * rows / CalibrationRows;
}

/// <summary>
/// What a training run will cost before it runs: memory of every part (the figures <see cref="TrainableLlama"/> and its
/// activations allocate, computed without allocating), floating-point operations per step, and a step time measured on
/// this machine's backend. <c>edgetune plan</c> and <c>edgetune bench train</c> print the same figures.
/// </summary>
public static class TrainingEstimate
{
    public const string FrozenLinear = "frozen linear weights";
    public const string FrozenOther = "frozen embeddings, head, norms";
    public const string TrainableParams = "trainable parameters";
    public const string Gradients = "gradients";
    public const string AdamMoments = "AdamW moments";
    public const string ActivationsPart = "activations and backward scratch";
    public const string HeadScratch = "added-token head gradient";
    public const string LossScratch = "loss head chunk";
    public const string Runtime = "runtime";

    /// <summary>
    /// The .NET runtime, JIT-compiled code, thread stacks and pooled kernel scratch beside the model: anonymous memory of an
    /// `edgetune bench train` process measured before and after its model is built, minus what the other parts account for.
    /// </summary>
    public const long RuntimeBytes = 96L << 20;

    /// <summary>Rows the fused cross-entropy / distillation head computes logits for at once (the CPU backend's chunk).</summary>
    private const int LossChunkRows = 64;

    /// <param name="storedTypes">The quantised types a GGUF base stores its linear weights in (<see cref="TrainableLlama.StoredLinearTypes"/>):
    /// a GGUF base_quant run holds those as stored.</param>
    public static TrainingMemoryPlan Memory(ModelConfig c, TrainingSetup s, int batch, int seqLen, IReadOnlyDictionary<string, GgmlType>? storedTypes = null)
    {
        bool full = s.Method == TuningMethod.Full;
        long frozenLinear = 0, linearParams = 0;
        var formats = new SortedDictionary<string, long>(StringComparer.Ordinal); // format name → parameters held in it
        if (!full)
            for (int l = 0; l < c.Layers; l++)
                foreach (var (t, stem) in TrainingSetup.Stems)
                {
                    var (inDim, outDim) = TrainableLlama.Dims(c, t);
                    var format = TrainableLlama.FrozenFormatFor(s, storedTypes is not null && storedTypes.TryGetValue($"blk.{l}.{stem}.weight", out var stored) ? stored : null);
                    frozenLinear += FrozenRows.ByteCount(format, outDim, inDim);
                    linearParams += (long)inDim * outDim;
                    string name = format.ToString().ToUpperInvariant();
                    formats[name] = formats.GetValueOrDefault(name) + (long)inDim * outDim;
                }
        long vectors = 2L * c.HiddenSize * c.Layers + c.HiddenSize + (c.AttentionBias ? (c.QDim + 2L * c.KvDim) * c.Layers : 0);
        long tables = (long)c.VocabSize * c.HiddenSize * (c.TiedEmbeddings ? 1 : 2);
        long frozenOther = full ? 0 : 4 * (tables + vectors);
        long p = TrainableLlama.LayoutFor(c, s).Total;
        long rows = (long)batch * seqLen;
        var acts = Activations.Plan(c, s, rows);
        string formatName = string.Join(" + ", formats.OrderByDescending(f => f.Value).Select(f => formats.Count == 1 ? f.Key : $"{f.Key} ({f.Value * 100.0 / linearParams:0.#}%)"));
        var parts = new List<MemoryPart>
        {
            new(FrozenLinear, frozenLinear, full ? "none: every weight is trained" : $"{linearParams:N0} parameters in {formatName} ({(linearParams == 0 ? 0 : (double)frozenLinear / linearParams):0.###} B/param)"),
            new(FrozenOther, frozenOther, full ? "none" : $"{tables:N0} embedding{(c.TiedEmbeddings ? " (tied head)" : " and head")} values and {vectors:N0} norm/bias values in F32"),
            new(TrainableParams, 4 * p, $"{p:N0} F32 values"),
            new(Gradients, 4 * p, "F32, one per trainable value"),
            new(AdamMoments, 8 * p, "two F32 moments per trainable value"),
            new(ActivationsPart, 4 * acts.Total, s.ActivationCheckpointing
                ? $"{rows:N0} rows: each block's input kept, one block's tensors recomputed in the backward"
                : $"{rows:N0} rows: every block's tensors kept for the backward"),
            new(LossScratch, 4L * (long)BitOperations.RoundUpToPowerOf2((ulong)(LossChunkRows * (long)c.VocabSize)), $"logits of {LossChunkRows} rows × {c.VocabSize:N0} tokens (pooled)"),
        };
        if (!full && s.AddedTokens > 0) parts.Add(new(HeadScratch, 4L * c.VocabSize * c.HiddenSize, "the fused loss writes every head row; only the added rows are kept"));
        parts.Add(new(Runtime, RuntimeBytes, "measured: .NET runtime, code and kernel scratch beside the model"));
        return new TrainingMemoryPlan(parts);
    }

    /// <summary>
    /// Floating-point operations of one optimizer step (a multiply-add counts 2): the linear layers forward, their input
    /// gradient backward, their weight gradient when trained, causal attention (half the T² pairs; the backward
    /// recomputes the scores: 2.5× the forward), the head with its backward, and the recomputed forward under checkpointing.
    /// </summary>
    public static double StepFlops(ModelConfig c, TrainingSetup s, int batch, int seqLen) => Flops(c, s, batch, seqLen, forwardOnly: false);

    /// <summary>Floating-point operations of a forward pass with its loss and no gradients (an eval batch).</summary>
    public static double ForwardFlops(ModelConfig c, TrainingSetup s, int batch, int seqLen) => Flops(c, s, batch, seqLen, forwardOnly: true);

    private static double Flops(ModelConfig c, TrainingSetup s, int batch, int seqLen, bool forwardOnly)
    {
        bool full = s.Method == TuningMethod.Full;
        double rows = (double)batch * seqLen;
        double linear = 0, lora = 0;
        foreach (var t in TrainingSetup.Stems.Keys)
        {
            var (inDim, outDim) = TrainableLlama.Dims(c, t);
            linear += (double)inDim * outDim;
            if (!full && s.Targets.Contains(t)) lora += (double)s.Rank * (inDim + outDim);
        }
        double blockForward = 2 * rows * (linear + lora) + 2.0 * batch * seqLen * (double)seqLen * c.QDim;
        double blockBackward = 2 * rows * linear * (full ? 2 : 1) + 2 * rows * lora * 2 + 2.5 * 2.0 * batch * seqLen * (double)seqLen * c.QDim;
        double head = 2 * rows * c.VocabSize * (double)c.HiddenSize;
        if (forwardOnly) return c.Layers * blockForward + head;
        double headBackward = head * (full ? 2 : 1);
        double blocks = c.Layers * (blockForward * (s.ActivationCheckpointing ? 2 : 1) + blockBackward);
        return blocks + head + headBackward;
    }

    /// <summary>
    /// Measures steps of the model truncated to one block and to eight (the same weights, shapes, method and backend) and
    /// extrapolates: step(L) = fixed + L · per-block, scaled by rows. The fixed part holds the embedding, the head and its
    /// loss; the per-block part the block's forward, backward and optimizer update. Eight blocks rather than two: the
    /// per-block slope is a difference of two timings, and a large vocabulary's head can make the one-block step
    /// mostly head, so seven blocks of difference are needed to rise above the noise.
    /// </summary>
    public static StepTimeModel Calibrate(BaseWeights weights, TrainingSetup setup, IComputeBackend backend, int batch, int seqLen, int steps = 3,
        IProgress<string>? progress = null)
    {
        int[] depths = weights.Config.Layers == 1 ? [1] : [1, Math.Min(8, weights.Config.Layers)];
        var models = depths.Select(k => new TrainableLlama(weights, setup, backend, layers: k)).ToList();
        try
        {
            // Alternating short and deep steps, the fastest of each: a busy machine slows both alike, not one of them.
            var fastest = models.Select(m => TrainingBenchmark.TimeSteps(m, backend, batch, seqLen, warmup: 1, steps: 1, null)[0]).ToArray();
            var clock = Stopwatch.StartNew();
            for (int round = 1; round < steps || (round < 20 && clock.Elapsed.TotalSeconds < 2); round++)
                for (int i = 0; i < models.Count; i++)
                    fastest[i] = Math.Min(fastest[i], TrainingBenchmark.TimeSteps(models[i], backend, batch, seqLen, warmup: 0, steps: 1, null)[0]);
            progress?.Report($"calibration: step {string.Join(", ", fastest.Select((ms, i) => $"{ms:F0} ms at {depths[i]} block{(depths[i] > 1 ? "s" : "")}"))}");
            if (depths.Length == 1) return new StepTimeModel(batch * seqLen, 0, fastest[0], $"measured on {backend.Name}: the fastest step of the 1-block model, batch {batch} × {seqLen} tokens");
            int span = depths[1] - depths[0];
            double perLayer = Math.Max((fastest[1] - fastest[0]) / span, 0.05 * fastest[1] / depths[1]);
            double fixedMs = fastest[1] - depths[1] * perLayer; // anchored at the deeper step
            return new StepTimeModel(batch * seqLen, fixedMs, perLayer,
                $"measured on {backend.Name}: the fastest steps at {depths[0]} and {depths[1]} blocks, batch {batch} × {seqLen} tokens, extrapolated to {weights.Config.Layers} blocks");
        }
        finally
        {
            foreach (var m in models) m.Dispose();
        }
    }
}
