using System.Globalization;
using EdgeTune.Data.Synthetic;
using EdgeTune.Data.Templating;
using EdgeTune.Evaluation;
using EdgeTune.Evaluation.Runners;
using EdgeTune.Evaluation.Statistics;
using EdgeTune.Cli.Commands;
using EdgeTune.Training.Batching;

namespace EdgeTune.Cli.Demo;

/// <summary>
/// `edgetune demo distill`: the demo's ticket task with a teacher tuned on a 4-layer base teaching a 2-layer student.
/// Two students train with the same recipe, seed and steps, one on the labels alone and one with [distill] (forward KL
/// on the teacher's top-64, alpha 0.5). On the frozen test split: the task metric of all three with 95% CIs and paired
/// tests, and how often each student's next token is the teacher's (teacher-forced, at the trained positions) and
/// each student's whole answer is the teacher's.
/// </summary>
internal sealed partial class DemoPipeline
{
    private const string LabelOnly = "label-only", Distilled = "distilled", Teacher = "teacher";

    public void RunDistill(CancellationToken cancel)
    {
        const int steps = 5;
        void DistillStep(int n, string title) => _o.WriteLine(string.Create(C, $"\n[{n}/{steps} {_clock.Elapsed:mm\\:ss}] {title}"));
        string runs = Path.Combine(work, "runs");
        Directory.CreateDirectory(Path.Combine(work, "models"));
        Directory.CreateDirectory(runs);

        // Same width and vocabulary (fitted to the same text), so the teacher's token ids are the student's.
        DistillStep(1, "bases: a 4-layer teacher base and a 2-layer student base, each pre-trained briefly (same vocabulary)");
        string teacherBase = Pretrain("teacher-base", scale with { Layers = 4 }, cancel);
        string studentBase = Pretrain("student-base", scale with { Layers = 2 }, cancel);

        DistillStep(2, "data: support tickets → JSON triage, checked, cleaned, split with a frozen test set");
        var (template, tokenizer, _) = Templater.LoadModel(studentBase);
        var templater = new Templater(template, tokenizer, new TemplateOptions { MaxTokens = MaxSeqLen });
        var data = DemoWorld.BuildData(work, scale, templater, MaxSeqLen, _o);
        string testSample = Path.Combine(data.DatasetDir, "test-sample.jsonl");
        File.WriteAllLines(testSample, File.ReadLines(Path.Combine(data.DatasetDir, "test.jsonl")).Take(scale.TestLimit));
        SupportTickets.WriteTriageGuide(Path.Combine(work, "data", "triage-guide"));

        DistillStep(3, "teacher: QLoRA on the 4-layer base");
        var teacherRecipe = WriteRecipe(Path.Combine(runs, "teacher.toml"), TuneRecipe("The teacher: QLoRA on the 4-layer base.", Path.GetFileName(teacherBase), "teacher"));
        var teacher = Train(teacherRecipe, "teacher", cancel);
        _o.WriteLine(string.Create(C, $"  loss {teacher.FinalLoss:F3}, eval loss {teacher.FinalEvalLoss:F3}; adapter {teacher.AdapterGguf}"));

        DistillStep(4, "students: the 2-layer base tuned with the same recipe, seed and steps, on the labels alone and distilled (forward KL on the teacher's top 64, alpha 0.5)");
        var labelsRecipe = WriteRecipe(Path.Combine(runs, "student-labels.toml"), TuneRecipe("Student on the labels alone.", Path.GetFileName(studentBase), "student-labels"));
        var labels = Train(labelsRecipe, LabelOnly, cancel);
        _o.WriteLine(string.Create(C, $"  {LabelOnly}: loss {labels.FinalLoss:F3}, eval loss {labels.FinalEvalLoss:F3}"));
        var distillRecipe = WriteRecipe(Path.Combine(runs, "student-distilled.toml"), TuneRecipe("Student distilled from the teacher: (1 - alpha) CE to the labels + alpha T^2 KL(teacher || student) on the teacher's top 64.",
            Path.GetFileName(studentBase), "student-distilled", $"""
            [distill]
            teacher = "../models/{Path.GetFileName(teacherBase)}"
            teacher_adapter = "{Path.GetRelativePath(runs, teacher.AdapterGguf!).Replace('\\', '/')}"
            loss = "forward_kl"
            alpha = 0.5
            temperature = 1.0
            top_k = 64
            """));
        var distilled = Train(distillRecipe, Distilled, cancel);
        _o.WriteLine(string.Create(C, $"  {Distilled}: loss {distilled.FinalLoss:F3} (CE and KD mixed), eval loss {distilled.FinalEvalLoss:F3}; teacher's top-k file {Path.Combine(distilled.RunDir, "teacher-topk.bin")}"));

        DistillStep(5, $"evaluate on the frozen test split ({testSample}): task metric, and agreement with the teacher");
        var plan = EvalCommand.Plan(distillRecipe, distilled.AdapterGguf, null, null, threads);
        var items = Evaluator.ReadExamples(testSample, plan.Fields).Select(EvalItem.From).ToList();
        var evalDir = Path.Combine(runs, "distill-eval");
        var models = new (string Name, string Base, string Adapter)[] { (Teacher, teacherBase, teacher.AdapterGguf!), (LabelOnly, studentBase, labels.AdapterGguf!), (Distilled, studentBase, distilled.AdapterGguf!) };
        var answers = new Dictionary<string, IReadOnlyList<RunnerAnswer>>();
        var engines = new Dictionary<string, EdgeTune.Inference.IInferenceModel>();
        try
        {
            foreach (var (name, model, adapter) in models)
            {
                engines[name] = Engines.LlamaCpp(model, adapter, threads);
                var runner = new EvalRunner(name, engines[name], Evaluator.Template(model, null), new PromptStyle { SystemPrompt = plan.SystemPrompt }, plan.MaxNewTokens);
                var progress = new SyncProgress<RunnerProgress>(p => { if (p.Done == 0) console.Error.WriteLine($"  running {p.Runner} on {p.Total} examples"); });
                answers[name] = runner.Run(items, Path.Combine(evalDir, $"answers-{name}.jsonl"), scoreReference: false, progress, cancel);
                var result = Scoring.Score(name, runner.Description, answers[name], plan.Scoring);
                _o.WriteLine($"  {name,-11} {Describe(result)}");
            }
            string primary = Scoring.PrimaryMetric(plan.Scoring);
            foreach (var (a, b) in new[] { (Distilled, LabelOnly), (Teacher, Distilled), (Teacher, LabelOnly) })
            {
                var test = Comparer.Pair(a, answers[a], b, answers[b], plan.Scoring).First(c => c.Metric == primary).Test;
                _o.WriteLine(string.Create(C, $"  {primary}: {a} − {b} = {test.Difference:+0.###;-0.###;0}, p = {test.PValue:0.####} ({test.Test})"));
            }

            // Token level: the positions the students were trained on, rendered as training renders them.
            var (examples, _) = TrainingExamples.Load(testSample, templater);
            var agreement = TeacherAgreement.Measure(engines[Teacher], (Distilled, engines[Distilled]), (LabelOnly, engines[LabelOnly]), examples.Select(e => (e.Ids, e.Targets)), cancel);
            _o.WriteLine(string.Create(C, $"  next-token agreement with the teacher, {agreement.Positions} trained positions of {examples.Count} test examples (teacher-forced; the teacher's next token is the label at {agreement.TeacherCorrectRate:P1}):"));
            foreach (var s in new[] { agreement.B, agreement.A })
                _o.WriteLine(string.Create(C, $"    agreement {s.Student,-11} {s.Rate.Value:P1} [{s.Rate.Low:P1}, {s.Rate.High:P1}]  (next token = label {s.CorrectRate:P1})"));
            _o.WriteLine(string.Create(C, $"    {Distilled} − {LabelOnly}: {agreement.Paired.Difference:+0.0%;-0.0%;0%}, {agreement.Paired.Test} p = {agreement.Paired.PValue:G3} ({agreement.Paired.AWins} positions only the distilled student agrees on, {agreement.Paired.BWins} only the label-only one)"));

            // Answer level: the whole generated answer is the teacher's.
            var sameA = answers[Distilled].Zip(answers[Teacher], (s, t) => s.Text.Trim() == t.Text.Trim()).ToList();
            var sameB = answers[LabelOnly].Zip(answers[Teacher], (s, t) => s.Text.Trim() == t.Text.Trim()).ToList();
            _o.WriteLine($"  answer agreement with the teacher (the same generated answer), {items.Count} test examples:");
            foreach (var (name, same) in new[] { (LabelOnly, sameB), (Distilled, sameA) })
            {
                var rate = Stats.Wilson(same.Count(x => x), same.Count);
                _o.WriteLine(string.Create(C, $"    answers {name,-11} {rate.Value:P1} [{rate.Low:P1}, {rate.High:P1}]"));
            }
            var answerTest = Stats.McNemar(sameA, sameB);
            _o.WriteLine(string.Create(C, $"    {Distilled} − {LabelOnly}: {answerTest.Difference:+0.0%;-0.0%;0%}, {answerTest.Test} p = {answerTest.PValue:G3}"));
            bool closer = agreement.A.Rate.Value > agreement.B.Rate.Value && agreement.Paired.PValue < 0.05;
            _o.WriteLine(closer
                ? "  verdict: the distilled student agrees with the teacher more often than the label-only student (p < 0.05)."
                : "  verdict: the distilled student does NOT agree with the teacher more often than the label-only student beyond noise.");
        }
        finally
        {
            foreach (var e in engines.Values) e.Dispose();
        }
        _o.WriteLine();
        _o.WriteLine($"  recipes: {teacherRecipe.File}, {labelsRecipe.File}, {distillRecipe.File}");
        _o.WriteLine($"  answers: {evalDir}");
        _o.WriteLine($"  again:   edgetune distill teacher {distillRecipe.File} && edgetune train {distillRecipe.File}");
    }
}
