using System.Text.Json;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Testing;

namespace EdgeTune.Cli.Tests;

/// <summary>edgetune distill teacher|generate and train with [distill], run as a user would, on tiny GGUF models (llama.cpp runs the teacher).</summary>
public class DistillCommandTests
{
    private static readonly TinyLlamaConfig Student = new() { Embedding = 64, Layers = 1, Heads = 4, KvHeads = 2, FeedForward = 128, ChatMl = true, HeadScale = 20 };

    private static string Project(TempDir dir, string distill = "", TinyLlamaConfig? teacher = null)
    {
        TinyLlama.WriteGguf(dir.File("base.gguf"), Student);
        TinyLlama.WriteGguf(dir.File("teacher.gguf"), teacher ?? Student with { Layers = 2, Seed = 77 });
        using (var w = new StreamWriter(dir.File("train.jsonl")))
            for (int i = 0; i < 12; i++) w.WriteLine(JsonSerializer.Serialize(new { prompt = $"say {(i % 2 == 0 ? "hello" : "world")} please", response = i % 2 == 0 ? "hello" : "world" }));
        File.WriteAllText(dir.File("recipe.toml"), $"""
            [model]
            base = "base.gguf"
            [data]
            train = "train.jsonl"
            [adapter]
            method = "lora"
            rank = 4
            [train]
            max_steps = 2
            batch_size = 4
            device = "cpu"
            threads = 2
            [output]
            dir = "run"
            [distill]
            teacher = "teacher.gguf"
            {(distill.Contains("top_k", StringComparison.Ordinal) ? "" : "top_k = 8")}
            {distill}
            """);
        return dir.File("recipe.toml");
    }

    [Fact]
    public void Teacher_writes_the_top_k_file_reuses_it_train_uses_it_and_a_changed_train_file_is_refused_as_stale()
    {
        using var dir = new TempDir();
        string recipe = Project(dir, "loss = \"jsd\"\nbeta = 0.5\ntemperature = 2.0\nalpha = 0.7");
        var r = CliRunner.Run("distill", "teacher", recipe, "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using (var doc = JsonDocument.Parse(r.Stdout))
        {
            var root = doc.RootElement;
            Assert.Equal(12, root.GetProperty("examples").GetInt32());
            Assert.Equal(64, root.GetProperty("bytes_per_position").GetInt32());
            long positions = root.GetProperty("positions").GetInt64();
            Assert.True(positions >= 12, $"{positions} positions");
            Assert.True(root.GetProperty("bytes").GetInt64() > positions * 64);
        }
        string file = dir.File("run/teacher-topk.bin");
        var written = File.GetLastWriteTimeUtc(file);

        var again = CliRunner.Run("distill", "teacher", recipe);
        Assert.True(again.ExitCode == 0, again.Stderr);
        Assert.Contains("is up to date", again.Stderr, StringComparison.Ordinal);
        Assert.Equal(written, File.GetLastWriteTimeUtc(file));

        var train = CliRunner.Run("train", recipe, "--json");
        Assert.True(train.ExitCode == 0, train.Stderr);
        Assert.Contains("is up to date", train.Stderr, StringComparison.Ordinal);
        using (var doc = JsonDocument.Parse(train.Stdout))
            Assert.True(double.IsFinite(doc.RootElement.GetProperty("final_loss").GetDouble()));

        File.AppendAllText(dir.File("train.jsonl"), JsonSerializer.Serialize(new { prompt = "say hello again", response = "hello" }) + "\n");
        var stale = CliRunner.Run("train", recipe);
        Assert.Equal(1, stale.ExitCode);
        Assert.Single(stale.Stderr.Trim().Split("\n"), l => l.StartsWith("edgetune:", StringComparison.Ordinal));
        Assert.Contains($"{file}: stale teacher logits: the training file changed", stale.Stderr, StringComparison.Ordinal);

        var rebuilt = CliRunner.Run("distill", "teacher", recipe);
        Assert.True(rebuilt.ExitCode == 0, rebuilt.Stderr);
        Assert.Contains("13 examples", rebuilt.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void Train_runs_the_teacher_when_its_file_is_missing()
    {
        using var dir = new TempDir();
        var r = CliRunner.Run("train", Project(dir));
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("teacher logits:", r.Stderr, StringComparison.Ordinal);
        Assert.True(File.Exists(dir.File("run/teacher-topk.bin")));
    }

    [Fact]
    public void A_teacher_with_another_vocabulary_is_one_line_with_both_sizes_and_the_first_differing_token()
    {
        using var dir = new TempDir();
        string recipe = Project(dir, teacher: Student with { ExtraTokens = 3 });
        var r = CliRunner.Run("distill", "teacher", recipe);
        Assert.Equal(1, r.ExitCode);
        string line = Assert.Single(r.Stderr.Trim().Split('\n'));
        Assert.Contains(dir.File("teacher.gguf"), line, StringComparison.Ordinal);
        Assert.Contains($"({Student.VocabSize + 3} tokens)", line, StringComparison.Ordinal);
        Assert.Contains($"({Student.VocabSize} tokens)", line, StringComparison.Ordinal);
        Assert.Contains("first difference at id", line, StringComparison.Ordinal);
        Assert.False(File.Exists(dir.File("run/teacher-topk.bin")));
        // train checks it before building the student
        var t = CliRunner.Run("train", recipe);
        Assert.Equal(1, t.ExitCode);
        Assert.Contains("first difference at id", t.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Top_k_over_the_vocabulary_and_a_teacher_that_cannot_load_are_one_line_exit_1()
    {
        using var dir = new TempDir();
        string recipe = Project(dir, $"top_k = {Student.VocabSize + 1}");
        var big = CliRunner.Run("distill", "teacher", recipe);
        Assert.Equal(1, big.ExitCode);
        string line = Assert.Single(big.Stderr.Trim().Split('\n'));
        Assert.Contains("recipe.toml:", line, StringComparison.Ordinal);
        Assert.Contains("top_k", line, StringComparison.Ordinal);
        Assert.Contains($"larger than the vocabulary ({Student.VocabSize} tokens", line, StringComparison.Ordinal);

        using var dir2 = new TempDir();
        string broken = Project(dir2);
        File.WriteAllBytes(dir2.File("teacher.gguf"), [0x47, 0x47, 0x55, 0x46, 3, 0, 0, 0, 1]);
        var r = CliRunner.Run("distill", "teacher", broken);
        Assert.Equal(1, r.ExitCode);
        line = Assert.Single(r.Stderr.Trim().Split('\n'));
        Assert.Contains($"{dir2.File("teacher.gguf")}: the teacher cannot be loaded", line, StringComparison.Ordinal);
    }

    [Fact]
    public void A_damaged_teacher_file_is_refused_with_its_byte_offset()
    {
        using var dir = new TempDir();
        string recipe = Project(dir);
        Assert.Equal(0, CliRunner.Run("distill", "teacher", recipe).ExitCode);
        string file = dir.File("run/teacher-topk.bin");
        var bytes = File.ReadAllBytes(file);
        File.WriteAllBytes(file, bytes[..^5]);
        var r = CliRunner.Run("train", recipe);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains($"{file}: not a teacher-logits file at byte", r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Generate_writes_a_dataset_with_provenance_that_data_check_takes_and_never_a_frozen_test_split()
    {
        using var dir = new TempDir();
        string recipe = Project(dir);
        File.WriteAllText(dir.File("prompts.jsonl"), "{\"prompt\": \"say hello\"}\n\n{\"messages\": [{\"role\": \"user\", \"content\": \"say world\"}]}\n");
        var r = CliRunner.Run("distill", "generate", recipe, "--prompts", dir.File("prompts.jsonl"), "--out", dir.File("out/distilled.jsonl"), "--max-tokens", "4");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var lines = File.ReadAllLines(dir.File("out/distilled.jsonl"));
        Assert.Equal(2, lines.Length);
        using (var doc = JsonDocument.Parse(lines[0]))
        {
            var p = doc.RootElement.GetProperty("provenance");
            Assert.Equal(dir.File("teacher.gguf"), p.GetProperty("teacher").GetString());
            Assert.Equal(64, p.GetProperty("teacher_sha256").GetString()!.Length);
            Assert.Equal(0, p.GetProperty("sampling").GetProperty("temperature").GetDouble());
            Assert.EndsWith("prompts.jsonl:1", p.GetProperty("prompts").GetString(), StringComparison.Ordinal);
            Assert.Equal("say hello", doc.RootElement.GetProperty("prompt").GetString());
        }
        using (var doc = JsonDocument.Parse(lines[1]))
            Assert.EndsWith("prompts.jsonl:3", doc.RootElement.GetProperty("provenance").GetProperty("prompts").GetString(), StringComparison.Ordinal);
        var check = CliRunner.Run("data", "check", dir.File("out/distilled.jsonl"));
        Assert.True(check.ExitCode == 0, check.Stdout + check.Stderr);
        Assert.Contains("0 error(s)", check.Stdout + check.Stderr, StringComparison.Ordinal);

        // a split folder's test.jsonl is frozen by its manifest
        Directory.CreateDirectory(dir.File("split"));
        File.WriteAllText(dir.File("split/manifest.json"), "{}");
        var refused = CliRunner.Run("distill", "generate", recipe, "--prompts", dir.File("prompts.jsonl"), "--out", dir.File("split/test.jsonl"));
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains($"{dir.File("split/test.jsonl")}: is the frozen test split", Assert.Single(refused.Stderr.Trim().Split('\n')), StringComparison.Ordinal);
        Assert.False(File.Exists(dir.File("split/test.jsonl")));

        File.WriteAllText(dir.File("bad.jsonl"), "{\"prompt\": \"ok\"}\n{\"text\": 1}\n");
        var bad = CliRunner.Run("distill", "generate", recipe, "--prompts", dir.File("bad.jsonl"), "--out", dir.File("x.jsonl"));
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains($"{dir.File("bad.jsonl")}:2:", bad.Stderr, StringComparison.Ordinal);
        Assert.False(File.Exists(dir.File("x.jsonl")));
    }

    [Fact]
    public void Bench_train_times_each_method_with_and_without_the_distillation_head()
    {
        var r = CliRunner.Run("bench", "train", "--small", "--device", "cpu", "--threads", "2", "--method", "lora", "--steps", "1", "--distill-top-k", "8");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("| lora |", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("| lora + KD top 8 |", r.Stdout, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("distill")]
    [InlineData("distill", "teacher")]
    [InlineData("distill", "generate")]
    public void Help_explains_the_commands(params string[] command)
    {
        var r = CliRunner.Run([.. command, "--help"]);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("edgetune distill", r.Stdout, StringComparison.Ordinal);
    }
}
