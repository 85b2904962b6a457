using EdgeTune.Kernels;
using EdgeTune.Kernels.Cpu;
using EdgeTune.Models.Adapters;
using EdgeTune.Models.Reference;
using EdgeTune.Recipes;
using EdgeTune.Testing;
using EdgeTune.Training.Model;

namespace EdgeTune.Training.Tests;

/// <summary>The trainable graph against the reference forward, llama.cpp and finite differences.</summary>
public class TrainableLlamaTests
{
    private static readonly int[] Tokens = [1, 259, 262, 270, 280, 17, 271, 265, 42, 263, 271, 260, 99, 266];

    private static TrainableLlama Model(BaseWeights w, TuningMethod method, IComputeBackend b, int rank = 4, string quant = "nf4") =>
        new(w, new TrainingSetup { Method = method, Rank = rank, Alpha = 8, Seed = 3, BaseQuant = quant }, b);

    /// <summary>Random LoRA B (A is already random), so the adapter changes the output.</summary>
    private static void Randomise(TrainableLlama m, int seed)
    {
        var rng = new Random(seed);
        foreach (var slot in m.Layout.Slots.Where(s => s.Name.EndsWith(".lora_b", StringComparison.Ordinal)))
            m.Write(slot.Name, Enumerable.Range(0, (int)slot.Length).Select(_ => (float)(rng.NextDouble() - 0.5) * 0.2f).ToArray());
    }

    private static double CrossEntropy(float[] logits, int[] tokens, int vocab)
    {
        double sum = 0;
        for (int t = 0; t + 1 < tokens.Length; t++)
        {
            var row = logits.AsSpan(t * vocab, vocab);
            double max = double.NegativeInfinity;
            foreach (var x in row) max = Math.Max(max, x);
            double z = 0;
            foreach (var x in row) z += Math.Exp(x - max);
            sum += max + Math.Log(z) - row[tokens[t + 1]];
        }
        return sum;
    }

    private static int[] NextTokens(int[] tokens) => tokens.Skip(1).Append(-1).ToArray();

    [Fact]
    public void Base_loss_and_logits_equal_the_reference_forward()
    {
        using var dir = new TempDir();
        string path = TinyTask.WriteModel(dir.Path);
        using var w = BaseWeights.Open(path);
        using var b = new CpuBackend(2);
        using var m = Model(w, TuningMethod.Lora, b);
        var reference = ReferenceModel.Open(path, ReferencePrecision.Float64);
        var expected = reference.Forward(Tokens);
        var logits = m.Logits(Tokens);
        AssertClose(expected, logits, 1e-4);
        double loss = m.Step(Tokens, NextTokens(Tokens), 1, Tokens.Length, train: false, 0, 0);
        Assert.Equal(CrossEntropy(expected, Tokens, w.Config.VocabSize), loss, 3);
    }

    [Fact]
    public void Exported_adapter_gives_our_logits_in_llama_cpp_and_in_the_reference_through_peft()
    {
        using var dir = new TempDir();
        string path = TinyTask.WriteModel(dir.Path);
        using var w = BaseWeights.Open(path);
        using var b = new CpuBackend(2);
        using var m = Model(w, TuningMethod.Lora, b);
        Randomise(m, 5);
        var ours = m.Logits(Tokens);
        var pairs = Trainer.AdapterPairs(m);
        string gguf = dir.File("adapter.gguf"), peft = dir.File("peft");
        LoraAdapterWriter.WriteGguf(gguf, w.Config, pairs, 8, false, AdapterLayout.Gguf);
        LoraAdapterWriter.WritePeft(peft, w.Config, pairs, 8, false, 0, AdapterLayout.Gguf, path);

        var llama = LlamaCpp.AllLogits(path, Tokens, gguf);
        AssertClose(llama, ours, 1e-3);
        var viaGguf = ReferenceModel.FromGguf(path, ReferencePrecision.Float64, LoraAdapter.Open(gguf)).Forward(Tokens);
        AssertClose(viaGguf, ours, 1e-4);
        // PEFT holds B in Hugging Face row order; the reference permutes it back for this llama GGUF.
        var viaPeft = ReferenceModel.FromGguf(path, ReferencePrecision.Float64, LoraAdapter.Open(peft)).Forward(Tokens);
        AssertClose(viaPeft, ours, 1e-4);
    }

    [Theory]
    [InlineData(TuningMethod.Lora)]
    [InlineData(TuningMethod.Full)]
    public void Gradients_equal_finite_differences(TuningMethod method)
    {
        using var dir = new TempDir();
        string path = TinyTask.WriteModel(dir.Path, TinyTask.Model with { Embedding = 32, FeedForward = 48, Heads = 4, KvHeads = 2, TiedEmbeddings = method == TuningMethod.Full });
        using var w = BaseWeights.Open(path);
        using var b = new CpuBackend(2);
        using var m = Model(w, method, b);
        if (method == TuningMethod.Lora) Randomise(m, 9);
        int[] tokens = [.. Tokens[..13], .. Tokens[1..]];
        int[] targets = [.. NextTokens(tokens)];
        targets[3] = -1; // a masked position
        m.ZeroGradients();
        m.Step(tokens, targets, 2, tokens.Length / 2, train: true, gradScale: 1f, 0);
        var rng = new Random(1);
        int checkedCount = 0;
        foreach (var slot in m.Layout.Slots.Where((_, i) => i % 3 == 0))
        {
            var analytic = m.ReadGradient(slot.Name);
            var values = m.Read(slot.Name);
            for (int probe = 0; probe < 2; probe++)
            {
                int i = rng.Next(values.Length);
                float keep = values[i];
                const float h = 1e-2f;
                values[i] = keep + h; m.Write(slot.Name, values);
                double up = m.Step(tokens, targets, 2, tokens.Length / 2, train: false, 0, 0);
                values[i] = keep - h; m.Write(slot.Name, values);
                double down = m.Step(tokens, targets, 2, tokens.Length / 2, train: false, 0, 0);
                values[i] = keep; m.Write(slot.Name, values);
                double numeric = (up - down) / (2 * h);
                Assert.True(Math.Abs(numeric - analytic[i]) <= 3e-3 + 3e-2 * Math.Abs(numeric),
                    $"{slot.Name}[{i}]: analytic {analytic[i]}, finite difference {numeric}");
                checkedCount++;
            }
        }
        Assert.True(checkedCount >= 6);
    }

    /// <summary>
    /// [model] add_tokens exported: the resized base with the trained rows (AddedTokens.WriteTrained) plus the GGUF
    /// adapter give our logits in llama.cpp on a sequence that holds the new tokens.
    /// </summary>
    [Fact]
    public void Added_tokens_base_and_adapter_give_our_logits_in_llama_cpp()
    {
        using var dir = new TempDir();
        string path = TinyTask.WriteModel(dir.Path, TinyTask.Model with { ChatMl = false });
        string resized = dir.File("resized.gguf"), shipped = dir.File("base.gguf"), adapter = dir.File("adapter.gguf");
        var added = AddedTokens.Resize(path, ["<|im_start|>", "<|im_end|>"], "<|im_end|>", resized);
        using var w = BaseWeights.Open(resized);
        int vocab = w.Config.VocabSize;
        Assert.Equal((2, vocab, vocab - 1), (added.RowsAdded, added.VocabularySize, added.EndOfTurnId));
        using var b = new CpuBackend(2);
        using var m = new TrainableLlama(w, new TrainingSetup { Method = TuningMethod.Lora, Rank = 4, Alpha = 8, Seed = 3, AddedTokens = 2 }, b);
        Randomise(m, 5);
        var rng = new Random(6);
        foreach (var name in new[] { "token_embd.added", "output.added" })
            m.Write(name, m.Read(name).Select(x => x + (float)(rng.NextDouble() - 0.5)).ToArray());
        int[] tokens = [.. Tokens, vocab - 2, 263, 270, vocab - 1, 271];
        var ours = m.Logits(tokens);
        LoraAdapterWriter.WriteGguf(adapter, w.Config, Trainer.AdapterPairs(m), 8, false, AdapterLayout.Gguf);
        AddedTokens.WriteTrained(resized, 2, new Dictionary<string, float[]> { ["token_embd.weight"] = m.Read("token_embd.added"), ["output.weight"] = m.Read("output.added") }, shipped);
        AssertClose(LlamaCpp.AllLogits(shipped, tokens, adapter), ours, 1e-3);
    }

    /// <summary>[model] add_tokens under LoRA: the new rows of the embedding and head get the loss's gradient (inputs and targets).</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Added_token_rows_train_under_lora_with_finite_difference_gradients(bool tied)
    {
        using var dir = new TempDir();
        string path = TinyTask.WriteModel(dir.Path, TinyTask.Model with { Embedding = 32, FeedForward = 48, Heads = 4, KvHeads = 2, TiedEmbeddings = tied });
        using var w = BaseWeights.Open(path);
        using var b = new CpuBackend(2);
        using var m = new TrainableLlama(w, new TrainingSetup { Method = TuningMethod.Lora, Rank = 4, Alpha = 8, Seed = 3, AddedTokens = 2 }, b);
        Randomise(m, 9);
        int vocab = w.Config.VocabSize, first = vocab - 2;
        Assert.Equal(tied ? ["token_embd.added"] : new[] { "token_embd.added", "output.added" }, m.Layout.Slots.Where(s => s.Name.EndsWith(".added", StringComparison.Ordinal)).Select(s => s.Name));
        // The added rows start as the base's rows (the resized base's mean rows): nudge them so the probe sees their effect.
        var rng = new Random(4);
        foreach (var name in m.Layout.Slots.Where(s => s.Name.EndsWith(".added", StringComparison.Ordinal)).Select(s => s.Name))
            m.Write(name, m.Read(name).Select(x => x + (float)(rng.NextDouble() - 0.5) * 0.5f).ToArray());
        int[] tokens = [1, 259, first, 262, 270, first + 1, 280, 17, first, 271, 265, first + 1];
        int[] targets = [.. NextTokens(tokens)];
        targets[4] = -1;
        m.ZeroGradients();
        m.Step(tokens, targets, 2, tokens.Length / 2, train: true, gradScale: 1f, 0);
        int checkedCount = 0;
        foreach (var name in m.Layout.Slots.Where(s => s.Name.EndsWith(".added", StringComparison.Ordinal)).Select(s => s.Name))
        {
            var analytic = m.ReadGradient(name);
            var values = m.Read(name);
            Assert.Contains(analytic, g => Math.Abs(g) > 1e-4);
            for (int probe = 0; probe < 6; probe++)
            {
                int i = rng.Next(values.Length);
                float keep = values[i];
                const float h = 1e-2f;
                values[i] = keep + h; m.Write(name, values);
                double up = m.Step(tokens, targets, 2, tokens.Length / 2, train: false, 0, 0);
                values[i] = keep - h; m.Write(name, values);
                double down = m.Step(tokens, targets, 2, tokens.Length / 2, train: false, 0, 0);
                values[i] = keep; m.Write(name, values);
                double numeric = (up - down) / (2 * h);
                Assert.True(Math.Abs(numeric - analytic[i]) <= 3e-3 + 3e-2 * Math.Abs(numeric), $"{name}[{i}]: analytic {analytic[i]}, finite difference {numeric}");
                checkedCount++;
            }
        }
        Assert.True(checkedCount >= 6);
    }

    [Theory]
    [InlineData("nf4", 0.52)]
    [InlineData("q8_0", 1.07)]
    [InlineData("q4_k", 0.57)]
    public void Qlora_base_is_small_and_close_to_the_float_base(string quant, double bytesPerParam)
    {
        using var dir = new TempDir();
        // Q4_K blocks span 256 values, so the rows here are 256 wide.
        string path = TinyTask.WriteModel(dir.Path, TinyTask.Model with { Embedding = 256, FeedForward = 256 });
        using var w = BaseWeights.Open(path);
        using var b = new CpuBackend(2);
        using var full = Model(w, TuningMethod.Lora, b);
        using var q = Model(w, TuningMethod.Qlora, b, quant: quant);
        Assert.True((double)q.FrozenLinearBytes / q.FrozenLinearParameters <= bytesPerParam, $"{q.FrozenLinearBytes} bytes for {q.FrozenLinearParameters} parameters");
        var a = full.Logits(Tokens);
        var c = q.Logits(Tokens);
        // Quantisation noise, not a different model: the logits stay strongly correlated.
        double dot = 0, na = 0, nc = 0;
        for (int i = 0; i < a.Length; i++) { dot += a[i] * c[i]; na += a[i] * a[i]; nc += c[i] * c[i]; }
        Assert.True(dot / Math.Sqrt(na * nc) > 0.95, $"correlation {dot / Math.Sqrt(na * nc)}");
    }

    internal static void AssertClose(float[] expected, float[] actual, double relative)
    {
        Assert.Equal(expected.Length, actual.Length);
        double scale = expected.Max(x => Math.Abs((double)x));
        double worst = 0;
        for (int i = 0; i < expected.Length; i++) worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]));
        Assert.True(worst <= relative * scale, $"max |Δ| {worst:g3} over max |x| {scale:g3} (relative {worst / scale:g3} > {relative})");
    }
}

/// <summary>The same training step on the SIMD CPU backend and on plain loops: the graph is backend-independent.</summary>
public class BackendAgreementTests
{
    [Theory]
    [InlineData(TuningMethod.Lora, "nf4")]
    [InlineData(TuningMethod.Qlora, "nf4")]
    [InlineData(TuningMethod.Qlora, "q8_0")]
    [InlineData(TuningMethod.Full, "nf4")]
    public void Cpu_backend_and_plain_loops_give_the_same_loss_and_gradients(TuningMethod method, string quant)
    {
        using var dir = new TempDir();
        string path = TinyTask.WriteModel(dir.Path, TinyTask.Model with { Embedding = 64, FeedForward = 96 });
        using var w = BaseWeights.Open(path);
        var setup = new TrainingSetup { Method = method, Rank = 4, Alpha = 8, Seed = 3, BaseQuant = quant, Dropout = 0.1 };
        using var cpu = new CpuBackend(2);
        using var naive = new NaiveBackend();
        using var a = new TrainableLlama(w, setup, cpu);
        using var b = new TrainableLlama(w, setup, naive);
        var rng = new Random(4);
        var tokens = Enumerable.Range(0, 3 * 17).Select(_ => rng.Next(w.Config.VocabSize)).ToArray();
        var targets = tokens.Skip(1).Append(-1).Select((t, i) => i % 5 == 0 ? -1 : t).ToArray();
        foreach (var m in new[] { a, b })
        {
            m.ZeroGradients();
            if (method != TuningMethod.Full)
                foreach (var slot in m.Layout.Slots.Where(s => s.Name.EndsWith(".lora_b", StringComparison.Ordinal)))
                    m.Write(slot.Name, Enumerable.Range(0, (int)slot.Length).Select(i => MathF.Sin(i) * 0.05f).ToArray());
        }
        double la = a.Step(tokens, targets, 3, 17, train: true, 0.01f, 77);
        double lb = b.Step(tokens, targets, 3, 17, train: true, 0.01f, 77);
        Assert.Equal(lb, la, 2);
        var ga = new float[a.Layout.Total];
        var gb = new float[b.Layout.Total];
        cpu.Download(a.Gradients.Slice(0, a.Layout.Total), ga);
        naive.Download(b.Gradients.Slice(0, b.Layout.Total), gb);
        TrainableLlamaTests.AssertClose(gb, ga, 2e-3);
    }
}
