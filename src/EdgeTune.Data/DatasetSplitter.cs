using System.Text.Encodings.Web;
using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Core.IO;

namespace EdgeTune.Data;

public sealed record SplitOptions
{
    public double Test { get; init; } = 0.15;
    public double Eval { get; init; } = 0.05;
    public ulong Seed { get; init; }
    /// <summary>Recompute from scratch even when that changes a frozen test split.</summary>
    public bool Force { get; init; }
    /// <summary>Keep the fractions within each value of this field (see <see cref="Data.Strata"/>); null: one stratum.</summary>
    public string? Stratify { get; init; }
    /// <summary>
    /// Cut each stratum (the whole file without <see cref="Stratify"/>) at the quantiles of its rows' draws, so the
    /// fractions hold exactly; the price: a from-scratch split of a grown file can move rows (see <see cref="DatasetSplitter"/>).
    /// </summary>
    public bool ExactProportions { get; init; }
    public ReadOptions Read { get; init; } = new();
}

public sealed record SplitResult(IReadOnlyDictionary<string, int> Counts, int Duplicates, int Kept, IReadOnlyList<DataFinding> Findings)
{
    /// <summary>With --stratify: rows per split in each stratum (<see cref="Data.Strata.Missing"/> for rows without the field).</summary>
    public IReadOnlyDictionary<string, ManifestStratum>? Strata { get; init; }
}

/// <summary>
/// The leak-proof split. Each example draws a number in [0, 1) from the seed and a hash of its normalised
/// text, never from its position or the other rows, and the draw is compared with fixed thresholds: below
/// Test it is test, below Test + Eval eval, else train. Near-duplicates (MinHash) form clusters that share one
/// split: the strictest any member would get alone (the smallest draw of the cluster), so a paraphrase cannot
/// sit in train while its twin is in test. Hence the guarantee: splitting a grown file from scratch, into a new
/// folder, moves no earlier row; only a new row that is a near-duplicate of old ones can move them, and then
/// only toward test (train → eval → test), never out of test.
/// The output folder's manifest freezes earlier assignments too: a row seen before keeps its split, a new row
/// near one seen before joins it, and a run that would change the test split (other fractions or seed, or
/// test rows gone from the input) is refused unless forced.
/// With <see cref="SplitOptions.Stratify"/> the rule is the same and the manifest counts each stratum; the
/// proportions hold per stratum as the law of large numbers makes them. <see cref="SplitOptions.ExactProportions"/>
/// instead cuts each stratum at the quantiles of its draws, so its fractions are exact; those thresholds depend
/// on the rows present, which is why a from-scratch split of a grown file can move rows across the cut, and why
/// splitting again into the same folder (whose manifest keeps earlier rows where they were) is the safe way then.
/// The folder changes as a whole (<see cref="FolderSwap"/>): a crash leaves the old split or the new one.
/// Two streaming passes: hashes and signatures first, then the rows are written; texts are never all in memory.
/// </summary>
public static class DatasetSplitter
{
    public static readonly string[] Splits = ["train", "eval", "test"];

    public static SplitResult Split(IReadOnlyList<string> files, string outDir, SplitOptions options)
    {
        if (options.Test < 0 || options.Eval < 0 || options.Test + options.Eval >= 1)
            throw new EdgeTuneException($"--test {options.Test} and --eval {options.Eval}: each must be at least 0 and together below 1");
        FolderSwap.Recover(outDir);
        var previous = options.Force ? null : Manifest.Load(outDir);
        var read = options.Stratify is null ? options.Read : options.Read with { Stratify = options.Stratify };
        if (previous is not null && (previous.Seed != options.Seed || previous.Test != options.Test || previous.Eval != options.Eval))
            throw new EdgeTuneException($"{Path.Combine(outDir, Manifest.FileName)}: the split was made with --seed {previous.Seed} --test {previous.Test} --eval {previous.Eval}; other values would change the frozen test split (use those, or --force)");

        // Pass 1: identities and near-duplicate clusters.
        var findings = new List<DataFinding>();
        var hashes = new List<ulong>();
        var seen = new HashSet<ulong>();
        var index = new NearDuplicateIndex();
        var parent = new List<int>();
        var stratumOf = new List<int>();
        var strata = new List<string>();
        var strataIds = new Dictionary<string, int>(StringComparer.Ordinal);
        int duplicates = 0;
        foreach (var item in DatasetReader.ReadAll(files, read))
        {
            if (item.Finding is { } f) { findings.Add(f); continue; }
            ulong h = item.Example!.Hash;
            if (!seen.Add(h)) { duplicates++; continue; }
            var (id, matches) = index.Add(NearDuplicateIndex.Signature(string.Join(' ', item.Example.Messages.Select(m => m.Content))));
            hashes.Add(h);
            parent.Add(id);
            string stratum = item.Example.Stratum ?? Data.Strata.Missing;
            if (!strataIds.TryGetValue(stratum, out int sid)) { sid = strata.Count; strataIds[stratum] = sid; strata.Add(stratum); }
            stratumOf.Add(sid);
            foreach (int m in matches) Union(parent, id, m);
        }

        var (split, thresholds) = Assign(hashes, parent, stratumOf, strata.Count, previous, options);
        if (previous is not null)
        {
            int lost = previous.Hashes["test"].Count(h => !seen.Contains(Convert.ToUInt64(h, 16)));
            if (lost > 0)
                throw new EdgeTuneException($"{Path.Combine(outDir, Manifest.FileName)}: {lost} examples of the frozen test split are not in the input; splitting again would change the test split (add them back, or --force)");
        }

        var byName = Splits.ToDictionary(s => s, s => hashes.Where(h => split[h] == s).Select(TextHash.Hex).ToList());
        Dictionary<string, ManifestStratum>? perStratum = null;
        if (options.Stratify is not null)
        {
            perStratum = new(StringComparer.Ordinal);
            for (int s = 0; s < strata.Count; s++)
                perStratum[strata[s]] = new(Splits.ToDictionary(x => x, _ => 0), thresholds[s].Test, thresholds[s].Eval);
            for (int i = 0; i < hashes.Count; i++) perStratum[strata[stratumOf[i]]].Counts[split[hashes[i]]]++;
            perStratum = perStratum.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        }
        var sources = new Dictionary<string, int>(StringComparer.Ordinal);
        string[] rewritten = [.. Splits.Select(s => s + ".jsonl"), Manifest.FileName];
        FolderSwap.Replace(outDir, rewritten, aside =>
        {
            // Pass 2: write each kept row once, into its split.
            var writers = Splits.ToDictionary(s => s, s => new StreamWriter(Path.Combine(aside, s + ".jsonl"), false, new System.Text.UTF8Encoding(false)));
            var written = new HashSet<ulong>();
            try
            {
                foreach (var item in DatasetReader.ReadAll(files, read))
                {
                    if (item.Example is not { } e || !written.Add(e.Hash)) continue;
                    writers[split[e.Hash]].WriteLine(ChatJson(e));
                    sources[e.File] = sources.GetValueOrDefault(e.File) + 1;
                }
            }
            finally
            {
                foreach (var w in writers.Values) w.Dispose();
            }
            CrashPoints.Pass("split.rows-written");
            var manifest = new Manifest(options.Seed, options.Test, options.Eval, byName.ToDictionary(kv => kv.Key, kv => kv.Value.Count),
                files.Select(f => new ManifestSource(Path.GetFullPath(f), sources.GetValueOrDefault(f))).ToList(), duplicates, byName)
            {
                Stratify = options.Stratify, Strata = perStratum, ExactProportions = options.ExactProportions,
                Cutoffs = options.ExactProportions && options.Stratify is null ? new ManifestCutoffs(thresholds[0].Test, thresholds[0].Eval) : null,
            };
            manifest.Save(aside);
        });
        return new(byName.ToDictionary(kv => kv.Key, kv => kv.Value.Count), duplicates, hashes.Count, findings) { Strata = perStratum };
    }

    /// <summary>
    /// Split of every hash: frozen ones keep theirs; a cluster with frozen members takes the strictest of them;
    /// others compare the cluster's draw (its smallest member draw) with their stratum's thresholds: the fixed
    /// fractions, or with exact proportions the stratum's quantiles. The thresholds per stratum come back too.
    /// </summary>
    private static (Dictionary<ulong, string> Split, (double Test, double Eval)[] Thresholds) Assign(
        List<ulong> hashes, List<int> parent, List<int> stratumOf, int strata, Manifest? previous, SplitOptions options)
    {
        var old = new Dictionary<ulong, string>();
        if (previous is not null)
            foreach (var (name, list) in previous.Hashes)
                foreach (var hex in list) old[Convert.ToUInt64(hex, 16)] = name;

        var clusters = Enumerable.Range(0, hashes.Count).GroupBy(i => Find(parent, i)).Select(g => g.ToList()).ToList();
        // The strictest member decides: growing a cluster can only lower its draw, so a row can move toward test, never out of it.
        var representative = clusters.Select(c => c.MinBy(i => Draw(hashes[i], options.Seed))).ToList();
        var fixedCut = (options.Test, options.Test + options.Eval);
        var thresholds = Enumerable.Repeat(fixedCut, Math.Max(strata, 1)).ToArray();
        if (options.ExactProportions)
        {
            // Per stratum, the draws of its clusters in order, and the thresholds that cut them (weighted by
            // cluster size) closest to the fractions. Every cluster counts, frozen ones too, so new rows fill
            // what the stratum as a whole needs.
            var draws = Enumerable.Range(0, strata).Select(_ => new List<(double U, int Size)>()).ToArray();
            for (int c = 0; c < clusters.Count; c++)
                draws[stratumOf[representative[c]]].Add((Draw(hashes[representative[c]], options.Seed), clusters[c].Count));
            for (int s = 0; s < strata; s++) thresholds[s] = Thresholds(draws[s], options.Test, options.Eval);
        }

        var result = new Dictionary<ulong, string>(hashes.Count);
        for (int c = 0; c < clusters.Count; c++)
        {
            var members = clusters[c].Select(i => hashes[i]).ToList();
            var frozen = members.Where(old.ContainsKey).Select(h => old[h]).ToList();
            int rep = representative[c];
            // Test wins over eval over train: a new row near a test row must not train the model on the test answer.
            string shared = frozen.Count > 0 ? Splits.Reverse().First(frozen.Contains)
                : Bucket(Draw(hashes[rep], options.Seed), thresholds[stratumOf[rep]]);
            foreach (var h in members) result[h] = old.GetValueOrDefault(h, shared);
        }
        return (result, thresholds);
    }

    /// <summary>
    /// Thresholds of one stratum: a draw below Test is test, below Eval eval, else train. Each is the midpoint
    /// between the two draws where the cumulative rows come closest to the fraction (0 or 1 at the ends).
    /// </summary>
    internal static (double Test, double Eval) Thresholds(List<(double U, int Size)> draws, double test, double eval)
    {
        draws.Sort((a, b) => a.U.CompareTo(b.U));
        long total = draws.Sum(d => (long)d.Size);
        double Cut(double fraction)
        {
            double target = fraction * total;
            int best = 0;
            long cumulative = 0;
            double bestGap = target;
            for (int k = 1; k <= draws.Count; k++)
            {
                cumulative += draws[k - 1].Size;
                double gap = Math.Abs(cumulative - target);
                if (gap < bestGap) { bestGap = gap; best = k; }
            }
            return best == 0 ? 0 : best == draws.Count ? 1 : (draws[best - 1].U + draws[best].U) / 2;
        }
        double t = Cut(test);
        return (t, Math.Max(t, Cut(test + eval)));
    }

    /// <summary>The uniform number in [0, 1) that the hash rule draws for an example from (seed, hash).</summary>
    public static double Draw(ulong hash, ulong seed) => (TextHash.Mix(hash ^ TextHash.Mix(seed)) >> 11) * (1.0 / (1UL << 53));

    /// <summary>The split of a draw against a stratum's thresholds.</summary>
    public static string Bucket(double draw, (double Test, double Eval) thresholds) =>
        draw < thresholds.Test ? "test" : draw < thresholds.Eval ? "eval" : "train";

    /// <summary>The hash rule: a uniform number from (seed, hash), compared with the fixed fractions.</summary>
    public static string Bucket(ulong hash, SplitOptions options) => Bucket(Draw(hash, options.Seed), (options.Test, options.Test + options.Eval));

    /// <summary>One row in chat format, the format every later stage reads.</summary>
    public static string ChatJson(DatasetExample e)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteStartArray("messages");
            foreach (var m in e.Messages)
            {
                w.WriteStartObject();
                w.WriteString("role", m.Role);
                w.WriteString("content", m.Content);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            if (e.Label is not null) w.WriteString("label", e.Label);
            if (e.Provenance.Count > 0)
            {
                w.WriteStartObject("provenance");
                foreach (var (k, v) in e.Provenance) w.WriteString(k, v);
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
    }

    private static int Find(List<int> parent, int i)
    {
        while (parent[i] != i) { parent[i] = parent[parent[i]]; i = parent[i]; }
        return i;
    }

    private static void Union(List<int> parent, int a, int b) => parent[Find(parent, a)] = Find(parent, b);
}

public sealed record ManifestSource(string File, int Examples);

/// <summary>One stratum of a stratified split: its rows per split, and the draw thresholds (below Test: test; below Eval: eval).</summary>
public sealed record ManifestStratum(Dictionary<string, int> Counts, double Test, double Eval);

/// <summary>Draw thresholds of a split: below Test, test; below Eval, eval; else train.</summary>
public sealed record ManifestCutoffs(double Test, double Eval);

/// <summary>manifest.json of a split folder: how it was made and which example hashes each split holds.</summary>
public sealed record Manifest(ulong Seed, double Test, double Eval, Dictionary<string, int> Counts, List<ManifestSource> Sources, int Duplicates, Dictionary<string, List<string>> Hashes)
{
    public const string FileName = "manifest.json";
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    /// <summary>2: a cluster's draw is its smallest member draw, thresholds are fixed unless <see cref="ExactProportions"/> (1: the smallest hash's draw, quantile thresholds with --stratify).</summary>
    public int Version { get; init; } = 2;
    /// <summary>Whether the latest split cut at quantiles (--exact-proportions) rather than the fixed fractions.</summary>
    public bool ExactProportions { get; init; }
    /// <summary>The quantile thresholds of an exact-proportions split without --stratify (ingest places new rows by them); null otherwise.</summary>
    public ManifestCutoffs? Cutoffs { get; init; }
    /// <summary>The --stratify field of the latest split, if any.</summary>
    public string? Stratify { get; init; }
    /// <summary>Per stratum (with --stratify): counts per split and thresholds; ingest places new rows by them.</summary>
    public Dictionary<string, ManifestStratum>? Strata { get; set; }

    /// <summary>Writes manifest.json into <paramref name="dir"/> (a folder being built aside: see <see cref="FolderSwap"/>).</summary>
    public void Save(string dir) => File.WriteAllText(Path.Combine(dir, FileName), JsonSerializer.Serialize(this, Json));

    /// <summary>The cut-offs for a new row of <paramref name="stratum"/>: its stratum's recorded ones, else the folder's, else the fixed fractions.</summary>
    public (double Test, double Eval) CutoffsFor(string? stratum) =>
        stratum is not null && Strata?.GetValueOrDefault(stratum) is { } s ? (s.Test, s.Eval)
        : Cutoffs is { } c ? (c.Test, c.Eval)
        : (Test, Test + Eval);

    public static Manifest? Load(string dir)
    {
        string path = Path.Combine(dir, FileName);
        if (!File.Exists(path)) return null;
        try
        {
            var m = JsonSerializer.Deserialize<Manifest>(File.ReadAllText(path));
            if (m?.Hashes is null || !DatasetSplitter.Splits.All(m.Hashes.ContainsKey)) throw new FileFormatException(path, "key 'hashes'", "missing or without train/eval/test");
            return m;
        }
        catch (JsonException e) { throw new FileFormatException(path, $"line {(e.LineNumber ?? 0) + 1}", "not a valid manifest"); }
    }
}
