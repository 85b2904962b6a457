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

    /// <summary>Unique rows labelled 70% "a", 20% "b", 10% "c", with every tenth row followed by a paraphrase of itself (a near-duplicate).</summary>
    private static List<string> WithParaphrases(int count, int seed)
    {
        var r = new Random(seed);
        var rows = new List<string>();
        while (rows.Count < count)
        {
            int i = rows.Count;
            string q = Rows.Sentence(r, 30), label = (i % 10) switch { < 7 => "a", < 9 => "b", _ => "c" };
            rows.Add(JsonSerializer.Serialize(new { instruction = q, output = $"Reply {seed}-{i} is here.", label }));
            if (i % 10 == 0) rows.Add(JsonSerializer.Serialize(new { instruction = q[..^1] + " " + Rows.Words(r, 1) + ".", output = $"Reply {seed}-{i} is here!", label }));
        }
        return rows;
    }

    [Fact]
    public void A_from_scratch_split_of_a_grown_file_into_a_new_folder_moves_no_row()
    {
        using var dir = new TempDir();
        string file = dir.File("d.jsonl");
        File.WriteAllLines(file, WithParaphrases(9_000, 11));
        foreach (var stratify in new[] { null, "label" })
        {
            string tag = stratify ?? "plain";
            DatasetSplitter.Split([file], dir.File($"{tag}-before"), new SplitOptions { Stratify = stratify });
            var before = Read(dir.File($"{tag}-before"));
            Assert.Equal(9_000, before.Count);
            Assert.Contains("test", before.Values);

            string grown = dir.File($"{tag}-grown.jsonl");
            File.WriteAllLines(grown, File.ReadLines(file).Concat(WithParaphrases(2_000, 12))); // the file grows (other labels' mix, paraphrases within the new rows)
            DatasetSplitter.Split([grown], dir.File($"{tag}-after"), new SplitOptions { Stratify = stratify });
            var after = Read(dir.File($"{tag}-after"));
            Assert.Equal(11_000, after.Count);
            var moved = before.Where(kv => after[kv.Key] != kv.Value).Select(kv => $"{kv.Key}: {kv.Value} → {after[kv.Key]}").ToList();
            Assert.True(moved.Count == 0, $"{tag}: {moved.Count} of 9,000 rows moved: {string.Join("; ", moved.Take(5))}");
        }
    }

    [Fact]
    public void A_new_paraphrase_of_an_old_row_never_moves_a_row_out_of_test()
    {
        using var dir = new TempDir();
        var r = new Random(13);
        var old = new List<string>();
        var paraphrases = new List<string>();
        for (int i = 0; i < 1000; i++)
        {
            string q = Rows.Sentence(r, 30);
            old.Add(Rows.Alpaca(q, $"Reply {i} is here."));
            paraphrases.Add(Rows.Alpaca(q[..^1] + " " + Rows.Words(r, 1) + ".", $"Reply {i} is here!"));
        }
        File.WriteAllLines(dir.File("d.jsonl"), old);
        DatasetSplitter.Split([dir.File("d.jsonl")], dir.File("before"), new SplitOptions());
        var before = Read(dir.File("before"));

        // Each old row gets a near-duplicate: clusters form; a cluster may only move toward test (train → eval → test).
        File.WriteAllLines(dir.File("grown.jsonl"), old.Concat(paraphrases));
        DatasetSplitter.Split([dir.File("grown.jsonl")], dir.File("after"), new SplitOptions());
        var after = Read(dir.File("after"));
        int Rank(string split) => Array.IndexOf(DatasetSplitter.Splits, split); // train 0, eval 1, test 2
        var backwards = before.Where(kv => Rank(after[kv.Key]) < Rank(kv.Value)).ToList();
        Assert.True(backwards.Count == 0, $"{backwards.Count} rows moved away from test, e.g. {string.Join("; ", backwards.Take(3).Select(kv => $"{kv.Key}: {kv.Value} → {after[kv.Key]}"))}");
        Assert.Equal(before.Count(kv => kv.Value == "test"), before.Count(kv => kv.Value == "test" && after[kv.Key] == "test"));
    }

    [Fact]
    public void Exact_proportions_cut_at_the_quantiles_and_the_manifest_keeps_the_cutoffs()
    {
        using var dir = new TempDir();
        File.WriteAllLines(dir.File("d.jsonl"), Unique(1000, 14));
        var result = DatasetSplitter.Split([dir.File("d.jsonl")], dir.File("out"), new SplitOptions { ExactProportions = true });
        Assert.Equal((150, 50, 800), (result.Counts["test"], result.Counts["eval"], result.Counts["train"]));
        var manifest = Manifest.Load(dir.File("out"))!;
        Assert.True(manifest.ExactProportions);
        Assert.NotNull(manifest.Cutoffs);
        Assert.NotEqual(0.15, manifest.Cutoffs.Test);

        // Ingest places new rows by the recorded cut-offs, not by the plain fractions.
        var fresh = Unique(400, 15);
        File.WriteAllLines(dir.File("new.jsonl"), fresh);
        DatasetIngester.Ingest(dir.File("new.jsonl"), dir.File("out"), new IngestOptions { GrowTest = true });
        var split = Read(dir.File("out"));
        foreach (var line in fresh)
        {
            var e = DatasetReader.FromJson(JsonDocument.Parse(line).RootElement, "new.jsonl", 1, FieldMapping.Default).Example!;
            Assert.Equal(DatasetSplitter.Bucket(DatasetSplitter.Draw(e.Hash, 0), (manifest.Cutoffs.Test, manifest.Cutoffs.Eval)), split[e.Answer]);
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
