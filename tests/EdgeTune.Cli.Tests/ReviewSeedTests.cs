using System.Text.Json;
using EdgeTune.Evaluation.Runners;
using EdgeTune.Testing;

namespace EdgeTune.Cli.Tests;

/// <summary>The blind review pack's seed: random unless given, printed, and kept in the key file only.</summary>
public class ReviewSeedTests
{
    private static string WriteAnswers(TempDir dir, string model) =>
        WriteLines(dir.File($"answers-{model}.jsonl"), Enumerable.Range(0, 40).Select(i => JsonSerializer.Serialize(new RunnerAnswer
        {
            Id = $"id{i:000}",
            Text = $"{model} answer {i}",
            Reference = new string('r', 5 + i % 7 * 20),
            Label = i % 3 == 0 ? "billing" : "shipping",
            Question = $"question {i}",
        })));

    private static string WriteLines(string path, IEnumerable<string> lines)
    {
        File.WriteAllLines(path, lines);
        return path;
    }

    private static (ulong Seed, string Html, string Csv, string Key, string Stdout) Export(TempDir dir, string name, string x, string y, params string[] extra)
    {
        string pack = Path.Combine(dir.Path, name);
        var r = CliRunner.Run(["review", "export", "--answers", x, "--answers", y, "--out", pack, "--size", "20", "--json", .. extra]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var printed = JsonDocument.Parse(r.Stdout);
        string key = File.ReadAllText(pack + "-key.json");
        using var keyDoc = JsonDocument.Parse(key);
        ulong seed = keyDoc.RootElement.GetProperty("Seed").GetUInt64();
        Assert.Equal(seed, printed.RootElement.GetProperty("seed").GetUInt64());
        return (seed, File.ReadAllText(Path.Combine(pack, "review.html")), File.ReadAllText(Path.Combine(pack, "review.csv")), key, r.Stdout);
    }

    [Fact]
    public void Without_a_seed_each_pack_is_drawn_afresh_and_only_the_key_holds_the_seed()
    {
        using var dir = new TempDir();
        string x = WriteAnswers(dir, "tuned"), y = WriteAnswers(dir, "base");
        var first = Export(dir, "one", x, y);
        var second = Export(dir, "two", x, y);

        Assert.NotEqual(first.Seed, second.Seed);
        Assert.NotEqual(first.Html, second.Html); // another sample or other sides: a 2^-20 chance of the same draw at worst
        foreach (var run in new[] { first, second })
        {
            Assert.DoesNotContain(run.Seed.ToString(System.Globalization.CultureInfo.InvariantCulture), run.Html);
            Assert.DoesNotContain(run.Seed.ToString(System.Globalization.CultureInfo.InvariantCulture), run.Csv);
        }

        // The seed from the key draws the same pack again.
        var again = Export(dir, "again", x, y, "--seed", first.Seed.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(first.Html, again.Html);
        Assert.Equal(first.Csv, again.Csv);

        // The text form prints the seed too.
        var text = CliRunner.Run("review", "export", "--answers", x, "--answers", y, "--out", Path.Combine(dir.Path, "text"), "--size", "5");
        Assert.Equal(0, text.ExitCode);
        Assert.Matches(@"seed:  \d+ \(kept in the key only; --seed \d+ draws this pack again\)", text.Stdout);
    }
}
