using System.Text.Json;
using EdgeTune.Testing;

namespace EdgeTune.Cli.Tests;

public class DataCommandTests
{
    private static string Row(string prompt, string completion) => JsonSerializer.Serialize(new { prompt, completion });

    private static List<string> Clean(int n) =>
        Enumerable.Range(0, n).Select(i => Row($"Question number {i} about topic {i * 7919 % 1000}?", $"Answer {i}.")).ToList();

    [Fact]
    public void Check_json_lists_findings_with_file_and_line_and_exits_1_on_errors()
    {
        using var dir = new TempDir();
        string file = dir.File("d.jsonl");
        var rows = Clean(3);
        rows.Add("{broken");
        rows.Add(Row("Empty?", " "));
        File.WriteAllLines(file, rows);
        var r = CliRunner.Run("data", "check", file, "--json");
        Assert.Equal(1, r.ExitCode);
        using var doc = JsonDocument.Parse(r.Stdout);
        var findings = doc.RootElement.GetProperty("findings").EnumerateArray().ToList();
        Assert.Contains(findings, f => f.GetProperty("kind").GetString() == "malformed" && f.GetProperty("line").GetInt64() == 4 && f.GetProperty("file").GetString() == file);
        Assert.Contains(findings, f => f.GetProperty("kind").GetString() == "empty-answer" && f.GetProperty("line").GetInt64() == 5 && f.GetProperty("severity").GetString() == "error");
        Assert.Equal(4, doc.RootElement.GetProperty("summary").GetProperty("examples").GetInt64());
    }

    [Fact]
    public void Check_with_warnings_only_exits_0()
    {
        using var dir = new TempDir();
        string file = dir.File("d.jsonl");
        File.WriteAllLines(file, Clean(20));
        var r = CliRunner.Run("data", "check", file);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("warning: size: 20 examples", r.Stdout);
    }

    [Fact]
    public void Check_with_model_reports_over_length_examples()
    {
        using var dir = new TempDir();
        string file = dir.File("d.jsonl");
        var rows = Clean(3);
        rows.Add(Row(string.Join(' ', Enumerable.Repeat("very long prompt", 50)), "Short."));
        File.WriteAllLines(file, rows);
        var r = CliRunner.Run("data", "check", file, "--model", RealTokenizers.Folder("qwen3"), "--max-tokens", "64");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains($"{file}:4: warning: over-length:", r.Stdout);
        Assert.DoesNotContain($"{file}:3: warning: over-length", r.Stdout);
    }

    [Fact]
    public void Check_csv_missing_column_is_a_one_line_error_naming_file_and_line()
    {
        using var dir = new TempDir();
        string file = dir.File("d.csv");
        File.WriteAllText(file, "question,answer\nq,a\n");
        var r = CliRunner.Run("data", "check", file);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains($"{file}:1: error: unreadable: header has no column 'prompt'", r.Stdout);
        Assert.Equal(0, CliRunner.Run("data", "check", file, "--map", "prompt=question,completion=answer").ExitCode);
    }

    [Fact]
    public void Split_writes_the_splits_and_refuses_to_change_a_frozen_test_split()
    {
        using var dir = new TempDir();
        string file = dir.File("d.jsonl");
        File.WriteAllLines(file, Clean(200));
        string outDir = dir.File("out");
        var r = CliRunner.Run("data", "split", file, "--out", outDir, "--seed", "3", "--json");
        Assert.Equal(0, r.ExitCode);
        using var doc = JsonDocument.Parse(r.Stdout);
        Assert.Equal(200, doc.RootElement.GetProperty("counts").EnumerateObject().Sum(p => p.Value.GetInt32()));
        Assert.All(new[] { "train.jsonl", "eval.jsonl", "test.jsonl", "manifest.json" }, f => Assert.True(File.Exists(Path.Combine(outDir, f))));

        var again = CliRunner.Run("data", "split", file, "--out", outDir, "--seed", "4");
        Assert.Equal(1, again.ExitCode);
        Assert.Contains("frozen test split", again.Stderr);
        Assert.Single(again.Stderr.Trim().Split('\n'));
    }

    [Fact]
    public void Split_stratify_keeps_each_label_in_proportion_and_reports_rows_without_it()
    {
        using var dir = new TempDir();
        string file = dir.File("d.jsonl");
        // 1,000 rows: label "spam" in 10%, "ham" in 80%, none in 10%.
        File.WriteAllLines(file, Enumerable.Range(0, 1000).Select(i => i % 10 == 9
            ? Row($"Message {i} on subject {i * 7919 % 1000}?", $"Reply {i}.")
            : JsonSerializer.Serialize(new { prompt = $"Message {i} on subject {i * 7919 % 1000}?", completion = $"Reply {i}.", label = i % 10 == 0 ? "spam" : "ham" })));
        string outDir = dir.File("out");
        var r = CliRunner.Run("data", "split", file, "--out", outDir, "--test", "0.2", "--eval", "0.1", "--stratify", "label", "--exact-proportions");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("label = spam: train 70, eval 10, test 20 (10.0% eval, 20.0% test)", r.Stdout);
        Assert.Contains("label = ham: train 560, eval 80, test 160", r.Stdout);
        Assert.Contains("label = (missing): train 70, eval 10, test 20", r.Stdout);
        var notes = r.Stderr.Trim().Split('\n');
        Assert.Equal(2, notes.Length);
        Assert.StartsWith("edgetune: note: --exact-proportions cuts at the quantiles of these rows: splitting a grown file from scratch", notes[0]);
        Assert.Equal("edgetune: note: 100 row(s) have no 'label' (not in the row, nor a key of a JSON answer): they form the stratum (missing)", notes[1]);

        using var manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "manifest.json")));
        Assert.Equal("label", manifest.RootElement.GetProperty("Stratify").GetString());
        Assert.Equal(20, manifest.RootElement.GetProperty("Strata").GetProperty("spam").GetProperty("Counts").GetProperty("test").GetInt32());

        var json = CliRunner.Run("data", "split", file, "--out", outDir, "--test", "0.2", "--eval", "0.1", "--stratify", "label", "--exact-proportions", "--json");
        Assert.Equal(0, json.ExitCode);
        using var doc = JsonDocument.Parse(json.Stdout);
        Assert.Equal(160, doc.RootElement.GetProperty("strata").GetProperty("ham").GetProperty("test").GetInt32());

        // Without --exact-proportions: the fixed thresholds, no caveat; the frozen folder keeps every row where it was.
        var plain = CliRunner.Run("data", "split", file, "--out", dir.File("plain"), "--test", "0.2", "--eval", "0.1", "--stratify", "label");
        Assert.Equal(0, plain.ExitCode);
        Assert.DoesNotContain("--exact-proportions", plain.Stderr);
        using var fixedManifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.File("plain"), "manifest.json")));
        Assert.Equal(0.2, fixedManifest.RootElement.GetProperty("Strata").GetProperty("spam").GetProperty("Test").GetDouble());
        Assert.False(fixedManifest.RootElement.GetProperty("ExactProportions").GetBoolean());
    }

    /// <summary>Every file of a folder (hidden siblings excluded), the ingest time stamps blanked: what a user sees of a split.</summary>
    private static Dictionary<string, string> State(string folder) =>
        Directory.GetFiles(folder).ToDictionary(f => Path.GetFileName(f), f => System.Text.RegularExpressions.Regex.Replace(File.ReadAllText(f), "\"ingested\":\"[^\"]*\"", "\"ingested\":\"\""));

    private static void CopyFolder(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
    }

    [Theory]
    [InlineData("split", "split.rows-written")]
    [InlineData("split", "folder.written")]
    [InlineData("split", "folder.swapped")]
    [InlineData("ingest", "ingest.rows-written")]
    [InlineData("ingest", "folder.written")]
    [InlineData("ingest", "folder.swapped")]
    public void A_crash_during_split_or_ingest_leaves_the_old_folder_or_the_new_one(string verb, string point)
    {
        using var dir = new TempDir();
        File.WriteAllLines(dir.File("d.jsonl"), Clean(300).Take(200));
        File.WriteAllLines(dir.File("grown.jsonl"), Clean(300));
        File.WriteAllLines(dir.File("new.jsonl"), Enumerable.Range(0, 60).Select(i => Row($"Field question {i} about {i * 31 % 97}?", $"Field answer {i}.")));
        string data = dir.File("data");
        Assert.Equal(0, CliRunner.Run("data", "split", dir.File("d.jsonl"), "--out", data).ExitCode);
        File.WriteAllText(Path.Combine(data, "CARD.md"), "# my notes\n"); // a user's file in the folder stays
        string[] args = verb == "split" ? ["data", "split", dir.File("grown.jsonl"), "--out", data] : ["data", "ingest", dir.File("new.jsonl"), "--into", data];
        var old = State(data);

        // The new state, made without a crash on a copy.
        string reference = dir.File("reference");
        CopyFolder(data, reference);
        Assert.Equal(0, CliRunner.Run([.. args.Select(a => a == data ? reference : a)]).ExitCode);
        var expected = State(reference).ToDictionary(kv => kv.Key, kv => kv.Value.Replace(reference, data, StringComparison.Ordinal));
        Assert.NotEqual(old, expected);

        var crash = CliRunner.RunProcess(new Dictionary<string, string> { ["EDGETUNE_CRASH_AT"] = point }, args);
        Assert.True(crash.ExitCode == 137, $"exit {crash.ExitCode}: {crash.Stderr}");
        Assert.Equal(point == "folder.swapped" ? expected : old, State(data));

        // The next run recovers (leftovers go) and completes.
        Assert.Equal(0, CliRunner.Run(args).ExitCode);
        if (point != "folder.swapped" || verb == "split") Assert.Equal(expected, State(data)); // (an ingest run twice records its source twice)
        Assert.Equal("# my notes\n", File.ReadAllText(Path.Combine(data, "CARD.md")));
        Assert.Empty(Directory.GetDirectories(dir.Path, ".data.*"));
    }

    [Fact]
    public void Missing_file_is_a_one_line_error()
    {
        var r = CliRunner.Run("data", "check", "/nonexistent/d.jsonl");
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("edgetune: /nonexistent/d.jsonl: no such file", r.Stderr.Trim());
    }
}

public class DataIngestStatsCommandTests
{
    private static List<string> Rows(int n, string tag) =>
        Enumerable.Range(0, n).Select(i => JsonSerializer.Serialize(new { prompt = $"{tag} question {i} on item {i * 7919 % 1000}?", completion = $"{tag} answer {i}.", label = i % 2 == 0 ? "yes" : "no" })).ToList();

    [Fact]
    public void Ingest_refuses_a_test_row_and_stats_writes_a_card()
    {
        using var dir = new TempDir();
        File.WriteAllLines(dir.File("d.jsonl"), Rows(200, "old"));
        string data = dir.File("data");
        Assert.Equal(0, CliRunner.Run("data", "split", dir.File("d.jsonl"), "--out", data).ExitCode);

        string testRow = File.ReadLines(Path.Combine(data, "test.jsonl")).First();
        File.WriteAllLines(dir.File("new.jsonl"), Rows(50, "new").Append(testRow));
        var r = CliRunner.Run("data", "ingest", dir.File("new.jsonl"), "--into", data, "--source", "field", "--json");
        Assert.Equal(1, r.ExitCode);
        using var doc = JsonDocument.Parse(r.Stdout);
        var finding = Assert.Single(doc.RootElement.GetProperty("findings").EnumerateArray());
        Assert.Equal(("test-match", 51L), (finding.GetProperty("kind").GetString(), finding.GetProperty("line").GetInt64()));

        string card = dir.File("CARD.md");
        var stats = CliRunner.Run("data", "stats", data, "--model", RealTokenizers.Folder("llama3"), "--card", card);
        Assert.Equal(0, stats.ExitCode);
        string text = File.ReadAllText(card);
        Assert.Contains("| train |", text);
        Assert.Contains("| field |", text);
        Assert.Contains("| unstated |", text);
        Assert.Contains("## Length in tokens (templated)", text);
        Assert.Contains("| yes |", text);
    }
}
