using EdgeTune.Core;
using EdgeTune.Models.Architectures;
using EdgeTune.Recipes;
using EdgeTune.Training.Batching;
using EdgeTune.Training.Model;

namespace EdgeTune.Training;

/// <summary>
/// What <c>edgetune train</c> will run for a recipe, worked out without training: the model's shape and setup, and the
/// shape (sequences × padded length) of every micro-batch in the order the trainer draws them (the same epoch order,
/// batch size, accumulation and step count), so memory and time can be estimated before a run starts; and the eval
/// split's passes (when the trainer evaluates, and the micro-batches of one pass).
/// </summary>
public sealed record TrainingSchedule(ModelConfig Config, TrainingSetup Setup, string BasePath, int Examples, int Steps, int BatchSize, int Accumulation,
    IReadOnlyList<(int Batch, int SeqLen)> MicroBatches, long TrainedTokens)
{
    /// <summary>Tokens the steps process, padding included (what costs time).</summary>
    public long ProcessedTokens => MicroBatches.Sum(m => (long)m.Batch * m.SeqLen);

    /// <summary>Examples of the eval split, the micro-batches of one pass over it, and how many passes the run makes.</summary>
    public int EvalExamples { get; init; }
    public IReadOnlyList<(int Batch, int SeqLen)> EvalMicroBatches { get; init; } = [];
    public int EvalPasses { get; init; }

    /// <summary>The quantised types a GGUF base stores its linear weights in (a GGUF base_quant run holds them as stored).</summary>
    public IReadOnlyDictionary<string, GgmlType> StoredTypes { get; init; } = new Dictionary<string, GgmlType>();

    /// <summary>The memory of every part for the largest micro-batch.</summary>
    public TrainingMemoryPlan Memory()
    {
        var (batch, seqLen) = Largest;
        return TrainingEstimate.Memory(Config, Setup, batch, seqLen, StoredTypes);
    }

    /// <summary>The largest micro-batch, training or eval (an eval pass runs through the same activations): the activations are sized for it.</summary>
    public (int Batch, int SeqLen) Largest => MicroBatches.Concat(EvalPasses > 0 ? EvalMicroBatches : []).MaxBy(m => (long)m.Batch * m.SeqLen);

    public static TrainingSchedule For(Recipe r)
    {
        using var weights = BaseWeights.Open(r.Model.Base);
        var (_, _, templater, readOptions) = Trainer.Templating(r, r.Model.Base);
        var (train, _) = TrainingExamples.Load(r.Data.Train, templater, readOptions);
        if (train.Count == 0) throw new EdgeTuneException($"{r.Data.Train}: no usable training example (run `edgetune data check`)");
        int batch = r.Train.BatchSize, accum = r.Train.GradientAccumulation;
        int microPerEpoch = (train.Count + batch - 1) / batch;
        int steps = r.Train.MaxSteps ?? r.Train.Epochs * Math.Max(1, microPerEpoch / accum);
        var shapes = new List<(int, int)>();
        long trained = 0;
        int[]? order = null;
        int orderEpoch = -1;
        for (long g = 0; g < (long)steps * accum; g++)
        {
            int epoch = (int)(g / microPerEpoch), index = (int)(g % microPerEpoch);
            if (epoch != orderEpoch) (order, orderEpoch) = (TrainingExamples.EpochOrder(train.Count, r.Train.Seed, epoch), epoch);
            var items = order!.Skip(index * batch).Take(batch).Select(i => train[i]).ToList();
            shapes.Add((items.Count, items.Max(e => e.Ids.Length)));
            trained += items.Sum(e => e.TrainedTokens);
        }
        // add_tokens grows the vocabulary by at most the markers it adds (fewer when the base has some already).
        var config = weights.Config with { VocabSize = weights.Config.VocabSize + r.Model.AddTokens.Count };
        var setup = TrainingSetup.From(r) with { AddedTokens = r.Model.AddTokens.Count };

        // The trainer's eval: every eval_every steps, else at each epoch's end and the last step; one pass = the split in order, in batches.
        var eval = r.Data.Eval is { } evalPath ? TrainingExamples.Load(evalPath, templater, readOptions).Examples : [];
        var evalShapes = eval.Chunk(batch).Select(items => (items.Length, items.Max(e => e.Ids.Length))).ToList();
        int stepsPerEpoch = Math.Max(1, microPerEpoch / accum);
        int passes = eval.Count == 0 ? 0 : Enumerable.Range(1, steps).Count(done => r.Train.EvalEvery > 0 ? done % r.Train.EvalEvery == 0 : done % stepsPerEpoch == 0 || done == steps);
        return new TrainingSchedule(config, setup, r.Model.Base, train.Count, steps, batch, accum, shapes, trained)
        {
            EvalExamples = eval.Count, EvalMicroBatches = evalShapes, EvalPasses = passes, StoredTypes = TrainableLlama.StoredLinearTypes(weights),
        };
    }
}
