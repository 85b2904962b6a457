using System.Diagnostics;
using System.Globalization;
using EdgeTune.Data;
using EdgeTune.Data.Templating;
using EdgeTune.Evaluation;
using EdgeTune.Inference;
using EdgeTune.Inference.LlamaCpp;
using EdgeTune.Kernels.Cpu;
using EdgeTune.Recipes;
using EdgeTune.Testing;
using EdgeTune.Training.Batching;
using Xunit.Abstractions;

namespace EdgeTune.Training.Tests;

/// <summary>
/// Distillation end to end on the keyword task: a 4-layer teacher, briefly LoRA-tuned so that it is good but not
/// perfect, teaches a 2-layer student with the same vocabulary. Two students train with the same recipe, seed and
/// steps: one on the labels alone, one with [distill] (the teacher's top-k file made by llama.cpp from base + adapter).
/// On held-out examples, at every trained position (teacher-forced), the distilled student's greedy token must agree
/// with the teacher's more often than the label-only student's: agreement rates with Wilson 95% intervals and a
/// paired McNemar test on the same positions are printed. llama.cpp scores all three models.
/// </summary>
public class DistillationTests(ITestOutputHelper output)
{
    private static string Recipe(string dir, string baseName, string run, int steps, string distill = "") => WriteRecipe(dir, $"""
        [model]
        base = "{baseName}"
        [data]
        train = "train.jsonl"
        [adapter]
        method = "lora"
        rank = 8
        alpha = 16
        dropout = 0.0
        [train]
        learning_rate = 3e-3
        max_steps = {steps}
        batch_size = 8
        max_seq_len = 96
        warmup_steps = 3
        device = "cpu"
        checkpoint_every = 0
        [output]
        dir = "{run}"
        {distill}
        """, run);

    private static string WriteRecipe(string dir, string text, string name)
    {
        string file = Path.Combine(dir, name + ".toml");
        File.WriteAllText(file, text);
        return file;
    }

    [Fact]
    public void The_distilled_student_agrees_with_the_teacher_more_often_than_the_label_only_student()
    {
        var clock = Stopwatch.StartNew();
        using var dir = new TempDir();
        TinyTask.WriteModel(dir.Path, TinyTask.Model with { Layers = 2 });
        File.Move(dir.File("base.gguf"), dir.File("student.gguf"));
        TinyTask.WriteModel(dir.Path, TinyTask.Model with { Layers = 4, Seed = 5 });
        File.Move(dir.File("base.gguf"), dir.File("teacher.gguf"));
        TinyTask.WriteData(dir.File("train.jsonl"), 96, seed: 1);
        TinyTask.WriteData(dir.File("heldout.jsonl"), 40, seed: 2);
        using var backend = new CpuBackend(2);

        var teacher = new Trainer(EdgeTune.Recipes.Recipe.Load(Recipe(dir.Path, "teacher.gguf", "teacher-run", steps: 16)), backend).Run(resume: false);
        var labels = new Trainer(EdgeTune.Recipes.Recipe.Load(Recipe(dir.Path, "student.gguf", "labels", steps: 20)), backend).Run(resume: false);
        var distilled = new Trainer(EdgeTune.Recipes.Recipe.Load(Recipe(dir.Path, "student.gguf", "distilled", steps: 20, """
            [distill]
            teacher = "teacher.gguf"
            teacher_adapter = "teacher-run/adapter.gguf"
            loss = "forward_kl"
            alpha = 0.5
            top_k = 64
            """)), backend).Run(resume: false);
        // The stored top-1 is llama.cpp's greedy pick of the tuned teacher at each trained position.
        var stored = Distillation.TeacherLogits.Read(dir.File("distilled/teacher-topk.bin"));
        var (studentTemplate, studentTokenizer, _) = Templater.LoadModel(dir.File("student.gguf"));
        var (train, _) = TrainingExamples.Load(dir.File("train.jsonl"), new Templater(studentTemplate, studentTokenizer, new TemplateOptions { MaxTokens = 96 }));
        for (int i = 0; i < 2; i++)
        {
            var picks = TeacherAgreement.GreedyPicks(LlamaCpp.AllLogits(dir.File("teacher.gguf"), train[i].Ids, teacher.AdapterGguf), studentTokenizer.VocabularySize);
            int[] expected = [.. Enumerable.Range(0, picks.Length).Where(p => train[i].Targets[p] >= 0).Select(p => picks[p])];
            int[] top1 = [.. Enumerable.Range(0, expected.Length).Select(r => stored.Examples[i].Ids[r * stored.TopK])];
            Assert.Equal(expected, top1);
        }

        // Held-out positions as the students train on them.
        var (template, tokenizer, _) = Templater.LoadModel(dir.File("student.gguf"));
        var (heldOut, _) = TrainingExamples.Load(dir.File("heldout.jsonl"), new Templater(template, tokenizer, new TemplateOptions { MaxTokens = 96 }));
        using var teacherModel = Open(dir.File("teacher.gguf"), teacher.AdapterGguf!);
        using var labelsModel = Open(dir.File("student.gguf"), labels.AdapterGguf!);
        using var distilledModel = Open(dir.File("student.gguf"), distilled.AdapterGguf!);
        var a = TeacherAgreement.Measure(teacherModel, ("distilled", distilledModel), ("label-only", labelsModel), heldOut.Select(e => (e.Ids, e.Targets)));
        string report = string.Create(CultureInfo.InvariantCulture,
            $"{a.Positions} held-out positions; next token correct: teacher {a.TeacherCorrectRate:P1}, label-only {a.B.CorrectRate:P1}, distilled {a.A.CorrectRate:P1}; agreement with the teacher: label-only {a.B.Rate.Value:P1} [{a.B.Rate.Low:P1}, {a.B.Rate.High:P1}], " +
            $"distilled {a.A.Rate.Value:P1} [{a.A.Rate.Low:P1}, {a.A.Rate.High:P1}]; {a.Paired.Test} p = {a.Paired.PValue:G3} ({a.Paired.AWins} distilled-only, {a.Paired.BWins} label-only); {clock.Elapsed.TotalSeconds:F0} s");
        output.WriteLine(report);
        Assert.True(a.A.Rate.Value > a.B.Rate.Value && a.Paired.PValue < 0.05, report);
    }

    // One llama.cpp model per scored model (opening one per example would dominate the test's time).
    private static IInferenceModel Open(string path, string adapter) =>
        LlamaCppRuntime.Default.Open(new ModelOptions { Path = path, Adapters = [adapter], ContextSize = 128, Threads = 2, Exact = true });
}
