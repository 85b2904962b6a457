using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Core.IO;
using EdgeTune.Data;
using EdgeTune.Data.Templating;
using EdgeTune.Kernels;
using EdgeTune.Models.Adapters;
using EdgeTune.Models.Chat;
using EdgeTune.Recipes;
using EdgeTune.Training.Batching;
using EdgeTune.Training.Checkpoints;
using EdgeTune.Training.Distillation;
using EdgeTune.Training.Model;
using EdgeTune.Training.Optim;

namespace EdgeTune.Training;

/// <summary>A progress report after each optimizer step (or a line of news in <see cref="Message"/>).</summary>
public sealed record TrainProgress(int Step, int TotalSteps, double Loss, double LearningRate, double TokensPerSecond, TimeSpan Eta, double? EvalLoss = null, string? Message = null);

/// <summary>What a finished run produced.</summary>
public sealed record TrainResult(string RunDir, int Steps, double FinalLoss, double? FinalEvalLoss, int? BestStep, string? AdapterGguf, string? AdapterPeft, string? ModelGguf, string MetricsPath, string? LossCurve, string StopReason);

/// <summary>A run that must stop: NaN/inf or an exploding loss, with the step and what to change.</summary>
public sealed class TrainingDivergedException(string message) : EdgeTuneException(message);

/// <summary>
/// Runs a recipe: loads the base and the data, trains with gradient accumulation, clipping, warm-up and decay,
/// evaluates, checkpoints every N steps (resume continues bit for bit), stops on NaN, inf or an exploding loss,
/// optionally early, and exports the adapter (GGUF for llama.cpp, PEFT for Hugging Face) with metrics.jsonl and
/// a loss curve in the run folder.
/// </summary>
public sealed class Trainer(Recipe recipe, IComputeBackend backend, IProgress<TrainProgress>? progress = null)
{
    public TrainResult Run(bool resume, CancellationToken cancel = default)
    {
        var r = recipe;
        string runDir = r.Output.Dir;
        if (resume) CheckResumable(r);
        Directory.CreateDirectory(runDir);
        void Say(string message) => progress?.Report(new TrainProgress(0, 0, double.NaN, 0, 0, TimeSpan.Zero, null, message));

        string basePath = r.Model.Base;
        int addedRows = 0;
        if (r.Model.AddTokens.Count > 0)
        {
            // The markers become control tokens of a resized copy of the base, which the run then trains on.
            var (original, _, _) = Templater.LoadModel(r.Model.Base);
            if (r.Model.ChatTemplate is { } text) original = ChatTemplate.FromText(text, $"{r.File}: model.chat_template");
            string? marker = original.EndOfTurnMarker();
            basePath = Path.Combine(runDir, "base-resized.gguf");
            var added = AddedTokens.Resize(r.Model.Base, r.Model.AddTokens, marker, basePath);
            addedRows = added.RowsAdded;
            Say($"add_tokens: {string.Join(", ", added.Ids.Select(kv => $"{kv.Key} = id {kv.Value}"))}; vocabulary {added.VocabularySize} ({added.RowsAdded} new rows, trained)" +
                (added.EndOfTurnId is int eot ? $"; end of turn {marker} (id {eot}) ends generation in llama.cpp" : marker is null ? "" : $"; the template's end of turn {marker} is not among them"));
        }
        using var weights = BaseWeights.Open(basePath);
        var (template, tokenizer, templater, readOptions) = Templating(r, basePath);
        if (template.EndOfTurnWarning(tokenizer) is { } endOfTurn) Say($"warning: {endOfTurn}");

        var (train, trainFindings) = TrainingExamples.Load(r.Data.Train, templater, readOptions);
        foreach (var f in trainFindings.Where(f => f.Severity != Severity.Info).Take(5)) Say(f.ToString());
        if (trainFindings.Count(f => f.Severity != Severity.Info) > 5) Say($"… {trainFindings.Count(f => f.Severity != Severity.Info) - 5} more findings in {r.Data.Train} (run `edgetune data check`)");
        if (train.Count == 0) throw new EdgeTuneException($"{r.Data.Train}: no usable training example (see the findings above)");
        List<TrainingExample>? eval = null;
        if (r.Data.Eval is { } evalPath) eval = TrainingExamples.Load(evalPath, templater, readOptions).Examples;

        // Before the student is built: a teacher that does not fit is one line, not a wasted load.
        var teacher = r.Distill is null ? null : TeacherFor(r, basePath, tokenizer, train, weights.Config.VocabSize, rebuild: false, Say, cancel);
        var distillSettings = r.Distill is { } ds ? TeacherLogits.Settings(ds) : default;
        var indexOf = new Dictionary<TrainingExample, int>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < train.Count; i++) indexOf[train[i]] = i;

        var setup = TrainingSetup.From(r) with { AddedTokens = addedRows };
        if (TrainableLlama.StoredFormatNote(setup, TrainableLlama.StoredLinearTypes(weights), basePath) is { } stored) Say($"note: {stored}");
        using var model = new TrainableLlama(weights, setup, backend);
        using var m = backend.Allocate(Math.Max(1, model.Layout.Total));
        using var v = backend.Allocate(Math.Max(1, model.Layout.Total));

        int batch = r.Train.BatchSize, accum = r.Train.GradientAccumulation;
        int microPerEpoch = (train.Count + batch - 1) / batch;
        int stepsPerEpoch = Math.Max(1, microPerEpoch / accum);
        int total = r.Train.MaxSteps ?? r.Train.Epochs * stepsPerEpoch;
        int warmup = r.Train.WarmupSteps ?? (int)Math.Ceiling(r.Train.WarmupRatio * total);
        var lr = new LearningRate(r.Train.LearningRate, warmup, total, r.Train.Schedule);
        int padId = tokenizer.EosId ?? 0;

        string metricsPath = Path.Combine(runDir, "metrics.jsonl");
        var state = new TrainerState { TotalSteps = total };
        float[]? best = null; // the parameters of the best evaluation (early stopping): they travel in the checkpoint
        if (resume)
        {
            string from = TrainingCheckpoint.Locate(runDir)!;
            (state, best) = TrainingCheckpoint.Load(runDir, model, m, v);
            TruncateMetrics(metricsPath, state.Step);
            Say($"resumed from {from} at step {state.Step}/{total}");
        }
        else if (File.Exists(metricsPath)) File.Delete(metricsPath);

        long rows = (long)batch * train.Max(e => e.Ids.Length);
        Say($"method {r.Adapter.Method.ToString().ToLowerInvariant()}: {train.Count} training examples, {eval?.Count ?? 0} eval; {total} steps of {batch}×{accum} sequences");
        Say(MemoryReport(model, rows));

        var order = new Dictionary<int, int[]>();
        IReadOnlyList<TrainingExample> MicroBatch(long g)
        {
            int epoch = (int)(g / microPerEpoch), index = (int)(g % microPerEpoch);
            if (!order.TryGetValue(epoch, out var o)) { order.Clear(); order[epoch] = o = TrainingExamples.EpochOrder(train.Count, r.Train.Seed, epoch); }
            return o.Skip(index * batch).Take(batch).Select(i => train[i]).ToList();
        }

        using var metrics = new StreamWriter(metricsPath, append: true);
        var clock = Stopwatch.StartNew();
        long tokensSeen = 0;
        double lastLoss = double.NaN, lossMean = state.LossMean;
        double? lastEval = null;
        string stop = "completed";
        int startStep = state.Step;
        for (int step = state.Step; step < total; step++)
        {
            cancel.ThrowIfCancellationRequested();
            var microExamples = Enumerable.Range(0, accum).Select(i => MicroBatch((long)step * accum + i)).ToList();
            var micro = microExamples.Select(e => r.Train.Packing ? TrainingExamples.Pack(e, padId, r.Train.PackedLength ?? batch * r.Train.MaxSeqLen) : TrainingExamples.Collate(e, padId)).ToList();
            int targets = micro.Sum(b => b.TrainedTokens);
            model.ZeroGradients();
            double lossSum = 0;
            for (int i = 0; i < micro.Count; i++)
            {
                var mb = micro[i];
                ulong seed = TrainableLlama.Mix(r.Train.Seed ^ TrainableLlama.Mix(((ulong)step << 16) | (uint)i));
                TeacherRows? teacherRows = null;
                if (teacher is not null)
                {
                    var (ids, logProbs) = teacher.Collate([.. microExamples[i].Select(e => indexOf[e])], train, mb);
                    teacherRows = new TeacherRows(ids, logProbs, distillSettings);
                }
                lossSum += model.Step(mb.Tokens, mb.Targets, mb.Size, mb.SeqLen, train: true, gradScale: 1f / targets, seed, teacherRows, mb.SegmentStarts);
                tokensSeen += mb.Tokens.Length;
            }
            double loss = lossSum / targets;
            if (!double.IsFinite(loss))
                throw new TrainingDivergedException($"the training loss became {(double.IsNaN(loss) ? "NaN" : "infinite")} at step {step + 1} (learning rate {lr.At(step):g3}); lower [train].learning_rate or check the data; the last checkpoint is in {Path.Combine(runDir, TrainingCheckpoint.FolderName)}");
            if (step - startStep >= 10 && step >= 20 && loss > r.Train.ExplodeFactor * lossMean)
                throw new TrainingDivergedException($"the training loss exploded at step {step + 1}: {loss:F3}, over {r.Train.ExplodeFactor}× the running mean {lossMean:F3}; lower [train].learning_rate or raise [train].explode_factor");
            lossMean = step == 0 ? loss : 0.9 * lossMean + 0.1 * loss;

            double norm = Math.Sqrt(backend.SumOfSquares(model.Gradients));
            if (!double.IsFinite(norm))
                throw new TrainingDivergedException($"the gradients became {(double.IsNaN(norm) ? "NaN" : "infinite")} at step {step + 1} (loss {loss:F3}, learning rate {lr.At(step):g3}); lower [train].learning_rate or set [train].max_grad_norm; the last checkpoint is in {Path.Combine(runDir, TrainingCheckpoint.FolderName)}");
            if (r.Train.MaxGradNorm > 0 && norm > r.Train.MaxGradNorm) backend.Scale(model.Gradients, (float)(r.Train.MaxGradNorm / (norm + 1e-6)));
            double rate = lr.At(step);
            backend.AdamW(model.Parameters, model.Gradients, m, v, (float)rate, (float)r.Train.Beta1, (float)r.Train.Beta2,
                (float)r.Train.AdamEpsilon, (float)r.Train.WeightDecay, step + 1);
            lastLoss = loss;
            int done = step + 1;
            double tokensPerSecond = tokensSeen / Math.Max(1e-9, clock.Elapsed.TotalSeconds);
            var eta = TimeSpan.FromSeconds(clock.Elapsed.TotalSeconds / (done - startStep) * (total - done));
            WriteMetric(metrics, new Dictionary<string, object> { ["step"] = done, ["epoch"] = Math.Round((double)done * accum / microPerEpoch, 4), ["loss"] = loss, ["lr"] = rate, ["grad_norm"] = norm, ["tokens"] = targets, ["tokens_per_s"] = Math.Round(tokensPerSecond, 1) });

            bool evalNow = eval is { Count: > 0 } && (r.Train.EvalEvery > 0 ? done % r.Train.EvalEvery == 0 : done % stepsPerEpoch == 0 || done == total);
            if (evalNow)
            {
                lastEval = EvalLoss(model, eval!, batch, padId);
                WriteMetric(metrics, new Dictionary<string, object> { ["step"] = done, ["eval_loss"] = lastEval.Value });
                if (lastEval < state.BestEvalLoss)
                {
                    state = state with { BestEvalLoss = lastEval.Value, BestStep = done, EvalsWithoutImprovement = 0 };
                    if (r.Train.EarlyStoppingPatience > 0) best = Snapshot(model);
                }
                else state = state with { EvalsWithoutImprovement = state.EvalsWithoutImprovement + 1 };
            }
            metrics.Flush();
            progress?.Report(new TrainProgress(done, total, loss, rate, tokensPerSecond, eta, lastEval));
            state = state with { Step = done, LossMean = lossMean };
            if (r.Train.CheckpointEvery > 0 && done % r.Train.CheckpointEvery == 0 && done < total)
                TrainingCheckpoint.Save(runDir, model, m, v, state, best);
            if (r.Train.EarlyStoppingPatience > 0 && state.EvalsWithoutImprovement >= r.Train.EarlyStoppingPatience)
            {
                stop = $"early stop at step {done}: eval loss did not improve for {state.EvalsWithoutImprovement} evaluations; exporting the best (step {state.BestStep})";
                break;
            }
        }
        TrainingCheckpoint.Save(runDir, model, m, v, state, best);
        metrics.Close();
        if (best is not null) backend.Upload(best, model.Parameters.Slice(0, model.Layout.Total));

        string? gguf = null, peft = null, merged = null;
        if (r.Adapter.Method == TuningMethod.Full)
        {
            merged = Path.Combine(runDir, "model.gguf");
            FullModelExport.WriteGguf(merged, weights, model);
        }
        else
        {
            var pairs = AdapterPairs(model);
            var layout = weights.IsGguf ? AdapterLayout.Gguf : AdapterLayout.HuggingFace;
            gguf = Path.Combine(runDir, "adapter.gguf");
            LoraAdapterWriter.WriteGguf(gguf, weights.Config, pairs, r.Adapter.Alpha, r.Adapter.RsLora, layout, Path.GetFileName(runDir));
            peft = Path.Combine(runDir, "peft");
            LoraAdapterWriter.WritePeft(peft, weights.Config, pairs, r.Adapter.Alpha, r.Adapter.RsLora, r.Adapter.Dropout, layout, r.Model.Base);
        }
        if (r.Model.AddTokens.Count > 0 && r.Adapter.Method != TuningMethod.Full)
        {
            // The adapter belongs to the resized base with the trained rows of the new tokens, written beside it.
            var trained = new Dictionary<string, float[]>();
            if (addedRows > 0)
            {
                trained["token_embd.weight"] = model.Read("token_embd.added");
                if (model.Layout.Contains("output.added")) trained["output.weight"] = model.Read("output.added");
            }
            AddedTokens.WriteTrained(basePath, addedRows, trained, r.AdapterBase);
        }
        string? curve = LossCurve.TryWrite(metricsPath, Path.Combine(runDir, "loss.png"));
        return new TrainResult(runDir, state.Step, lastLoss, lastEval, state.BestStep == 0 ? null : state.BestStep, gguf, peft, merged, metricsPath, curve, stop);
    }

    internal static (ChatTemplate Template, Models.Tokenizers.ITokenizer Tokenizer, Templater Templater, ReadOptions Read) Templating(Recipe r, string basePath)
    {
        // A recipe's chat_template replaces the model's, so a base that has none (a pretrained base, a benchmark's
        // synthetic model) trains with the recipe's instead of failing on the missing key.
        var (template, tokenizer) = r.Model.ChatTemplate is { } custom
            ? (ChatTemplate.FromText(custom, $"{r.File}: model.chat_template"), Inference.Reference.ReferenceRuntime.LoadTokenizer(basePath))
            : Model(Templater.LoadModel(basePath));
        var templater = new Templater(template, tokenizer, new TemplateOptions { MaxTokens = r.Train.MaxSeqLen, TrainOnInputs = r.Data.TrainOnInputs });
        var readOptions = new ReadOptions { Fields = r.Data.Map.Count == 0 ? FieldMapping.Default : FieldMapping.Parse(string.Join(",", r.Data.Map)) };
        return (template, tokenizer, templater, readOptions);

        static (ChatTemplate, Models.Tokenizers.ITokenizer) Model((ChatTemplate Template, Models.Tokenizers.ITokenizer Tokenizer, int? Context) m) => (m.Template, m.Tokenizer);
    }

    private static TeacherLogits TeacherFor(Recipe r, string basePath, Models.Tokenizers.ITokenizer tokenizer, List<TrainingExample> train, int vocabulary,
        bool rebuild, Action<string>? say, CancellationToken cancel)
    {
        var distill = r.Distill!;
        VocabularyCheck.Require(distill.Teacher, basePath, tokenizer);
        if (distill.TopK > vocabulary)
            throw distill.Error("top_k", $"top_k {distill.TopK} is larger than the vocabulary ({vocabulary} tokens of {basePath})");
        return TeacherLogits.Ensure(r, train, vocabulary, rebuild, say, cancel);
    }

    /// <summary>
    /// `edgetune distill teacher`: the teacher's top-k file for a recipe's training split, computed when missing or
    /// stale, reused when up to date. [model] add_tokens is refused: the teacher would need the resized vocabulary.
    /// </summary>
    public static TeacherLogits PrepareTeacher(Recipe r, Action<string>? say, CancellationToken cancel = default)
    {
        if (r.Distill is null) throw new EdgeTuneException($"{r.File}: no [distill] section (teacher = \"…\" names the model to distil from)");
        if (r.Model.AddTokens.Count > 0) throw new EdgeTuneException($"{r.File}: [model] add_tokens with [distill] is not supported: the teacher must share the student's vocabulary");
        using var weights = BaseWeights.Open(r.Model.Base);
        var (_, tokenizer, templater, readOptions) = Templating(r, r.Model.Base);
        var (train, _) = TrainingExamples.Load(r.Data.Train, templater, readOptions);
        if (train.Count == 0) throw new EdgeTuneException($"{r.Data.Train}: no usable training example (run `edgetune data check`)");
        return TeacherFor(r, r.Model.Base, tokenizer, train, weights.Config.VocabSize, rebuild: true, say, cancel);
    }

    /// <summary>
    /// Refuses to resume a run that has no checkpoint. Checked before anything is touched: a mistyped run folder
    /// must not start from step 0 and cost the metrics of the one meant.
    /// </summary>
    public static void CheckResumable(Recipe recipe)
    {
        if (!TrainingCheckpoint.Exists(recipe.Output.Dir))
            throw new EdgeTuneException($"{Path.Combine(recipe.Output.Dir, TrainingCheckpoint.FolderName)}: no checkpoint to resume from (is [output].dir right?); run without --resume to start anew");
    }

    private static float[] Snapshot(TrainableLlama model)
    {
        var values = new float[model.Layout.Total];
        model.Backend.Download(model.Parameters.Slice(0, model.Layout.Total), values);
        return values;
    }

    /// <summary>Mean loss per target token over a set of examples (no dropout, no gradients).</summary>
    public static double EvalLoss(TrainableLlama model, IReadOnlyList<TrainingExample> examples, int batch, int padId)
    {
        double sum = 0;
        long count = 0;
        for (int i = 0; i < examples.Count; i += batch)
        {
            var b = TrainingExamples.Collate(examples.Skip(i).Take(batch).ToList(), padId);
            sum += model.Step(b.Tokens, b.Targets, b.Size, b.SeqLen, train: false, gradScale: 0, 0);
            count += b.TrainedTokens;
        }
        return count == 0 ? double.NaN : sum / count;
    }

    public static List<LoraPair> AdapterPairs(TrainableLlama model)
    {
        var pairs = new List<LoraPair>();
        foreach (var slot in model.Layout.Slots.Where(s => s.Name.EndsWith(".lora_a", StringComparison.Ordinal)))
        {
            string name = slot.Name[..^".lora_a".Length];
            var b = model.Layout[name + ".lora_b"];
            pairs.Add(new LoraPair(name, (int)slot.Shape[0], slot.Shape[1], b.Shape[0], model.Read(slot.Name), model.Read(b.Name)));
        }
        return pairs;
    }

    public static string MemoryReport(TrainableLlama model, long rows)
    {
        static string Mib(long bytes) => (bytes / 1048576.0).ToString("F1", CultureInfo.InvariantCulture) + " MiB";
        long trainable = model.Layout.Total * 4;
        long activations = TrainableLlama.ActivationBytesFor(model.Config, model.Setup, rows);
        double bpp = model.FrozenLinearParameters == 0 ? 0 : (double)model.FrozenLinearBytes / model.FrozenLinearParameters;
        return string.Create(CultureInfo.InvariantCulture,
            $"memory: frozen linear base {Mib(model.FrozenLinearBytes)} ({bpp:F3} B/param), frozen embeddings/head/norms {Mib(model.FrozenOtherBytes)}, trainable {Mib(trainable)} ({model.Layout.Total:N0} params), gradients {Mib(trainable)}, AdamW {Mib(2 * trainable)}, activations {Mib(activations)} for {rows} tokens");
    }

    private static void WriteMetric(StreamWriter w, Dictionary<string, object> values) =>
        w.WriteLine(JsonSerializer.Serialize(values));

    // A resumed run continues the metrics from the checkpoint: lines of later steps (from the interrupted run) go.
    private static void TruncateMetrics(string path, int step)
    {
        if (!File.Exists(path)) return;
        var kept = File.ReadLines(path).Where(line =>
        {
            try
            {
                using var doc = JsonDocument.Parse(line);
                return doc.RootElement.TryGetProperty("step", out var s) && s.GetInt32() <= step;
            }
            catch (JsonException) { return false; }
        }).ToList();
        DurableFiles.WriteAllText(path, string.Concat(kept.Select(line => line + "\n")));
    }
}
