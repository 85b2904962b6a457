using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Testing;

namespace EdgeTune.Data.Tests;

public class SplitTests
{
    /// <summary>Split of every written row, keyed by its answer (unique in these files).</summary>
    private static Dictionary<string, string> Read(string dir) =>
        DatasetSplitter.Splits.SelectMany(s => File.ReadLines(Path.Combine(dir, s + ".jsonl"))
            .Select(l => (JsonDocument.Parse(l).RootElement.GetProperty("messages")[1].GetProperty("content").GetString()!, s)))
            .ToDictionary(x => x.Item1, x => x.s);

    private static List<string> Unique(int count, int seed) =>
        Rows.Clean(count, seed).Select((row, i) => Rows.Alpaca(JsonDocument.Parse(row).RootElement.GetProperty("instruction").GetString()!, $"Answer {seed}-{i}.")).ToList();

    [Fact]
    public void Proportions_are_within_one_percent_on_ten_thousand_rows()
    {
        using var dir = new TempDir();
        File.WriteAllLines(dir.File("d.jsonl"), Unique(10_000, 1));
        var result = DatasetSplitter.Split([dir.File("d.jsonl")], dir.File("out"), new SplitOptions { Seed = 7 });
        Assert.Equal(10_000, result.Counts.Values.Sum());
        Assert.InRange(result.Counts["test"] / 10_000.0, 0.14, 0.16);
        Assert.InRange(result.Counts["eval"] / 10_000.0, 0.04, 0.06);
        var manifest = Manifest.Load(dir.File("out"))!;
        Assert.Equal(result.Counts["test"], manifest.Hashes["test"].Count);
        Assert.Equal(7UL, manifest.Seed);
    }

    [Fact]
    public void Appending_rows_never_moves_old_rows()
    {
        using var dir = new TempDir();
        string file = dir.File("d.jsonl");
        var rows = Unique(3000, 2);
        File.WriteAllLines(file, rows);
        DatasetSplitter.Split([file], dir.File("out"), new SplitOptions());
        var before = Read(dir.File("out"));

        File.AppendAllLines(file, Unique(1000, 3));
        DatasetSplitter.Split([file], dir.File("out"), new SplitOptions()); // again into the same folder
        DatasetSplitter.Split([file], dir.File("fresh"), new SplitOptions()); // and from scratch: the hash rule alone
        var again = Read(dir.File("out"));
        var fresh = Read(dir.File("fresh"));
        Assert.Equal(4000, again.Count);
        foreach (var (answer, split) in before)
        {
            Assert.Equal(split, again[answer]);
            Assert.Equal(split, fresh[answer]);
        }
    }

    [Fact]
    public void Near_duplicates_never_straddle_splits()
    {
        using var dir = new TempDir();
        var r = new Random(4);
        var rows = new List<string>();
        var pairs = new List<(string, string)>();
        for (int i = 0; i < 400; i++)
        {
            string q = Rows.Sentence(r, 30);
            string a1 = $"Reply {i} is here.", a2 = $"Reply {i} is here!";
            rows.Add(Rows.Alpaca(q, a1));
            rows.Add(Rows.Alpaca(q[..^1] + " " + Rows.Words(r, 1) + ".", a2)); // a paraphrase: one more word, other punctuation (Jaccard ≈ 0.85)
            pairs.Add((a1, a2));
        }
        File.WriteAllLines(dir.File("d.jsonl"), rows);
        DatasetSplitter.Split([dir.File("d.jsonl")], dir.File("out"), new SplitOptions { Test = 0.3, Eval = 0.1 });
        var split = Read(dir.File("out"));
        Assert.All(pairs, p => Assert.Equal(split[p.Item1], split[p.Item2]));
        Assert.Contains("test", split.Values);
    }

    [Fact]
    public void The_test_split_is_frozen_unless_forced()
    {
        using var dir = new TempDir();
        string file = dir.File("d.jsonl");
        var rows = Unique(400, 5);
        File.WriteAllLines(file, rows);
        string outDir = dir.File("out");
        DatasetSplitter.Split([file], outDir, new SplitOptions());
        var test = Read(outDir).Where(kv => kv.Value == "test").Select(kv => kv.Key).ToHashSet();

        var e = Assert.Throws<EdgeTuneException>(() => DatasetSplitter.Split([file], outDir, new SplitOptions { Seed = 9 }));
        Assert.Contains("--force", e.Message);

        // Removing a test row would change the test split: refused.
        File.WriteAllLines(file, rows.Where(row => !test.Any(row.Contains)));
        e = Assert.Throws<EdgeTuneException>(() => DatasetSplitter.Split([file], outDir, new SplitOptions()));
        Assert.Contains("frozen test split", e.Message);
        Assert.Equal(test, Read(outDir).Where(kv => kv.Value == "test").Select(kv => kv.Key).ToHashSet());

        DatasetSplitter.Split([file], outDir, new SplitOptions { Force = true });
        Assert.DoesNotContain("test", Read(outDir).Where(kv => test.Contains(kv.Key)).Select(kv => kv.Value));
    }

    [Fact]
    public void Exact_duplicates_are_written_once()
    {
        using var dir = new TempDir();
        var rows = Unique(50, 6);
        File.WriteAllLines(dir.File("d.jsonl"), rows.Concat(rows.Take(10)));
        var result = DatasetSplitter.Split([dir.File("d.jsonl")], dir.File("out"), new SplitOptions());
        Assert.Equal((50, 10), (result.Counts.Values.Sum(), result.Duplicates));
    }
}
