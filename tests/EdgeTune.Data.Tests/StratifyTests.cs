using System.Text.Json;
using EdgeTune.Testing;

namespace EdgeTune.Data.Tests;

public class StratifyTests
{
    /// <summary>Unique rows whose label is 70% "a", 20% "b", 10% "c" (by position); the answer names the row.</summary>
    private static List<string> Labelled(int count, int seed, Func<int, string?>? label = null)
    {
        var r = new Random(seed);
        label ??= i => (i % 10) switch { < 7 => "a", < 9 => "b", _ => "c" };
        return Enumerable.Range(0, count).Select(i => JsonSerializer.Serialize(new Dictionary<string, string?>
        {
            ["instruction"] = Rows.Sentence(r, 10), ["output"] = $"Answer {seed}-{i}.", ["label"] = label(i),
        }.Where(kv => kv.Value is not null).ToDictionary())).ToList();
    }

    /// <summary>Split of every written row, keyed by its answer.</summary>
    private static Dictionary<string, string> Read(string dir) =>
        DatasetSplitter.Splits.SelectMany(s => File.ReadLines(Path.Combine(dir, s + ".jsonl"))
            .Select(l => (JsonDocument.Parse(l).RootElement.GetProperty("messages").EnumerateArray().Last().GetProperty("content").GetString()!, s)))
            .ToDictionary(x => x.Item1, x => x.s);

    private static void AssertProportions(IReadOnlyDictionary<string, ManifestStratum> strata, double test = 0.15, double eval = 0.05)
    {
        foreach (var (name, stratum) in strata)
        {
            double all = stratum.Counts.Values.Sum();
            Assert.True(Math.Abs(stratum.Counts["test"] / all - test) <= 0.01, $"{name}: test {stratum.Counts["test"]} of {all}");
            Assert.True(Math.Abs(stratum.Counts["eval"] / all - eval) <= 0.01, $"{name}: eval {stratum.Counts["eval"]} of {all}");
        }
    }

    [Fact]
    public void Every_stratum_is_split_within_one_percent_on_ten_thousand_imbalanced_rows()
    {
        using var dir = new TempDir();
        File.WriteAllLines(dir.File("d.jsonl"), Labelled(10_000, 1));
        var result = DatasetSplitter.Split([dir.File("d.jsonl")], dir.File("out"), new SplitOptions { Seed = 3, Stratify = "label", ExactProportions = true });
        Assert.NotNull(result.Strata);
        Assert.Equal(new[] { "a", "b", "c" }, result.Strata.Keys);
        Assert.Equal((7000, 2000, 1000), (result.Strata["a"].Counts.Values.Sum(), result.Strata["b"].Counts.Values.Sum(), result.Strata["c"].Counts.Values.Sum()));
        AssertProportions(result.Strata);

        // The manifest records the field and each stratum's counts; every row was written once.
        var manifest = Manifest.Load(dir.File("out"))!;
        Assert.Equal("label", manifest.Stratify);
        Assert.Equal(result.Strata["c"].Counts, manifest.Strata!["c"].Counts);
        Assert.Equal(10_000, Read(dir.File("out")).Count);

        // By default the thresholds are the fixed fractions in every stratum: the proportions hold as sampling makes them.
        var plain = DatasetSplitter.Split([dir.File("d.jsonl")], dir.File("plain"), new SplitOptions { Seed = 3, Stratify = "label" });
        Assert.All(plain.Strata!.Values, s => Assert.Equal((0.15, 0.15 + 0.05), (s.Test, s.Eval)));
        AssertProportions(plain.Strata.Where(kv => kv.Key == "a").ToDictionary(), test: 0.15, eval: 0.05); // 7,000 rows: within a percent
        Assert.False(Manifest.Load(dir.File("plain"))!.ExactProportions);
    }

    [Fact]
    public void Appending_a_thousand_rows_moves_no_old_row_and_keeps_the_proportions()
    {
        using var dir = new TempDir();
        string file = dir.File("d.jsonl"), outDir = dir.File("out");
        File.WriteAllLines(file, Labelled(10_000, 2));
        DatasetSplitter.Split([file], outDir, new SplitOptions { Stratify = "label", ExactProportions = true });
        var before = Read(outDir);

        // Appended rows skew the other way (mostly "c"), so the new thresholds must differ from the old ones.
        File.AppendAllLines(file, Labelled(1_000, 3, i => i % 2 == 0 ? "c" : "b"));
        var result = DatasetSplitter.Split([file], outDir, new SplitOptions { Stratify = "label", ExactProportions = true });
        var after = Read(outDir);
        Assert.Equal(11_000, after.Count);
        Assert.All(before, kv => Assert.Equal(kv.Value, after[kv.Key]));
        AssertProportions(result.Strata!);
        Assert.Equal((7000, 2500, 1500), (result.Strata!["a"].Counts.Values.Sum(), result.Strata["b"].Counts.Values.Sum(), result.Strata["c"].Counts.Values.Sum()));
    }

    [Fact]
    public void Rows_without_the_field_form_the_missing_stratum_and_answers_are_looked_into()
    {
        using var dir = new TempDir();
        var r = new Random(5);
        // The field sits in the answer (a JSON object) in most rows, at the top level in some, nowhere in 10%.
        var rows = Enumerable.Range(0, 2000).Select(i => i % 10 == 9
            ? Rows.Alpaca(Rows.Sentence(r, 10), $"{{\"reply\": \"r{i}\"}}")
            : i % 10 == 8
                ? JsonSerializer.Serialize(new { instruction = Rows.Sentence(r, 10), output = $"Plain answer {i}.", intent = "billing" })
                : Rows.Alpaca(Rows.Sentence(r, 10), JsonSerializer.Serialize(new { intent = i % 3 == 0 ? "refund" : "other", reply = $"r{i}" }))).ToList();
        File.WriteAllLines(dir.File("d.jsonl"), rows);
        var result = DatasetSplitter.Split([dir.File("d.jsonl")], dir.File("out"), new SplitOptions { Stratify = "intent", ExactProportions = true });
        var strata = result.Strata!;
        Assert.Equal(200, strata[Strata.Missing].Counts.Values.Sum());
        Assert.Equal(200, strata["billing"].Counts.Values.Sum());
        Assert.Equal(2000, strata.Values.Sum(s => s.Counts.Values.Sum()));
        Assert.Equal(4, strata.Count);
        Assert.InRange(strata[Strata.Missing].Counts["test"], 29, 31);
    }

    [Fact]
    public void Dotted_paths_and_csv_columns_resolve()
    {
        using var dir = new TempDir();
        File.WriteAllLines(dir.File("d.jsonl"), [
            JsonSerializer.Serialize(new { prompt = "p1", completion = "c1", meta = new { lang = "de" } }),
            JsonSerializer.Serialize(new { prompt = "p2", completion = "c2", meta = new { lang = (string?)null } }),
            JsonSerializer.Serialize(new { prompt = "p3", completion = "{\"n\": 3}" }),
        ]);
        var read = new ReadOptions { Stratify = "meta.lang" };
        Assert.Equal(new[] { "de", Strata.Missing, Strata.Missing }, DatasetReader.Read(dir.File("d.jsonl"), read).Select(i => i.Example!.Stratum));
        Assert.Equal(new[] { Strata.Missing, Strata.Missing, "3" }, DatasetReader.Read(dir.File("d.jsonl"), read with { Stratify = "n" }).Select(i => i.Example!.Stratum));

        File.WriteAllText(dir.File("d.csv"), "prompt,completion,topic\nq1,a1,sales\nq2,a2,\n");
        Assert.Equal(new[] { "sales", Strata.Missing }, DatasetReader.Read(dir.File("d.csv"), new ReadOptions { Stratify = "topic" }).Select(i => i.Example!.Stratum));
    }

    [Fact]
    public void Another_stratify_field_on_a_frozen_folder_moves_no_test_row()
    {
        using var dir = new TempDir();
        string file = dir.File("d.jsonl"), outDir = dir.File("out");
        var r = new Random(6);
        File.WriteAllLines(file, Enumerable.Range(0, 3000).Select(i => JsonSerializer.Serialize(new
        {
            instruction = Rows.Sentence(r, 10), output = $"Answer {i}.", label = i % 4 == 0 ? "x" : "y", lang = i % 3 == 0 ? "en" : "fr",
        })));
        DatasetSplitter.Split([file], outDir, new SplitOptions { Stratify = "label" });
        var before = Read(outDir);

        var result = DatasetSplitter.Split([file], outDir, new SplitOptions { Stratify = "lang" });
        Assert.Equal(before, Read(outDir));
        Assert.Equal("lang", Manifest.Load(outDir)!.Stratify);
        Assert.Equal(new[] { "en", "fr" }, result.Strata!.Keys);
        DatasetSplitter.Split([file], outDir, new SplitOptions()); // and without --stratify
        Assert.Equal(before, Read(outDir));
    }

    [Fact]
    public void Ingest_into_a_stratified_folder_follows_the_stratum_thresholds()
    {
        using var dir = new TempDir();
        string outDir = dir.File("out");
        File.WriteAllLines(dir.File("d.jsonl"), Labelled(2000, 7));
        DatasetSplitter.Split([dir.File("d.jsonl")], outDir, new SplitOptions { Stratify = "label", ExactProportions = true });
        // As a folder of version 1 wrote it (quantile thresholds per stratum, none of the later keys): those cut-offs still place new rows.
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, Manifest.FileName)))!.AsObject();
        foreach (var key in new[] { "ExactProportions", "Cutoffs" }) Assert.True(json.Remove(key));
        json["Version"] = 1;
        File.WriteAllText(Path.Combine(outDir, Manifest.FileName), json.ToJsonString());
        var manifest = Manifest.Load(outDir)!;
        Assert.Contains(manifest.Strata!.Values, s => s.Test != 0.15); // recorded quantiles, not the fixed fraction
        File.WriteAllLines(dir.File("new.jsonl"), Labelled(500, 8));
        var result = DatasetIngester.Ingest(dir.File("new.jsonl"), outDir, new IngestOptions { GrowTest = true });
        Assert.Empty(result.Findings);
        var after = Manifest.Load(outDir)!;
        foreach (var (name, stratum) in manifest.Strata!)
            foreach (var s in DatasetSplitter.Splits)
                Assert.True(after.Strata![name].Counts[s] >= stratum.Counts[s]);
        Assert.Equal(2500, after.Strata!.Values.Sum(s => s.Counts.Values.Sum()));
        // Each new row is where its own stratum's thresholds put its draw.
        var split = Read(outDir);
        foreach (var line in File.ReadLines(dir.File("new.jsonl")))
        {
            var e = DatasetReader.FromJson(JsonDocument.Parse(line).RootElement, "new.jsonl", 1, FieldMapping.Default).Example!;
            var t = after.Strata[JsonDocument.Parse(line).RootElement.GetProperty("label").GetString()!];
            Assert.Equal(DatasetSplitter.Bucket(DatasetSplitter.Draw(e.Hash, after.Seed), (t.Test, t.Eval)), split[e.Answer]);
        }
    }
}
