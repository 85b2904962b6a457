using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Testing;

namespace EdgeTune.Data.Tests;

public class IngestTests
{
    private static List<string> Unique(int count, int seed) =>
        Rows.Clean(count, seed).Select((row, i) => Rows.Alpaca(JsonDocument.Parse(row).RootElement.GetProperty("instruction").GetString()!, $"Answer {seed}-{i}.")).ToList();

    private static List<string> Lines(string dir, string split) =>
        File.Exists(Path.Combine(dir, split + ".jsonl")) ? File.ReadAllLines(Path.Combine(dir, split + ".jsonl")).ToList() : [];

    [Fact]
    public void Ingest_dedups_refuses_test_matches_and_keeps_old_rows()
    {
        using var dir = new TempDir();
        var rows = Unique(500, 1);
        File.WriteAllLines(dir.File("d.jsonl"), rows);
        string data = dir.File("data");
        DatasetSplitter.Split([dir.File("d.jsonl")], data, new SplitOptions());
        var before = DatasetSplitter.Splits.ToDictionary(s => s, s => Lines(data, s));
        var testRow = JsonDocument.Parse(before["test"][0]).RootElement.GetProperty("messages");
        var trainRow = JsonDocument.Parse(before["train"][0]).RootElement.GetProperty("messages");

        var fresh = Unique(300, 2);
        var incoming = new List<string>(fresh)
        {
            JsonSerializer.Serialize(new { messages = testRow }),               // line 301: the test set coming back
            JsonSerializer.Serialize(new { messages = trainRow }),              // line 302: already in train
            "{not json",                                                          // line 303
        };
        File.WriteAllLines(dir.File("new.jsonl"), incoming);
        var result = DatasetIngester.Ingest(dir.File("new.jsonl"), data,
            new IngestOptions { Provenance = new Dictionary<string, string> { ["source"] = "field", ["device"] = "pi5-01" }, Now = new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero) });

        Assert.Contains(result.Findings, f => f.Kind == "test-match" && f.Line == 301);
        Assert.Contains(result.Findings, f => f.Kind == "malformed" && f.Line == 303);
        Assert.Equal(1, result.Duplicates);
        Assert.Equal(300, result.Added.Values.Sum() + result.HeldBack);
        Assert.Equal(0, result.Added["test"]);
        Assert.True(result.HeldBack > 0);

        // Old rows are untouched (appended after), the test split not at all; new rows carry provenance.
        foreach (var s in DatasetSplitter.Splits) Assert.Equal(before[s], Lines(data, s).Take(before[s].Count));
        Assert.Equal(before["test"], Lines(data, "test"));
        var added = JsonDocument.Parse(Lines(data, "train")[^1]).RootElement.GetProperty("provenance");
        Assert.Equal("pi5-01", added.GetProperty("device").GetString());
        Assert.Equal("2026-01-02T03:04:05Z", added.GetProperty("ingested").GetString());
        Assert.Equal(Lines(data, "train").Count, Manifest.Load(data)!.Counts["train"]);

        // A folder without a manifest is not a dataset to ingest into.
        Assert.Throws<EdgeTuneException>(() => DatasetIngester.Ingest(dir.File("new.jsonl"), dir.File("nowhere"), new IngestOptions()));
    }
}
