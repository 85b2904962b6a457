using System.Diagnostics;
using System.Globalization;
using EdgeTune.Data.Synthetic;
using EdgeTune.Data.Templating;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Kernels.Cpu;
using EdgeTune.Recipes;
using EdgeTune.Training;
using EdgeTune.Training.Batching;
using EdgeTune.Training.Distillation;
using EdgeTune.Training.Model;

namespace EdgeTune.Benchmarks;

/// <summary>
/// Two training-data figures on the demo's ticket task (the CPU backend, the same shape and threads on both sides).
///
///   packing   useful (non-padding) tokens/s of training steps (forward + backward) over the same micro-batches:
///             one example per sequence padded to the longest (what `train` does without packing), padded to
///             max_seq_len (fixed-shape batching, as many trainers do), and packed ([train] packing = true).
///   distill   the teacher-logit pass (llama.cpp over the training split: tokens/s, file bytes per trained position
///             at top_k 64) and what the KD term costs a training step: `bench train`'s step with and without it.
///
///   dotnet run -c Release --project tests/EdgeTune.Benchmarks -- packing [--threads N] [--steps 12] [--batch 8]
///   dotnet run -c Release --project tests/EdgeTune.Benchmarks -- distill [--threads N] [--steps 5] [--top-k 64]
/// </summary>
internal static class TrainingDataBenchmark
{
    private const int MaxSeqLen = 192;

    public static int Run(string[] args)
    {
        string Opt(string name, string fallback)
        {
            int i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        }
        int threads = int.Parse(Opt("--threads", Environment.ProcessorCount.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
        string dir = Path.Combine(Path.GetTempPath(), "edgetune-bench-" + args[0] + "-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        try
        {
            Console.WriteLine($"machine: {Environment.ProcessorCount} cores, {EdgeTune.Core.MachineFacts.CpuName()}, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}; CPU backend, {threads} threads");
            return args[0] == "packing"
                ? Packing(dir, threads, int.Parse(Opt("--steps", "12"), CultureInfo.InvariantCulture), int.Parse(Opt("--batch", "8"), CultureInfo.InvariantCulture))
                : Distill(dir, threads, int.Parse(Opt("--steps", "5"), CultureInfo.InvariantCulture), int.Parse(Opt("--top-k", "64"), CultureInfo.InvariantCulture));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>The demo's full-size base (128 wide, 4 layers, ChatML, a vocabulary fitted to ticket text) and its templated ticket examples.</summary>
    private static (string Model, List<TrainingExample> Examples) TicketWorld(string dir, int tickets, int layers = 4, int embedding = 128)
    {
        var rng = new Random(5);
        var corpus = Enumerable.Range(0, 2000).Select(_ => { var t = SupportTickets.Generate(rng); return t.Text + "\n" + t.Answer; }).Append(SupportTickets.SystemPrompt);
        var pieces = WordPieces.FromCorpus(corpus, maxPieces: 900, existing: TinyLlama.Pieces);
        string model = Path.Combine(dir, $"base-{layers}.gguf");
        TinyLlama.WriteGguf(model, new TinyLlamaConfig
        {
            Embedding = embedding, Layers = layers, Heads = 4, KvHeads = 2, FeedForward = 344, ContextLength = 512, ChatMl = true,
            ExtraTokens = pieces.Count, ExtraPieces = pieces, Seed = 2026,
        });
        string data = Path.Combine(dir, "tickets.jsonl");
        if (!File.Exists(data)) SupportTickets.Write(data, tickets, seed: 2026, plantDefects: false);
        var (template, tokenizer, _) = Templater.LoadModel(model);
        var (examples, _) = TrainingExamples.Load(data, new Templater(template, tokenizer, new TemplateOptions { MaxTokens = MaxSeqLen }));
        return (model, examples);
    }

    private static int Packing(string dir, int threads, int steps, int batch)
    {
        var (model, examples) = TicketWorld(dir, tickets: (steps + 1) * batch + 50);
        var lengths = examples.Select(e => e.Ids.Length).Order().ToList();
        Console.WriteLine($"data: the demo's tickets, {examples.Count} examples of {lengths[0]}–{lengths[^1]} tokens (median {lengths[lengths.Count / 2]}), max_seq_len {MaxSeqLen}");
        Console.WriteLine($"model: 128 wide, 4 layers, 4 heads (2 KV), FFN 344, QLoRA NF4 rank 16 on all seven targets; {steps} micro-batches of {batch} examples after one warm-up, forward + backward");
        using var weights = BaseWeights.Open(model);
        using var backend = new CpuBackend(threads);
        using var m = new TrainableLlama(weights, new TrainingSetup { Method = TuningMethod.Qlora, Rank = 16, Alpha = 32, BaseQuant = "nf4", Seed = 1 }, backend);
        var order = TrainingExamples.EpochOrder(examples.Count, 42, 0);
        var micro = Enumerable.Range(0, steps + 1).Select(s => order.Skip(s * batch).Take(batch).Select(i => examples[i]).ToList()).ToList();

        var layouts = new (string Name, Func<List<TrainingExample>, Batch> Make)[]
        {
            ("padded to the longest (unpacked)", e => TrainingExamples.Collate(e, 0)),
            ($"padded to max_seq_len {MaxSeqLen}", e => TrainingExamples.Collate([.. e, new TrainingExample("pad", 0, new int[MaxSeqLen], Enumerable.Repeat(-1, MaxSeqLen).ToArray())], 0) is var b
                ? new Batch(e.Count, MaxSeqLen, b.Tokens[..(e.Count * MaxSeqLen)], b.Targets[..(e.Count * MaxSeqLen)], b.Offsets[..e.Count]) { UsefulTokens = b.UsefulTokens - MaxSeqLen } : null!),
            ("packed (packing = true)", e => TrainingExamples.Pack(e, 0, e.Count * MaxSeqLen)),
        };
        // Layouts alternate micro-batch by micro-batch, so a load change on a shared machine hits all three alike.
        var batches = layouts.Select(l => micro.Select(l.Make).ToList()).ToList();
        var seconds = new double[layouts.Length];
        var losses = new double[layouts.Length];
        for (int s = 0; s < micro.Count; s++)
            for (int l = 0; l < layouts.Length; l++)
            {
                var b = batches[l][s];
                m.ZeroGradients();
                var clock = Stopwatch.StartNew();
                double loss = m.Step(b.Tokens, b.Targets, b.Size, b.SeqLen, train: true, 1f / b.TrainedTokens, 0, null, b.SegmentStarts);
                clock.Stop();
                if (s == 0) continue; // the warm-up
                seconds[l] += clock.Elapsed.TotalSeconds;
                losses[l] += loss / b.TrainedTokens / steps;
            }
        Console.WriteLine($"{"layout",-34} {"sequences",10} {"tokens",8} {"useful",8} {"ms/step",8} {"useful tok/s",13}");
        var rates = new List<double>();
        for (int l = 0; l < layouts.Length; l++)
        {
            var timed = batches[l].Skip(1).ToList();
            double useful = timed.Sum(b => (double)b.UsefulTokens);
            rates.Add(useful / seconds[l]);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{layouts[l].Name,-34} {timed.Average(b => b.Size),10:0.0} {timed.Average(b => b.Tokens.Length),8:0} {timed.Average(b => b.UsefulTokens),8:0} {seconds[l] * 1000 / timed.Count,8:0.0} {useful / seconds[l],13:0}   (mean loss {losses[l]:0.000000})"));
        }
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"packed vs unpacked: {rates[2] / rates[0]:0.00}× useful tokens/s; vs padded to max_seq_len: {rates[2] / rates[1]:0.00}×"));
        return 0;
    }

    private static int Distill(string dir, int threads, int steps, int topK)
    {
        // Teacher pass: a 4-layer teacher over the training split through llama.cpp, as `distill teacher` runs it.
        var (teacher, examples) = TicketWorld(dir, tickets: 200, layers: 4);
        File.WriteAllText(Path.Combine(dir, "recipe.toml"), $"""
            [model]
            base = "{Path.GetFileName(teacher)}"
            [data]
            train = "tickets.jsonl"
            [train]
            max_seq_len = {MaxSeqLen}
            threads = {threads}
            [distill]
            teacher = "{Path.GetFileName(teacher)}"
            top_k = {topK}
            [output]
            dir = "run"
            """);
        var recipe = Recipe.Load(Path.Combine(dir, "recipe.toml"));
        var (_, teacherTokenizer, _) = Templater.LoadModel(teacher);
        int vocab = teacherTokenizer.VocabularySize;
        var key = TeacherLogits.KeyFor(recipe, examples, vocab);
        var clock = Stopwatch.StartNew();
        var logits = TeacherLogits.Compute(recipe, examples, key, null);
        clock.Stop();
        string file = Path.Combine(dir, "teacher-topk.bin");
        logits.Write(file);
        long tokens = examples.Sum(e => (long)e.Ids.Length);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"teacher pass (llama.cpp, 4 layers × 128, vocab {vocab}, {examples.Count} ticket examples): {tokens / clock.Elapsed.TotalSeconds:0} tokens/s, {logits.Positions} trained positions, " +
            $"file {new FileInfo(file).Length} bytes = {new FileInfo(file).Length / (double)logits.Positions:0.0} bytes a position (entries {TeacherLogits.BytesPerPosition(topK)} at top_k {topK})"));

        // The KD term's cost: `bench train`'s fixed shape, the same steps and threads, with and without it; three
        // alternating rounds, best of each (a shared machine's load only ever adds time).
        using var backend = new CpuBackend(threads);
        var best = new TrainBenchResult?[2];
        for (int round = 0; round < 3; round++)
            for (int i = 0; i < 2; i++)
            {
                var r = TrainingBenchmark.Run(new TrainBenchConfig { Method = TuningMethod.Lora, Steps = steps, DistillTopK = i == 0 ? 0 : topK }, backend, Path.Combine(dir, "bench"));
                if (best[i] is null || r.StepMilliseconds < best[i]!.StepMilliseconds) best[i] = r;
            }
        Console.WriteLine($"{"student step (best of 3)",-24} {"tokens/s",9} {"ms/step",8}");
        for (int i = 0; i < 2; i++)
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{(i == 0 ? "labels only" : $"+ KD, top_k {topK}"),-24} {best[i]!.TokensPerSecond,9:0} {best[i]!.StepMilliseconds,8:0.0}"));
        double share = (best[1]!.StepMilliseconds - best[0]!.StepMilliseconds) / best[1]!.StepMilliseconds;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"shape: {best[0]!.Config.Describe()}; the KD term costs {share:P1} of a step (target < 25%)"));
        return 0;
    }

}
