using EdgeTune.Core;
using EdgeTune.Core.IO;

namespace EdgeTune.Data;

public sealed record IngestOptions
{
    public ReadOptions Read { get; init; } = new();
    /// <summary>Provenance added to every row that does not carry the key itself (source, device, …).</summary>
    public IReadOnlyDictionary<string, string> Provenance { get; init; } = new Dictionary<string, string>();
    /// <summary>Add rows that the hash rule puts in test to the test split (off: they are held back, never trained on).</summary>
    public bool GrowTest { get; init; }
    public DateTimeOffset Now { get; init; } = DateTimeOffset.UtcNow;
}

public sealed record IngestResult(IReadOnlyDictionary<string, int> Added, int Duplicates, int HeldBack, IReadOnlyList<DataFinding> Findings);

/// <summary>
/// Adds new examples (field data, say) to a split folder: each row gets provenance (the time of ingest and
/// what <see cref="IngestOptions.Provenance"/> names); rows equal or near to one already in any split are
/// duplicates and skipped, except that a match with the frozen test split is refused with a finding (it
/// would leak the test set into training); the rest follow the folder's hash rule (seed and fractions from
/// its manifest). A row the rule sends to test joins it only with <see cref="IngestOptions.GrowTest"/>;
/// otherwise it is held back in heldback.jsonl, so the rule's promise (never trained on) holds either way.
/// The rule's cut-offs are the folder's: a stratum's recorded thresholds, an exact-proportions split's
/// quantiles, else the fixed fractions (<see cref="Manifest.CutoffsFor"/>), so folders made by older versions
/// place rows as they always did. The folder changes as a whole (<see cref="FolderSwap"/>): rows and manifest
/// together, or not at all.
/// </summary>
public static class DatasetIngester
{
    public static IngestResult Ingest(string newFile, string dir, IngestOptions options)
    {
        FolderSwap.Recover(dir);
        var manifest = Manifest.Load(dir) ?? throw new EdgeTuneException($"{dir}: no {Manifest.FileName}; make the split first (edgetune data split FILE --out {dir})");

        // What the folder holds: every row's hash and signature, by split.
        var index = new NearDuplicateIndex();
        var splitOf = new List<string>();
        var known = new Dictionary<ulong, string>();
        foreach (var name in DatasetSplitter.Splits)
        {
            string path = Path.Combine(dir, name + ".jsonl");
            if (!File.Exists(path)) continue;
            foreach (var item in DatasetReader.Read(path))
            {
                if (item.Example is not { } e) continue;
                known[e.Hash] = name;
                index.Add(Signature(e));
                splitOf.Add(name);
            }
        }

        var findings = new List<DataFinding>();
        var added = DatasetSplitter.Splits.ToDictionary(s => s, _ => 0);
        int duplicates = 0, heldBack = 0;
        FolderSwap.Replace(dir, [Manifest.FileName], aside =>
        {
            var writers = new Dictionary<string, StreamWriter>();
            StreamWriter Writer(string name) => writers.TryGetValue(name, out var w) ? w
                : writers[name] = new StreamWriter(Path.Combine(aside, name + ".jsonl"), append: true, new System.Text.UTF8Encoding(false));
            try
            {
                var read = manifest.Stratify is { } field ? options.Read with { Stratify = field } : options.Read;
                foreach (var item in DatasetReader.Read(newFile, read))
                {
                    if (item.Finding is { } f) { findings.Add(f); continue; }
                    var e = WithProvenance(item.Example!, options);
                    var (_, matches) = index.Add(Signature(e));
                    string? match = known.TryGetValue(e.Hash, out var exact) ? exact : matches.Count > 0 ? splitOf[matches[0]] : null;
                    bool testMatch = match == "test" || matches.Any(m => splitOf[m] == "test");
                    if (testMatch)
                    {
                        findings.Add(new("test-match", Severity.Error, e.File, e.Line, "equals or nearly equals an example of the frozen test split; refused (it would leak the test set)"));
                        splitOf.Add("test");
                        continue;
                    }
                    if (known.ContainsKey(e.Hash)) { duplicates++; splitOf.Add(match!); continue; }
                    string target = match ?? DatasetSplitter.Bucket(DatasetSplitter.Draw(e.Hash, manifest.Seed), manifest.CutoffsFor(e.Stratum));
                    splitOf.Add(target);
                    known[e.Hash] = target;
                    if (target == "test" && !options.GrowTest)
                    {
                        heldBack++;
                        Writer("heldback").WriteLine(DatasetSplitter.ChatJson(e));
                        continue;
                    }
                    Writer(target).WriteLine(DatasetSplitter.ChatJson(e));
                    added[target]++;
                    manifest.Hashes[target].Add(TextHash.Hex(e.Hash));
                    if (e.Stratum is { } name && manifest.Strata is { } strata)
                    {
                        if (!strata.TryGetValue(name, out var counted))
                            strata[name] = counted = new(DatasetSplitter.Splits.ToDictionary(x => x, _ => 0), manifest.Test, manifest.Test + manifest.Eval);
                        counted.Counts[target]++;
                    }
                }
            }
            finally
            {
                foreach (var w in writers.Values) w.Dispose();
            }
            CrashPoints.Pass("ingest.rows-written");
            foreach (var s in DatasetSplitter.Splits) manifest.Counts[s] = manifest.Hashes[s].Count;
            manifest.Sources.Add(new ManifestSource(Path.GetFullPath(newFile), added.Values.Sum()));
            manifest.Save(aside);
        });
        return new(added, duplicates, heldBack, findings);
    }

    private static ushort[] Signature(DatasetExample e) => NearDuplicateIndex.Signature(string.Join(' ', e.Messages.Select(m => m.Content)));

    private static DatasetExample WithProvenance(DatasetExample e, IngestOptions options)
    {
        var p = new Dictionary<string, string>(e.Provenance, StringComparer.Ordinal);
        foreach (var (k, v) in options.Provenance) p.TryAdd(k, v);
        p.TryAdd("ingested", options.Now.ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture));
        p.TryAdd("file", Path.GetFileName(e.File) + ":" + e.Line.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return e with { Provenance = p };
    }
}
