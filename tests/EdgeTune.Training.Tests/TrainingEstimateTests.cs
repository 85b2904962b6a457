using EdgeTune.Core;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Kernels.Cpu;
using EdgeTune.Recipes;
using EdgeTune.Testing;
using EdgeTune.Training.Model;

namespace EdgeTune.Training.Tests;

/// <summary>The plan's memory accounting against what the trainable model allocates, and its step arithmetic.</summary>
public class TrainingEstimateTests
{
    public static TheoryData<string, bool, bool, int> Setups => new()
    {
        { "lora", false, false, 0 },
        { "lora", true, true, 0 },
        { "qlora:nf4", false, true, 0 },
        { "qlora:q8_0", true, false, 0 },
        { "qlora:q4_k", false, false, 0 },
        { "full", false, false, 0 },
        { "full", true, true, 0 },
        { "lora", false, false, 2 },
    };

    [Theory]
    [MemberData(nameof(Setups))]
    public void Every_planned_part_equals_what_the_model_allocates(string method, bool tied, bool checkpointing, int addedTokens)
    {
        using var dir = new TempDir();
        string path = dir.File("m.gguf");
        TinyLlama.WriteGguf(path, new TinyLlamaConfig { Embedding = 256, Layers = 2, Heads = 4, KvHeads = 2, FeedForward = 512, TiedEmbeddings = tied });
        using var w = BaseWeights.Open(path);
        var parts = method.Split(':');
        var setup = new TrainingSetup
        {
            Method = parts[0] switch { "full" => TuningMethod.Full, "qlora" => TuningMethod.Qlora, _ => TuningMethod.Lora },
            BaseQuant = parts.Length > 1 ? parts[1] : "nf4", Rank = 4, ActivationCheckpointing = checkpointing, AddedTokens = addedTokens,
        };
        using var b = new CpuBackend(2);
        using var m = new TrainableLlama(w, setup, b);
        m.ReserveActivations(3, 17);
        var plan = TrainingEstimate.Memory(w.Config, setup, 3, 17);
        Assert.Equal(m.FrozenLinearBytes, plan.Bytes(TrainingEstimate.FrozenLinear));
        Assert.Equal(m.FrozenOtherBytes, plan.Bytes(TrainingEstimate.FrozenOther));
        Assert.Equal(4 * m.Layout.Total, plan.Bytes(TrainingEstimate.TrainableParams));
        Assert.Equal(8 * m.Layout.Total, plan.Bytes(TrainingEstimate.AdamMoments));
        Assert.Equal(m.ActivationBytes, plan.Bytes(TrainingEstimate.ActivationsPart));
        Assert.Equal(m.AddedTokenScratchBytes, plan.Bytes(TrainingEstimate.HeadScratch));
        Assert.Equal(plan.Parts.Sum(p => p.Bytes), plan.Total);
    }

    [Fact]
    public void A_gguf_base_quant_run_over_a_Q4_K_M_base_holds_every_weight_as_stored_and_plans_it()
    {
        using var dir = new TempDir();
        TinyLlama.WriteGguf(dir.File("f32.gguf"), new TinyLlamaConfig { Embedding = 256, Layers = 2, Heads = 4, KvHeads = 2, FeedForward = 512 });
        EdgeTune.Formats.Gguf.Quantize.GgufQuantizer.Run(dir.File("f32.gguf"), dir.File("q4km.gguf"), EdgeTune.Formats.Gguf.Quantize.LlamaFileType.MostlyQ4_K_M);
        using var w = BaseWeights.Open(dir.File("q4km.gguf"));
        var stored = TrainableLlama.StoredLinearTypes(w);
        // The mix llama.cpp's Q4_K_M writes: Q4_K, and Q6_K for attn_v / ffn_down of chosen layers.
        Assert.Contains(stored.Values, t => t == GgmlType.Q4_K);
        Assert.Contains(stored.Values, t => t == GgmlType.Q6_K);

        var qlora = new TrainingSetup { Method = TuningMethod.Qlora, BaseQuant = "q4_k", Rank = 4 };
        using var b = new CpuBackend(2);
        using var held = new TrainableLlama(w, qlora, b);
        var plan = TrainingEstimate.Memory(w.Config, qlora, 1, 8, stored);
        Assert.Equal(held.FrozenLinearBytes, plan.Bytes(TrainingEstimate.FrozenLinear));
        Assert.Contains("F32", plan.Parts.Single(p => p.Name == TrainingEstimate.FrozenLinear).Basis, StringComparison.Ordinal);
        Assert.NotNull(TrainableLlama.StoredFormatNote(qlora, stored, "q4km.gguf"));

        // LoRA B starts at zero, so the forward is the base's: held as stored it equals the base read in float32 (the
        // weights llama.cpp runs), up to summation order. Requantising the Q6_K tensors to Q4_K would not.
        using var exact = new TrainableLlama(w, new TrainingSetup { Method = TuningMethod.Lora, Rank = 4 }, b);
        int[] tokens = [1, 200, 201, 202, 203, 204, 205, 206];
        var a = held.Logits(tokens);
        var e = exact.Logits(tokens);
        double diff = Math.Sqrt(a.Zip(e, (x, y) => (double)(x - y) * (x - y)).Sum() / e.Sum(y => (double)y * y));
        Assert.True(diff < 1e-5, $"relative L2 {diff:g3}");
    }

    [Fact]
    public void Step_operations_follow_the_method_and_checkpointing()
    {
        var c = Models.Architectures.KnownShapes.Find("qwen2.5-0.5b")!.Config;
        var lora = new TrainingSetup { Method = TuningMethod.Lora, Rank = 8 };
        double l = TrainingEstimate.StepFlops(c, lora, 1, 256);
        double full = TrainingEstimate.StepFlops(c, lora with { Method = TuningMethod.Full }, 1, 256);
        double ckpt = TrainingEstimate.StepFlops(c, lora with { ActivationCheckpointing = true }, 1, 256);
        // Full training adds the weight gradients: about 6N against 4N flops per token for the linear layers.
        Assert.InRange(full / l, 1.3, 1.6);
        Assert.True(ckpt > l);
        // Linear in tokens apart from attention's T²: doubling the batch doubles the work exactly.
        Assert.Equal(2 * l, TrainingEstimate.StepFlops(c, lora, 2, 256), 6);
        // Per token, a 0.5B model's LoRA step is about 4 × its 494M parameters (2 forward + 2 input-gradient) plus attention.
        Assert.InRange(l / 256 / Models.Architectures.KnownShapes.Find("qwen2.5-0.5b")!.Parameters, 3.5, 5);
    }

    [Fact]
    public void Known_shapes_count_their_published_parameters()
    {
        // Qwen2.5-0.5B is "0.49B" and TinyLlama "1.1B" on their model cards.
        Assert.InRange(Models.Architectures.KnownShapes.Find("qwen2.5-0.5b")!.Parameters, 490e6, 500e6);
        Assert.InRange(Models.Architectures.KnownShapes.Find("tinyllama-1.1b")!.Parameters, 1.09e9, 1.11e9);
        Assert.InRange(Models.Architectures.KnownShapes.Find("llama-3.2-1b")!.Parameters, 1.23e9, 1.24e9);
    }
}
