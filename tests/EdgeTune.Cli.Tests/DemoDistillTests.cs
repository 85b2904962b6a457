using System.Globalization;
using System.Text.RegularExpressions;
using EdgeTune.Testing;

namespace EdgeTune.Cli.Tests;

public class DemoDistillTests
{
    [Fact]
    public void Demo_distill_reports_the_three_models_and_each_students_agreement_with_the_teacher()
    {
        using var dir = new TempDir();
        string run = Path.Combine(dir.Path, "distill");
        var r = CliRunner.Run("demo", "distill", "--fast", "--out", run, "--device", "cpu", "--threads", "2");
        Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
        string o = r.Stdout;
        // The task metric of all three, with intervals, and the paired tests between them.
        foreach (var model in new[] { "teacher", "label-only", "distilled" })
            Assert.Matches(@"\n  " + model + @" +json_valid \S+ \[\S+, \S+\]  field_accuracy \S+ \[\S+, \S+\]", o);
        Assert.Matches(@"field_accuracy: distilled − label-only = \S+, p = [\d.]+ \(paired-bootstrap\)", o);
        // Agreement with the teacher with Wilson intervals, for both students, and the paired test.
        double Rate(string student)
        {
            var m = Regex.Match(o, @"agreement " + student + @" +([\d.]+) % \[([\d.]+) %, ([\d.]+) %\]");
            Assert.True(m.Success, o);
            double rate = double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
            Assert.InRange(rate, double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture), double.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture));
            return rate;
        }
        double labels = Rate("label-only"), distilled = Rate("distilled");
        var paired = Regex.Match(o, @"distilled − label-only: \S+, mcnemar\S* p = (\S+) \((\d+) positions only the distilled student agrees on, (\d+) only the label-only one\)");
        Assert.True(paired.Success, o);
        // The issue's check: the distilled student agrees with the teacher more often, beyond noise.
        Assert.True(distilled > labels && double.Parse(paired.Groups[1].Value, CultureInfo.InvariantCulture) < 0.05, o);
        Assert.Contains("verdict: the distilled student agrees with the teacher more often than the label-only student (p < 0.05).", o, StringComparison.Ordinal);
        Assert.Matches(@"answers distilled +[\d.]+ % \[", o);
        foreach (var file in new[] { "runs/student-distilled/teacher-topk.bin", "runs/teacher/adapter.gguf", "runs/distill-eval/answers-distilled.jsonl", "models/teacher-base.gguf", "models/student-base.gguf" })
            Assert.True(File.Exists(Path.Combine(run, file)), $"{file} missing");
    }

    [Fact]
    public void Demo_distill_has_help() =>
        Assert.Contains("label", CliRunner.Run("demo", "distill", "--help").Stdout, StringComparison.Ordinal);
}
