using EdgeTune.Models.Generation;

namespace EdgeTune.Models.Tests;

public class SamplerTests
{
    private static readonly float[] Logits = [1.0f, 3.0f, 2.0f, 3.0f, -1.0f];

    [Fact]
    public void Temperature_zero_is_argmax_with_ties_to_the_lowest_id() =>
        Assert.Equal(1, new Sampler(0).Next(Logits));

    [Fact]
    public void Same_seed_same_tokens_other_seed_other_tokens()
    {
        int[] Draw(ulong seed)
        {
            var s = new Sampler(1.0, 1.0, seed);
            return Enumerable.Range(0, 200).Select(_ => s.Next(Logits)).ToArray();
        }
        Assert.Equal(Draw(42), Draw(42));
        Assert.NotEqual(Draw(42), Draw(43));
    }

    [Fact]
    public void Frequencies_follow_softmax_of_logits_over_temperature()
    {
        const int n = 200_000;
        const double t = 0.7;
        var sampler = new Sampler(t, 1.0, seed: 7);
        var counts = new int[Logits.Length];
        for (int i = 0; i < n; i++) counts[sampler.Next(Logits)]++;
        var weights = Logits.Select(l => Math.Exp(l / t)).ToArray();
        for (int id = 0; id < Logits.Length; id++)
        {
            double p = weights[id] / weights.Sum();
            double sigma = Math.Sqrt(p * (1 - p) / n);
            Assert.True(Math.Abs((double)counts[id] / n - p) < 5 * sigma + 1e-9, $"id {id}: {(double)counts[id] / n:F4} drawn, {p:F4} expected");
        }
    }

    [Fact]
    public void Top_p_keeps_the_smallest_nucleus_reaching_p()
    {
        // softmax at T=1: ids 1 and 3 ≈ 0.397 each (0.793 together), id 2 ≈ 0.146, id 0 ≈ 0.054, id 4 ≈ 0.007.
        Assert.Equal([1, 3], Sampler.Nucleus(Logits, 1.0, 0.7).Select(e => e.Id));
        Assert.Equal([1, 3, 2], Sampler.Nucleus(Logits, 1.0, 0.8).Select(e => e.Id));
        Assert.Equal([1], Sampler.Nucleus(Logits, 1.0, 0.01).Select(e => e.Id));
        Assert.Equal(1.0, Sampler.Nucleus(Logits, 1.0, 0.8).Sum(e => e.P), 12);

        var sampler = new Sampler(1.0, 0.7, seed: 3);
        var drawn = Enumerable.Range(0, 2000).Select(_ => sampler.Next(Logits)).ToHashSet();
        Assert.Equal([1, 3], drawn.Order());
    }

    [Fact]
    public void Invalid_settings_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new Sampler(-0.1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Sampler(1, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Sampler(1, 1.5));
    }
}
