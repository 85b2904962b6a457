using EdgeTune.Models.Reference;

namespace EdgeTune.Models.Generation;

/// <summary>
/// Picks the next token from logits. Temperature 0 is greedy (argmax, ties to the lowest id); otherwise
/// softmax(logits / T) restricted to the top-p nucleus (the most probable tokens whose mass first reaches p,
/// at least one) and renormalised, drawn with a seeded generator: the same seed gives the same tokens on
/// every machine and .NET version.
/// </summary>
public sealed class Sampler
{
    private readonly SplitMix64 _rng;

    public Sampler(double temperature, double topP = 1.0, ulong seed = 0)
    {
        if (!(temperature >= 0) || double.IsInfinity(temperature)) throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "must be 0 or more");
        if (!(topP > 0 && topP <= 1)) throw new ArgumentOutOfRangeException(nameof(topP), topP, "must be in (0, 1]");
        Temperature = temperature;
        TopP = topP;
        _rng = new SplitMix64(seed);
    }

    public double Temperature { get; }
    public double TopP { get; }

    public int Next(ReadOnlySpan<float> logits) =>
        Temperature == 0 ? ReferenceModel.ArgMax(logits) : Sample(Nucleus(logits, Temperature, TopP), _rng.NextDouble());

    /// <summary>The nucleus: ids in order of falling probability (ties: lower id first) with their probabilities, renormalised.</summary>
    public static (int Id, double P)[] Nucleus(ReadOnlySpan<float> logits, double temperature, double topP)
    {
        double max = double.NegativeInfinity;
        foreach (float l in logits) max = Math.Max(max, l);
        var probs = new (int Id, double P)[logits.Length];
        double sum = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            // Subtracting the maximum keeps exp finite; it cancels in the normalisation.
            double p = Math.Exp((logits[i] - max) / temperature);
            probs[i] = (i, p);
            sum += p;
        }
        Array.Sort(probs, (a, b) => a.P != b.P ? b.P.CompareTo(a.P) : a.Id.CompareTo(b.Id));
        double mass = 0;
        int keep = 0;
        while (keep < probs.Length && (keep == 0 || mass < topP * sum)) mass += probs[keep++].P;
        var nucleus = probs[..keep];
        for (int i = 0; i < nucleus.Length; i++) nucleus[i].P /= mass;
        return nucleus;
    }

    /// <summary>The token whose cumulative probability first exceeds <paramref name="u"/> ∈ [0, 1).</summary>
    private static int Sample((int Id, double P)[] nucleus, double u)
    {
        double cumulative = 0;
        foreach (var (id, p) in nucleus)
        {
            cumulative += p;
            if (u < cumulative) return id;
        }
        return nucleus[^1].Id; // rounding left the total a hair under 1
    }

    /// <summary>SplitMix64 (Steele et al.): tiny, fast, fully specified, so seeded runs are reproducible everywhere.</summary>
    private sealed class SplitMix64(ulong seed)
    {
        private ulong _state = seed;

        public double NextDouble()
        {
            return Core.Numerics.SplitMix64.NextDouble(ref _state);
        }
    }
}
