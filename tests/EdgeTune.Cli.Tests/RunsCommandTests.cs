using System.Text.Json;
using EdgeTune.Testing;

namespace EdgeTune.Cli.Tests;

/// <summary>The run registry as a user meets it: train and eval record runs, list/show/compare them, promote the better.</summary>
public class RunsCommandTests
{
    [Fact]
    public void Runs_record_lineage_compare_with_a_paired_test_and_promote_only_a_better_challenger()
    {
        using var dir = new TempDir();
        string registry = dir.File("registry");
        string recipe = TinyTask.WriteRecipe(dir.Path, test: 10);
        string zero = dir.File("zero.gguf"), hello = dir.File("hello.gguf");
        TinyTask.WriteAdapter(zero, zero: true);
        TinyTask.WriteAdapter(hello, zero: false);

        string Eval(string adapter)
        {
            var r = CliRunner.Run("eval", recipe, "--adapter", adapter, "--threads", "2", "--registry", registry);
            Assert.True(r.ExitCode == 0, r.Stderr);
            var m = System.Text.RegularExpressions.Regex.Match(r.Stderr, @"recorded run (\S+) \(eval\)");
            Assert.True(m.Success, r.Stderr);
            return m.Groups[1].Value;
        }
        string weak = Eval(zero), strong = Eval(hello);

        var list = CliRunner.Run("runs", "list", "--registry", registry, "--json");
        Assert.True(list.ExitCode == 0, list.Stderr);
        using (var doc = JsonDocument.Parse(list.Stdout))
        {
            var runs = doc.RootElement.GetProperty("runs").EnumerateArray().ToList();
            Assert.Equal([weak, strong], runs.Select(r => r.GetProperty("id").GetString()));
            var first = runs[0];
            Assert.Equal(64, first.GetProperty("base_sha256").GetString()!.Length);
            Assert.True(first.GetProperty("data").TryGetProperty("test", out _));
            Assert.Equal(0.0, first.GetProperty("metrics").GetProperty("tuned.exact_match").GetProperty("value").GetDouble());
        }

        // The answers are kept with each run: a later eval overwriting the run folder's files changes nothing here.
        var compare = CliRunner.Run("runs", "compare", weak, strong, "--registry", registry, "--json");
        Assert.True(compare.ExitCode == 0, compare.Stderr);
        using (var doc = JsonDocument.Parse(compare.Stdout))
        {
            Assert.Equal(0, doc.RootElement.GetProperty("recipe_diff").GetArrayLength());
            var exact = doc.RootElement.GetProperty("paired").EnumerateArray().First(p => p.GetProperty("metric").GetString() == "exact_match");
            Assert.Equal(1.0, exact.GetProperty("difference").GetDouble(), 6);
            Assert.True(exact.GetProperty("p_value").GetDouble() < 0.01);
        }
        var text = CliRunner.Run("runs", "compare", weak, strong, "--registry", registry);
        Assert.Contains("tuned.exact_match", text.Stdout, StringComparison.Ordinal);
        Assert.Contains("significant", text.Stdout, StringComparison.Ordinal);

        // Promotion: the first run becomes champion; the better one beats it; the worse one is refused, unless forced.
        Assert.Equal(0, CliRunner.Run("runs", "promote", weak, "--registry", registry).ExitCode);
        var up = CliRunner.Run("runs", "promote", strong, "--registry", registry);
        Assert.True(up.ExitCode == 0, up.Stderr);
        Assert.Contains($"{strong} beats champion {weak}", up.Stdout, StringComparison.Ordinal);
        var down = CliRunner.Run("runs", "promote", weak, "--registry", registry);
        Assert.Equal(1, down.ExitCode);
        Assert.Single(down.Stderr.Trim().Split('\n'));
        Assert.Contains($"refused: {weak} does not beat champion {strong} beyond noise: exact_match 1 [1, 1] → 0 [0, 0], B − A -1, p = ", down.Stderr, StringComparison.Ordinal);
        var forced = CliRunner.Run("runs", "promote", weak, "--force", "--registry", registry, "--json");
        Assert.True(forced.ExitCode == 0, forced.Stderr);
        using (var doc = JsonDocument.Parse(forced.Stdout))
            Assert.Equal(Environment.UserName, doc.RootElement.GetProperty("decision").GetProperty("forced_by").GetString());
        Assert.Contains($"* {weak}", CliRunner.Run("runs", "list", "--registry", registry).Stdout, StringComparison.Ordinal);

        // Another test split: no paired test, and no promotion on intervals alone.
        File.AppendAllText(dir.File("test.jsonl"), "{\"messages\": [{\"role\": \"user\", \"content\": \"q9999 say it\"}, {\"role\": \"assistant\", \"content\": \"hello\"}]}\n");
        string other = Eval(hello);
        var across = CliRunner.Run("runs", "compare", weak, other, "--registry", registry);
        Assert.Contains("inputs that differ: test", across.Stdout, StringComparison.Ordinal);
        Assert.Contains("paired test: the runs were scored on different test splits", across.Stdout, StringComparison.Ordinal);
        Assert.Equal(1, CliRunner.Run("runs", "promote", other, "--registry", registry).ExitCode);

        var show = CliRunner.Run("runs", "show", strong[..19], "--registry", registry); // a unique start of the id
        Assert.True(show.ExitCode == 0, show.Stderr);
        Assert.Contains("artifact: answers-tuned.jsonl", show.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void Eval_of_a_trained_adapter_names_the_train_run_as_its_parent_and_the_recipe_diff_shows()
    {
        using var dir = new TempDir();
        string registry = dir.File("registry");
        string recipe = TinyTask.WriteRecipe(dir.Path, test: 4);
        var train = CliRunner.Run("train", recipe, "--device", "cpu", "--threads", "2", "--max-steps", "2", "--registry", registry);
        Assert.True(train.ExitCode == 0, train.Stderr);
        string trainId = System.Text.RegularExpressions.Regex.Match(train.Stderr, @"recorded run (\S+) \(train\)").Groups[1].Value;
        var eval = CliRunner.Run("eval", recipe, "--threads", "2", "--no-baselines", "--registry", registry);
        Assert.True(eval.ExitCode == 0, eval.Stderr);
        string evalId = System.Text.RegularExpressions.Regex.Match(eval.Stderr, @"recorded run (\S+) \(eval\)").Groups[1].Value;
        var show = CliRunner.Run("runs", "show", evalId, "--registry", registry);
        Assert.Contains($"parent:  {trainId}", show.Stdout, StringComparison.Ordinal);

        File.WriteAllText(recipe, File.ReadAllText(recipe).Replace("few_shot = 2", "few_shot = 3", StringComparison.Ordinal));
        var again = CliRunner.Run("train", recipe, "--device", "cpu", "--threads", "2", "--max-steps", "2", "--registry", registry);
        string secondId = System.Text.RegularExpressions.Regex.Match(again.Stderr, @"recorded run (\S+) \(train\)").Groups[1].Value;
        var compare = CliRunner.Run("runs", "compare", trainId, secondId, "--registry", registry);
        Assert.Contains("- few_shot = 2", compare.Stdout, StringComparison.Ordinal);
        Assert.Contains("+ few_shot = 3", compare.Stdout, StringComparison.Ordinal);
        Assert.Contains("paired test: both runs must be evals", compare.Stdout, StringComparison.Ordinal);
        // A train run promotes through its newest eval.
        Assert.Equal(0, CliRunner.Run("runs", "promote", trainId, "--registry", registry).ExitCode);
    }

    [Fact]
    public void A_damaged_registry_line_and_an_unknown_run_are_one_line_errors()
    {
        using var dir = new TempDir();
        string registry = dir.File("registry");
        Directory.CreateDirectory(registry);
        File.WriteAllText(Path.Combine(registry, "runs.jsonl"), "{\"id\": \"a\", \"kind\": \"eval\"}\nnot json\n{\"id\": \"b\", \"kind\": \"eval\"}\n");
        var r = CliRunner.Run("runs", "list", "--registry", registry);
        Assert.Equal(1, r.ExitCode);
        Assert.Single(r.Stderr.Trim().Split('\n'));
        Assert.Contains("runs.jsonl:2: not a run record", r.Stderr, StringComparison.Ordinal);

        // A torn last line (a write interrupted by a crash) is skipped and said.
        File.WriteAllText(Path.Combine(registry, "runs.jsonl"), "{\"id\": \"a\", \"kind\": \"eval\"}\n{\"id\": \"b\", \"ki");
        var torn = CliRunner.Run("runs", "list", "--registry", registry);
        Assert.True(torn.ExitCode == 0, torn.Stderr);
        Assert.Contains("incomplete last line", torn.Stderr, StringComparison.Ordinal);
        var missing = CliRunner.Run("runs", "show", "zzz", "--registry", registry);
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("no run 'zzz'", missing.Stderr, StringComparison.Ordinal);
        Assert.Equal(0, CliRunner.Run("runs", "--help").ExitCode);
    }
}
