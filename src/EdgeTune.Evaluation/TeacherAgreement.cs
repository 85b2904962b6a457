using EdgeTune.Evaluation.Statistics;
using EdgeTune.Inference;

namespace EdgeTune.Evaluation;

/// <summary>How often one student's greedy next token is the teacher's, and how often it is the label.</summary>
public sealed record StudentAgreement(string Student, IReadOnlyList<bool> Agrees, int Correct)
{
    public int Positions => Agrees.Count;
    public Interval Rate => Stats.Wilson(Agrees.Count(a => a), Agrees.Count);
    public double CorrectRate => Positions == 0 ? 0 : Correct / (double)Positions;
}

/// <summary>Agreement of two students with one teacher on the same positions, with the paired test between them (A − B).</summary>
public sealed record AgreementOutcome(int Positions, int TeacherCorrect, StudentAgreement A, StudentAgreement B, PairedTest Paired)
{
    public double TeacherCorrectRate => Positions == 0 ? 0 : TeacherCorrect / (double)Positions;
}

/// <summary>
/// Token-level agreement for distillation: at every trained position of each example (teacher-forced, one pass per
/// model and example), each model's greedy pick is compared with the teacher's and with the label. The positions
/// are the ones the students were trained on, so the rate measures what distillation optimises; the task metric
/// (generated answers) is scored separately by the eval runners.
/// </summary>
public static class TeacherAgreement
{
    /// <param name="examples">Token ids and next-token targets (−1 where no loss is taken), as training renders them.</param>
    public static AgreementOutcome Measure(IInferenceModel teacher, (string Name, IInferenceModel Model) a, (string Name, IInferenceModel Model) b,
        IEnumerable<(int[] Ids, int[] Targets)> examples, CancellationToken cancellationToken = default)
    {
        int vocab = teacher.VocabularySize;
        var agreeA = new List<bool>();
        var agreeB = new List<bool>();
        int teacherRight = 0, rightA = 0, rightB = 0;
        foreach (var (ids, targets) in examples)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var t = GreedyPicks(teacher.Logits(ids), vocab);
            var pa = GreedyPicks(a.Model.Logits(ids), vocab);
            var pb = GreedyPicks(b.Model.Logits(ids), vocab);
            for (int p = 0; p < ids.Length; p++)
            {
                if (targets[p] < 0) continue;
                if (t[p] == targets[p]) teacherRight++;
                if (pa[p] == targets[p]) rightA++;
                if (pb[p] == targets[p]) rightB++;
                agreeA.Add(pa[p] == t[p]);
                agreeB.Add(pb[p] == t[p]);
            }
        }
        return new AgreementOutcome(agreeA.Count, teacherRight, new StudentAgreement(a.Name, agreeA, rightA), new StudentAgreement(b.Name, agreeB, rightB),
            Stats.McNemar(agreeA, agreeB));
    }

    /// <summary>The most likely token of each row of <paramref name="logits"/> (rows of <paramref name="vocab"/>; the first on ties).</summary>
    public static int[] GreedyPicks(float[] logits, int vocab)
    {
        var picks = new int[logits.Length / vocab];
        for (int p = 0; p < picks.Length; p++)
        {
            var row = logits.AsSpan(p * vocab, vocab);
            int best = 0;
            for (int v = 1; v < vocab; v++) if (row[v] > row[best]) best = v;
            picks[p] = best;
        }
        return picks;
    }
}
