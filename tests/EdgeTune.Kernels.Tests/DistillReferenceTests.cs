using System.Text.Json;
using static EdgeTune.Kernels.Tests.TestData;

namespace EdgeTune.Kernels.Tests;

/// <summary>
/// The distillation head's reference (<see cref="Reference.Distill{T}"/>) in float64: the properties TRL tests its
/// generalised JSD with (zero at identity, β endpoints, temperature), central-difference gradients, and golden values
/// from an independent formulation (probabilities, not log-space, and Richardson-extrapolated differences for the
/// gradients) on the inputs of tests/assets/golden/distill/distill_golden.py, and that script's float64 PyTorch output
/// (expected.json, Debian's python3-torch 1.13; CI does not run it), both to 1e-6 relative.
/// </summary>
public class DistillReferenceTests
{
    private static readonly DistillSettings[] AllLosses =
    [
        new(DistillDivergence.ForwardKl, 0, 1, 1, 5),
        new(DistillDivergence.ReverseKl, 1, 1, 1, 5),
        new(DistillDivergence.Jsd, 0.5, 1, 1, 5),
        new(DistillDivergence.Jsd, 0.1, 1, 1, 5),
    ];

    /// <summary>The student's own top-k, renormalised: what a teacher identical to the student would store.</summary>
    private static (int[] Ids, double[] LogProbs) TopKOf(double[] hidden, double[] head, int n, int c, int vocab, int k)
    {
        var ids = new int[n * k];
        var logProbs = new double[n * k];
        for (int r = 0; r < n; r++)
        {
            var logits = new double[vocab];
            for (int v = 0; v < vocab; v++)
                for (int j = 0; j < c; j++) logits[v] += hidden[r * c + j] * head[v * c + j];
            var top = Enumerable.Range(0, vocab).OrderByDescending(v => logits[v]).ThenBy(v => v).Take(k).ToArray();
            double max = top.Max(v => logits[v]), lse = max + Math.Log(top.Sum(v => Math.Exp(logits[v] - max)));
            for (int i = 0; i < k; i++)
            {
                ids[r * k + i] = top[i];
                logProbs[r * k + i] = logits[top[i]] - lse;
            }
        }
        return (ids, logProbs);
    }

    [Fact]
    public void ZeroLossAndZeroGradientWhenTheStudentIsTheTeacher()
    {
        int n = 3, c = 4, vocab = 11, k = 5;
        double[] hidden = Uniform(n * c, 1, 2), head = Uniform(vocab * c, 2, 2);
        var (ids, logProbs) = TopKOf(hidden, head, n, c, vocab, k);
        int[] targets = [1, -1, 4];
        foreach (var s in AllLosses)
            foreach (double t in new[] { 1.0, 2.0, 0.5 })
            {
                var settings = s with { Temperature = t };
                var dHidden = new double[n * c];
                var dHead = new double[vocab * c];
                var sums = Reference.Distill<double>(hidden, head, targets, ids, logProbs, settings, n, c, vocab, 1, dHidden, dHead);
                Assert.True(Math.Abs(sums.Distill) < 1e-12, $"{settings}: D = {sums.Distill}");
                Assert.All(dHidden, g => Assert.True(Math.Abs(g) < 1e-12, $"{settings}: ∂/∂hidden = {g}"));
                Assert.All(dHead, g => Assert.True(Math.Abs(g) < 1e-12, $"{settings}: ∂/∂head = {g}"));
            }
    }

    [Fact]
    public void BetaEndpointsAreTheKlVariantsAndHalfIsSymmetric()
    {
        double[] student = [0.3, -1.2, 2.0, 0.1], teacher = LogSoftmax([1.0, 0.2, -0.5, 0.9]);
        double Row(DistillSettings s, double[] z, double[] t) => Reference.DistillRow<double>(z, t, s with { TopK = 4 }, 1, new double[4]);
        double forward = Row(AllLosses[0], student, teacher), reverse = Row(AllLosses[1], student, teacher);
        Assert.Equal(forward, Row(AllLosses[0] with { Divergence = DistillDivergence.Jsd, Beta = 0 }, student, teacher), 15);
        Assert.Equal(reverse, Row(AllLosses[0] with { Divergence = DistillDivergence.Jsd, Beta = 1 }, student, teacher), 15);
        Assert.NotEqual(forward, reverse, 6);
        // β = 0.5 is symmetric in student and teacher (TRL's test); β = 0.1 is not.
        double[] studentLogProbs = LogSoftmax(student), teacherLogits = teacher;
        var half = AllLosses[2];
        Assert.Equal(Row(half, student, teacher), Row(half, teacherLogits, studentLogProbs), 14);
        var skew = AllLosses[3];
        Assert.NotEqual(Row(skew, student, teacher), Row(skew, teacherLogits, studentLogProbs), 6);
        // Forward KL by hand: Σ p (log p − log q).
        var q = LogSoftmax(student);
        double byHand = Enumerable.Range(0, 4).Sum(i => Math.Exp(teacher[i]) * (teacher[i] - q[i]));
        Assert.Equal(byHand, forward, 14);
    }

    [Fact]
    public void TemperatureSoftensBothSidesAndScalesByTSquared()
    {
        double[] z = [0.3, -1.2, 2.0, 0.1], teacher = LogSoftmax([1.0, 0.2, -0.5, 0.9]);
        foreach (double t in new[] { 0.5, 1.0, 2.0, 4.0 })
            foreach (var s in AllLosses)
            {
                // At T the student is softmax(z/T) and the teacher p^(1/T) renormalised: the loss at T equals T² times the
                // loss at 1 of those rescaled inputs.
                double atT = Reference.DistillRow<double>(z, teacher, s with { Temperature = t, TopK = 4 }, 1, new double[4]);
                double[] zt = [.. z.Select(v => v / t)], tt = LogSoftmax([.. teacher.Select(v => v / t)]);
                double atOne = Reference.DistillRow<double>(zt, tt, s with { TopK = 4 }, 1, new double[4]);
                Assert.Equal(t * t * atOne, atT, 13);
            }
        var forward = AllLosses[0] with { TopK = 4 };
        Assert.NotEqual(Reference.DistillRow<double>(z, teacher, forward, 1, new double[4]),
            Reference.DistillRow<double>(z, teacher, forward with { Temperature = 2 }, 1, new double[4]), 6);
    }

    [Theory]
    [InlineData(DistillDivergence.ForwardKl, 0.0, 1.0, 1.0)]
    [InlineData(DistillDivergence.ReverseKl, 1.0, 2.0, 0.6)]
    [InlineData(DistillDivergence.Jsd, 0.5, 0.7, 0.3)]
    [InlineData(DistillDivergence.Jsd, 0.1, 1.5, 1.0)]
    public void GradientsMatchCentralDifferences(DistillDivergence divergence, double beta, double temperature, double alpha)
    {
        int n = 3, c = 4, vocab = 9, k = 4;
        double[] hidden = Uniform(n * c, 1, 2), head = Uniform(vocab * c, 2, 2);
        var (ids, _) = TopKOf(Uniform(n * c, 5, 2), head, n, c, vocab, k); // a teacher that differs from the student
        double[] logProbs = Uniform(n * k, 6, 2);
        for (int r = 0; r < n; r++) LogSoftmaxInPlace(logProbs.AsSpan(r * k, k));
        int[] targets = [2, -1, 8];
        var settings = new DistillSettings(divergence, beta, temperature, alpha, k);
        const double gradScale = 0.7;
        double Loss() => gradScale * Reference.Distill<double>(hidden, head, targets, ids, logProbs, settings, n, c, vocab, 1, [], []).Total(alpha);
        var dHidden = Uniform(n * c, 9); // overwritten
        var dHead = new double[vocab * c];
        Reference.Distill<double>(hidden, head, targets, ids, logProbs, settings, n, c, vocab, gradScale, dHidden, dHead);
        CheckGradient("hidden", hidden, dHidden, Loss);
        CheckGradient("head", head, dHead, Loss);
        for (int i = 0; i < c; i++) Assert.Equal(0, dHidden[c + i]);
    }

    [Fact]
    public void TopKAsLargeAsTheVocabularyIsTheFullDistribution()
    {
        // With K = V and the teacher's full log-softmax, forward KL over the support is KL over the vocabulary.
        int vocab = 7;
        double[] z = Uniform(vocab, 3, 2), teacher = LogSoftmax(Uniform(vocab, 4, 2));
        double kl = Reference.DistillRow<double>(z, teacher, AllLosses[0] with { TopK = vocab }, 1, new double[vocab]);
        var q = LogSoftmax(z);
        Assert.Equal(Enumerable.Range(0, vocab).Sum(i => Math.Exp(teacher[i]) * (teacher[i] - q[i])), kl, 14);
    }

    [Fact]
    public void BadSettingsAndIdsAreRefused()
    {
        double[] hidden = new double[2], head = new double[6];
        var s = new DistillSettings(DistillDivergence.ForwardKl, 0, 1, 1, 2);
        Assert.Throws<ArgumentOutOfRangeException>(() => Reference.Distill<double>(hidden, head, [0], [0, 3], [0, 0], s, 1, 2, 3, 1, [], []));
        Assert.Throws<ArgumentOutOfRangeException>(() => Reference.Distill<double>(hidden, head, [0], [0, 1, 2, 0], [0, 0, 0, 0], s with { TopK = 4 }, 1, 2, 3, 1, [], []));
        Assert.Throws<ArgumentOutOfRangeException>(() => Reference.Distill<double>(hidden, head, [0], [0, 1], [0, 0], s with { Temperature = 0 }, 1, 2, 3, 1, [], []));
        Assert.Throws<ArgumentOutOfRangeException>(() => Reference.Distill<double>(hidden, head, [0], [0, 1], [0, 0], s with { Alpha = 1.5 }, 1, 2, 3, 1, [], []));
        // A row without a target is not read: its ids may be anything.
        Reference.Distill<double>(hidden, head, [-1], [-7, 99], [0, 0], s, 1, 2, 3, 1, [], []);
    }

    // ---- golden ---------------------------------------------------------------------------------------------------

    private const int GN = 4, GC = 5, GV = 13, GK = 6;
    private static readonly int[] GTargets = [3, -1, 7, 0];

    public static TheoryData<string, DistillDivergence, double, double, double> GoldenCases => new()
    {
        { "forward_kl", DistillDivergence.ForwardKl, 0.0, 1.0, 1.0 },
        { "reverse_kl", DistillDivergence.ReverseKl, 1.0, 1.0, 1.0 },
        { "jsd_0.5", DistillDivergence.Jsd, 0.5, 1.0, 1.0 },
        { "jsd_0.1_t2_a0.7", DistillDivergence.Jsd, 0.1, 2.0, 0.7 },
        { "forward_kl_t2_a0.5", DistillDivergence.ForwardKl, 0.0, 2.0, 0.5 },
        { "reverse_kl_t0.5_a0.3", DistillDivergence.ReverseKl, 1.0, 0.5, 0.3 },
    };

    // distill_golden.py's closed-form inputs.
    private static (double[] Hidden, double[] Head, int[] Ids, double[] LogProbs) GoldenInputs()
    {
        var hidden = new double[GN * GC];
        var head = new double[GV * GC];
        for (int r = 0; r < GN; r++)
            for (int j = 0; j < GC; j++) hidden[r * GC + j] = 0.8 * Math.Sin(1.3 * r + 0.7 * j + 0.1);
        for (int v = 0; v < GV; v++)
            for (int j = 0; j < GC; j++) head[v * GC + j] = 0.9 * Math.Cos(0.9 * v - 0.4 * j + 0.2);
        var ids = new int[GN * GK];
        var logProbs = new double[GN * GK];
        for (int r = 0; r < GN; r++)
        {
            double[] teacher = [.. Enumerable.Range(0, GV).Select(v => 2.0 * Math.Sin(0.61 * r * v + 0.37 * v + r + 0.5))];
            var top = Enumerable.Range(0, GV).OrderByDescending(v => teacher[v]).ThenBy(v => v).Take(GK).ToArray();
            double[] lp = LogSoftmax([.. top.Select(v => teacher[v])]);
            for (int i = 0; i < GK; i++) (ids[r * GK + i], logProbs[r * GK + i]) = (top[i], lp[i]);
        }
        return (hidden, head, ids, logProbs);
    }

    // The loss in probability space, written apart from Reference.Distill: full-vocabulary logits, probabilities
    // normalised by sums, the mixture m formed from probabilities.
    private static double IndependentLoss(double[] hidden, double[] head, int[] ids, double[] logProbs, DistillDivergence divergence, double beta, double t, double alpha)
    {
        double ce = 0, kd = 0;
        for (int r = 0; r < GN; r++)
        {
            if (GTargets[r] < 0) continue;
            var logits = new double[GV];
            for (int v = 0; v < GV; v++)
                for (int j = 0; j < GC; j++) logits[v] += hidden[r * GC + j] * head[v * GC + j];
            double total = logits.Sum(Math.Exp);
            ce += -Math.Log(Math.Exp(logits[GTargets[r]]) / total);
            double[] q = [.. Enumerable.Range(0, GK).Select(i => Math.Exp(logits[ids[r * GK + i]] / t))];
            double[] p = [.. Enumerable.Range(0, GK).Select(i => Math.Pow(Math.Exp(logProbs[r * GK + i]), 1 / t))];
            double qs = q.Sum(), ps = p.Sum();
            for (int i = 0; i < GK; i++) { q[i] /= qs; p[i] /= ps; }
            double d = 0;
            for (int i = 0; i < GK; i++)
            {
                double m = (1 - beta) * q[i] + beta * p[i];
                d += divergence switch
                {
                    DistillDivergence.ForwardKl => p[i] * Math.Log(p[i] / q[i]),
                    DistillDivergence.ReverseKl => q[i] * Math.Log(q[i] / p[i]),
                    _ => beta * p[i] * Math.Log(p[i] / m) + (1 - beta) * q[i] * Math.Log(q[i] / m),
                };
            }
            kd += t * t * d;
        }
        return (1 - alpha) * ce + alpha * kd;
    }

    // Central differences at h and h/2, Richardson-extrapolated: O(h⁴) truncation, about 1e-11 here.
    private static double[] RichardsonGradient(double[] x, Func<double> loss, double h = 1e-3)
    {
        var g = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            double saved = x[i];
            double Central(double step)
            {
                x[i] = saved + step;
                double plus = loss();
                x[i] = saved - step;
                double minus = loss();
                x[i] = saved;
                return (plus - minus) / (2 * step);
            }
            g[i] = (4 * Central(h / 2) - Central(h)) / 3;
        }
        return g;
    }

    [Theory]
    [MemberData(nameof(GoldenCases))]
    public void GoldenValues(string name, DistillDivergence divergence, double beta, double t, double alpha)
    {
        var (hidden, head, ids, logProbs) = GoldenInputs();
        var settings = new DistillSettings(divergence, beta, t, alpha, GK);
        var dHidden = new double[GN * GC];
        var dHead = new double[GV * GC];
        double loss = Reference.Distill<double>(hidden, head, GTargets, ids, logProbs, settings, GN, GC, GV, 1, dHidden, dHead).Total(alpha);

        double Independent() => IndependentLoss(hidden, head, ids, logProbs, divergence, beta, t, alpha);
        Agree($"{name} loss", [Independent()], [loss]);
        Agree($"{name} ∂/∂hidden", RichardsonGradient(hidden, Independent), dHidden);
        Agree($"{name} ∂/∂head", RichardsonGradient(head, Independent), dHead);

        var golden = PyTorchGolden() ?? throw new InvalidOperationException("tests/assets/golden/distill/expected.json is missing (run distill_golden.py there)");
        var c = golden.GetProperty("cases").GetProperty(name);
        Agree($"{name} loss (PyTorch)", [c.GetProperty("loss").GetDouble()], [loss]);
        Agree($"{name} ∂/∂hidden (PyTorch)", [.. c.GetProperty("d_hidden").EnumerateArray().Select(e => e.GetDouble())], dHidden);
        Agree($"{name} ∂/∂head (PyTorch)", [.. c.GetProperty("d_head").EnumerateArray().Select(e => e.GetDouble())], dHead);
    }

    /// <summary>tests/assets/golden/distill/expected.json, distill_golden.py's output.</summary>
    private static JsonElement? PyTorchGolden()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "tests", "assets", "golden", "distill", "expected.json");
            if (File.Exists(candidate)) return JsonDocument.Parse(File.ReadAllText(candidate)).RootElement;
        }
        return null;
    }

    // ≤ 1e-6 relative per element, against the largest magnitude of the expected vector as the floor.
    private static void Agree(string what, double[] expected, double[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        double floor = Math.Max(expected.Max(Math.Abs), 1e-12);
        for (int i = 0; i < expected.Length; i++)
            if (!(Math.Abs(actual[i] - expected[i]) <= 1e-6 * Math.Max(Math.Abs(expected[i]), floor)))
                Assert.Fail($"{what}[{i}]: {actual[i]:R}, expected {expected[i]:R}");
    }

    private static double[] LogSoftmax(double[] x)
    {
        var y = (double[])x.Clone();
        LogSoftmaxInPlace(y.AsSpan());
        return y;
    }

    private static void LogSoftmaxInPlace(Span<double> x)
    {
        double max = double.NegativeInfinity;
        foreach (double v in x) max = Math.Max(max, v);
        double sum = 0;
        foreach (double v in x) sum += Math.Exp(v - max);
        double lse = max + Math.Log(sum);
        for (int i = 0; i < x.Length; i++) x[i] -= lse;
    }
}
