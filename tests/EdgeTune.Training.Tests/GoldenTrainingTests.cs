using System.Text.Json;
using EdgeTune.Kernels;
using EdgeTune.Kernels.Cpu;
using EdgeTune.Recipes;
using EdgeTune.Training.Model;
using Xunit.Abstractions;

namespace EdgeTune.Training.Tests;

/// <summary>
/// The golden-state test of llm.c's test_gpt2.c, for LoRA: our float32 training graph against an independent
/// float64 PyTorch implementation of the Hugging Face forward, tensor by tensor.
/// Fixtures: tests/assets/golden/&lt;model&gt;/expected_lora.json beside the model's config.json and model.safetensors,
/// written by tests/assets/golden/hf_lora_train.py (Debian's python3-torch 1.13; CI does not run it): LoRA rank 4,
/// alpha 8 on all seven linear layers, given A and B; a batch of 2×12 tokens with masked prompt and last positions;
/// the logits, the token-mean loss, ∂loss/∂A and ∂loss/∂B, and the losses of 10 AdamW steps (lr 1e-2, no decay).
/// The two models cover GQA with llama-3 rope scaling (untied head) and qwen2 (q/k/v biases, tied embeddings),
/// both loaded from the HF folder, so rope pairs (i, i + D/2) and rows are in Hugging Face order.
/// </summary>
public sealed class GoldenTrainingTests(ITestOutputHelper output)
{
    /// <summary>Each model on CpuBackend (the managed SIMD kernels CPU training uses) and on NaiveBackend (plain loops,
    /// double accumulators: the graph alone, so a failure on "cpu" only points at the kernels).</summary>
    public static TheoryData<string, string> Cases => new()
    {
        { "llama-gqa-llama3rope", "cpu" }, { "qwen2-mha-tied", "cpu" },
        { "llama-gqa-llama3rope", "naive" }, { "qwen2-mha-tied", "naive" },
    };

    // Tolerances. The reference is float64 throughout; the engine stores and accumulates in float32 (unit roundoff
    // 6e-8), over dot products of at most 64 terms, 2 blocks, softmax and rms norms, so relative errors of 1e-6..1e-5
    // are expected and the bounds below leave an order of magnitude of room without hiding a wrong op (a wrong rope
    // pairing, GQA head mapping, bias or tied head moves logits and gradients by 1e-2 or more).
    /// <summary>Logits: max |ours − torch| / max |torch| over every position of both sequences.</summary>
    private const double LogitTolerance = 1e-4;
    /// <summary>Loss: |ours − torch| / torch; a mean of 16 log-probabilities, each from a float32 log-sum-exp.</summary>
    private const double LossTolerance = 1e-5;
    /// <summary>Per gradient tensor: max |ours − torch| ≤ 1e-4·max |torch| + 1e-7. Relative to the tensor's largest
    /// element, since small elements are differences of larger float32 terms; 1e-7 absolute covers tensors whose
    /// gradients are all tiny.</summary>
    private const double GradientRelative = 1e-4, GradientAbsolute = 1e-7;
    /// <summary>Each of the 10 losses under AdamW: relative 1e-4. The parameters drift apart by float32 rounding of the
    /// updates (Adam normalises each step to about lr per element, so small gradients' rounding is amplified), which
    /// is why this is looser than the single-step loss.</summary>
    private const double TrajectoryTolerance = 1e-4;

    private static string Folder(string name)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "tests", "assets", "golden", name);
            if (Directory.Exists(candidate)) return candidate;
        }
        throw new DirectoryNotFoundException($"tests/assets/golden/{name} not found above {AppContext.BaseDirectory}");
    }

    private sealed record Tensor(long[] Shape, double[] Values);

    private sealed class Fixture
    {
        public required int Rank, Batch, SeqLen, Count;
        public required double Alpha, Loss, Lr, Beta1, Beta2, Eps;
        public required int[] Tokens, Targets, LogitsShape;
        public required double[] Logits, Losses;
        public required Dictionary<string, Tensor> Init, Grad;

        public static Fixture Load(string folder)
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(folder, "expected_lora.json")));
            var r = doc.RootElement;
            static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();
            static double[] Doubles(JsonElement e) => e.EnumerateArray().Select(x => x.GetDouble()).ToArray();
            static Dictionary<string, Tensor> Tensors(JsonElement e) => e.EnumerateObject().ToDictionary(
                p => p.Name,
                p => new Tensor(p.Value.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray(), Doubles(p.Value.GetProperty("values"))),
                StringComparer.Ordinal);
            var opt = r.GetProperty("optimizer");
            return new Fixture
            {
                Rank = r.GetProperty("rank").GetInt32(), Alpha = r.GetProperty("alpha").GetDouble(),
                Batch = r.GetProperty("batch").GetInt32(), SeqLen = r.GetProperty("seq_len").GetInt32(), Count = r.GetProperty("count").GetInt32(),
                Tokens = Ints(r.GetProperty("tokens")), Targets = Ints(r.GetProperty("targets")),
                LogitsShape = Ints(r.GetProperty("logits_shape")), Logits = Doubles(r.GetProperty("logits")),
                Loss = r.GetProperty("loss").GetDouble(), Losses = Doubles(r.GetProperty("losses")),
                Lr = opt.GetProperty("lr").GetDouble(), Beta1 = opt.GetProperty("beta1").GetDouble(),
                Beta2 = opt.GetProperty("beta2").GetDouble(), Eps = opt.GetProperty("eps").GetDouble(),
                Init = Tensors(r.GetProperty("lora_init")), Grad = Tensors(r.GetProperty("lora_grad")),
            };
        }
    }

    /// <summary>The engine over the fixture's model, every adapter tensor set to the fixture's initial A and B.</summary>
    private static (BaseWeights W, IComputeBackend B, TrainableLlama M) Open(string folder, Fixture f, string backend)
    {
        var w = BaseWeights.Open(folder);
        // Typed as the interface: the named arguments below are its parameter names.
        IComputeBackend b = backend == "cpu" ? new CpuBackend(2) : new NaiveBackend();
        var m = new TrainableLlama(w, new TrainingSetup { Method = TuningMethod.Lora, Rank = f.Rank, Alpha = f.Alpha, Dropout = 0 }, b);
        // Same tensors, names and shapes on both sides, so that a missing target or a transposed layout is reported as such.
        Assert.Equal(f.Init.Keys.Order(StringComparer.Ordinal), m.Layout.Slots.Select(s => s.Name).Order(StringComparer.Ordinal));
        foreach (var slot in m.Layout.Slots)
        {
            Assert.True(slot.Shape.SequenceEqual(f.Init[slot.Name].Shape),
                $"{slot.Name}: engine shape [{string.Join(", ", slot.Shape)}], fixture [{string.Join(", ", f.Init[slot.Name].Shape)}]");
            // The fixture's initial values are float32 numbers printed with 9 digits: this conversion is exact.
            m.Write(slot.Name, Array.ConvertAll(f.Init[slot.Name].Values, v => (float)v));
        }
        return (w, b, m);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Logits_equal_pytorch(string model, string backend)
    {
        string name = $"{model} on {backend}";
        string folder = Folder(model);
        var f = Fixture.Load(folder);
        var (w, b, m) = Open(folder, f, backend);
        using (w) using (b) using (m)
        {
            int t = f.SeqLen, v = f.LogitsShape[2];
            Assert.Equal(new[] { f.Batch, f.SeqLen, w.Config.VocabSize }, f.LogitsShape);
            double maxRef = f.Logits.Max(Math.Abs), worst = 0;
            string where = "";
            for (int s = 0; s < f.Batch; s++)
            {
                float[] ours = m.Logits(f.Tokens[(s * t)..((s + 1) * t)]);
                Assert.Equal(t * v, ours.Length);
                for (int i = 0; i < ours.Length; i++)
                {
                    double d = Math.Abs(ours[i] - f.Logits[s * t * v + i]);
                    if (d > worst) (worst, where) = (d, $"sequence {s}, position {i / v}, token {i % v}");
                }
            }
            double rel = worst / maxRef;
            output.WriteLine($"{name}: logits max |ours − torch| = {worst:E2} at {where}, / max |logit| {maxRef:F3} = {rel:E2} (tolerance {LogitTolerance:E0})");
            Assert.True(rel <= LogitTolerance, $"{name}: logits differ by {rel:E2} of max |logit| at {where}");
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Loss_and_every_lora_gradient_equal_pytorch(string model, string backend)
    {
        string name = $"{model} on {backend}";
        string folder = Folder(model);
        var f = Fixture.Load(folder);
        var (w, b, m) = Open(folder, f, backend);
        using (w) using (b) using (m)
        {
            Assert.Equal(f.Count, f.Targets.Count(x => x >= 0));
            m.ZeroGradients();
            double loss = m.Step(f.Tokens, f.Targets, f.Batch, f.SeqLen, train: true, gradScale: 1f / f.Count, dropoutSeed: 0) / f.Count;
            double lossRel = Math.Abs(loss - f.Loss) / Math.Abs(f.Loss);
            output.WriteLine($"{name}: loss ours {loss:R}, torch {f.Loss:R}, relative {lossRel:E2} (tolerance {LossTolerance:E0})");

            var failures = new List<string>();
            double worstRatio = 0;
            string worstTensor = "";
            foreach (var slot in m.Layout.Slots)
            {
                float[] ours = m.ReadGradient(slot.Name);
                double[] expected = f.Grad[slot.Name].Values;
                double maxRef = expected.Max(Math.Abs), maxDiff = 0;
                int at = 0;
                for (int i = 0; i < ours.Length; i++)
                {
                    double d = Math.Abs(ours[i] - expected[i]);
                    if (d > maxDiff) (maxDiff, at) = (d, i);
                }
                double bound = GradientRelative * maxRef + GradientAbsolute;
                output.WriteLine($"  {slot.Name,-32} max |Δ| {maxDiff:E2} (element {at}), max |g| {maxRef:E2}, Δ/max|g| {maxDiff / maxRef:E2}");
                if (maxDiff / bound > worstRatio) (worstRatio, worstTensor) = (maxDiff / bound, slot.Name);
                if (maxDiff > bound)
                    failures.Add($"{slot.Name}: max |ours − torch| {maxDiff:E2} at element {at} (ours {ours[at]:E4}, torch {expected[at]:E4}) > {bound:E2} = 1e-4·max|g| {maxRef:E2} + 1e-7");
            }
            output.WriteLine($"{name}: worst gradient tensor {worstTensor} at {worstRatio:F3} of its bound");

            // One assertion for both, so that a wrong loss still reports which gradient tensors (which layer, which projection) differ.
            if (lossRel > LossTolerance) failures.Insert(0, $"loss: ours {loss:R}, torch {f.Loss:R}, relative {lossRel:E2} > {LossTolerance:E0}");
            Assert.True(failures.Count == 0, $"{name}: {failures.Count} checks of the loss and {m.Layout.Slots.Count} gradient tensors differ:\n" + string.Join("\n", failures));
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Ten_adamw_steps_follow_pytorch_losses(string model, string backend)
    {
        string name = $"{model} on {backend}";
        string folder = Folder(model);
        var f = Fixture.Load(folder);
        var (w, b, m) = Open(folder, f, backend);
        using (w) using (b) using (m)
        {
            using var mom = b.Allocate(m.Layout.Total);
            using var vel = b.Allocate(m.Layout.Total);
            var failures = new List<string>();
            double worst = 0;
            for (int k = 1; k <= f.Losses.Length; k++)
            {
                m.ZeroGradients();
                double loss = m.Step(f.Tokens, f.Targets, f.Batch, f.SeqLen, train: true, gradScale: 1f / f.Count, dropoutSeed: 0) / f.Count;
                double rel = Math.Abs(loss - f.Losses[k - 1]) / Math.Abs(f.Losses[k - 1]);
                worst = Math.Max(worst, rel);
                output.WriteLine($"{name}: loss before step {k,2}: ours {loss:F9}, torch {f.Losses[k - 1]:F9}, relative {rel:E2}");
                if (rel > TrajectoryTolerance) failures.Add($"before step {k}: ours {loss:R}, torch {f.Losses[k - 1]:R}, relative {rel:E2}");
                b.AdamW(m.Parameters, m.Gradients, mom, vel, learningRate: (float)f.Lr, beta1: (float)f.Beta1, beta2: (float)f.Beta2,
                    epsilon: (float)f.Eps, weightDecay: 0f, step: k);
            }
            output.WriteLine($"{name}: worst relative loss difference over {f.Losses.Length} steps {worst:E2} (tolerance {TrajectoryTolerance:E0})");
            Assert.True(failures.Count == 0, $"{name}: AdamW trajectory differs:\n" + string.Join("\n", failures));
        }
    }
}
