using System.Globalization;
using System.Text;
using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Data;

namespace EdgeTune.Cli.Fleet;

/// <summary>
/// The split folder as <c>edgetune fleet collect</c> writes it: batches go in through <see cref="DatasetIngester"/>
/// (provenance, duplicates skipped, the frozen test split never written), and every message already written is
/// in an idempotency ledger (<c>fleet/ledger.tsv</c>: device, revision, record id), so a replayed or re-delivered
/// message is acknowledged without being written twice.
/// A batch is all-or-nothing: before it, <c>fleet/pending.json</c> records the length of every file the batch may
/// touch and a copy of the manifest; after the rows, the manifest and the ledger lines are fsynced, removing
/// pending.json commits. A process killed in between leaves pending.json behind, and the next start cuts the files
/// back to those lengths (the broker re-delivers what was never acknowledged).
/// </summary>
public sealed class CollectedDataset
{
    // Never test.jsonl: ingest does not write the frozen test split, and this class does not open it.
    private static readonly string[] Touched = ["train.jsonl", "eval.jsonl", "heldback.jsonl", "fleet/ledger.tsv"];
    private readonly HashSet<string> _ledger = new(StringComparer.Ordinal);
    private readonly Dictionary<string, HashSet<long>> _revisions = new(StringComparer.Ordinal);

    public CollectedDataset(string dir)
    {
        Dir = Path.GetFullPath(dir);
        if (Manifest.Load(Dir) is null) throw new EdgeTuneException($"{Dir}: no {Manifest.FileName}; make the split first (edgetune data split FILE --out {dir})");
        Directory.CreateDirectory(Path.Combine(Dir, "fleet", "batches"));
        RolledBack = Recover();
        string ledger = Path.Combine(Dir, "fleet", "ledger.tsv");
        if (!File.Exists(ledger)) return;
        int line = 0;
        foreach (var text in File.ReadLines(ledger))
        {
            line++;
            var parts = text.Split('\t');
            if (parts.Length != 3 || !long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out long revision))
                throw new EdgeTuneException($"{ledger}:{line}: expected DEVICE<TAB>REVISION<TAB>RECORD-ID");
            Remember(parts[0], revision, parts[2]);
        }
    }

    public string Dir { get; }

    /// <summary>True when the last run died inside a batch and that batch was undone at start.</summary>
    public bool RolledBack { get; }

    public int LedgerCount => _ledger.Count;

    public bool Contains(string device, long revision, string recordId) => _ledger.Contains(Key(device, revision, recordId));

    public bool HasRevision(string device, long revision) => _revisions.TryGetValue(device, out var set) && set.Contains(revision);

    /// <summary>Writes one batch (the rows already carry their provenance) and records its messages in the ledger, durably, or nothing.</summary>
    public IngestResult Commit(IReadOnlyList<(string Device, long Revision, string RecordId, string ChatJson)> rows)
    {
        string fleetDir = Path.Combine(Dir, "fleet");
        string batch = Path.Combine(fleetDir, "batches", DateTime.UtcNow.ToString("yyyyMMdd'T'HHmmss.fffffff'Z'", CultureInfo.InvariantCulture) + ".jsonl");
        WriteDurably(batch, string.Concat(rows.Select(r => r.ChatJson + "\n")));

        var pending = new Pending(Touched.ToDictionary(f => f, f => new FileInfo(Path.Combine(Dir, f)) is { Exists: true } i ? i.Length : -1), batch);
        File.Copy(Path.Combine(Dir, Manifest.FileName), Path.Combine(fleetDir, "manifest.before.json"), overwrite: true);
        EdgeTune.Core.IO.DurableFiles.SyncFile(Path.Combine(fleetDir, "manifest.before.json"));
        WriteDurably(Path.Combine(fleetDir, "pending.json"), JsonSerializer.Serialize(pending));
        EdgeTune.Core.IO.DurableFiles.SyncFolder(fleetDir);
        try
        {
            var result = DatasetIngester.Ingest(batch, Dir, new IngestOptions { Provenance = new Dictionary<string, string> { ["source"] = "fleet" } });
            foreach (var f in Touched.Append(Manifest.FileName))
                if (File.Exists(Path.Combine(Dir, f))) EdgeTune.Core.IO.DurableFiles.SyncFile(Path.Combine(Dir, f));
            using (var ledger = new FileStream(Path.Combine(fleetDir, "ledger.tsv"), FileMode.Append, FileAccess.Write))
            {
                var text = new StringBuilder();
                foreach (var r in rows) text.Append(r.Device).Append('\t').Append(r.Revision.ToString(CultureInfo.InvariantCulture)).Append('\t').Append(r.RecordId).Append('\n');
                ledger.Write(Encoding.UTF8.GetBytes(text.ToString()));
                ledger.Flush(flushToDisk: true);
            }
            EdgeTune.Core.IO.DurableFiles.SyncFolder(Dir);
            File.Delete(Path.Combine(fleetDir, "pending.json")); // the commit point
            EdgeTune.Core.IO.DurableFiles.SyncFolder(fleetDir);
            foreach (var r in rows) Remember(r.Device, r.Revision, r.RecordId);
            return result;
        }
        catch
        {
            Recover();
            throw;
        }
    }

    /// <summary>Undoes a batch a killed process left half-done; true when there was one.</summary>
    private bool Recover()
    {
        string fleetDir = Path.Combine(Dir, "fleet");
        string pendingPath = Path.Combine(fleetDir, "pending.json");
        if (!File.Exists(pendingPath)) return false;
        Pending? pending;
        try { pending = JsonSerializer.Deserialize<Pending>(File.ReadAllText(pendingPath)); }
        catch (JsonException) { pending = null; }
        // pending.json is written aside and renamed in: a torn one means the batch never began.
        if (pending is not null)
        {
            foreach (var (file, length) in pending.Lengths)
            {
                string path = Path.Combine(Dir, file);
                if (length < 0) { File.Delete(path); continue; }
                if (File.Exists(path) && new FileInfo(path).Length != length)
                {
                    using var stream = new FileStream(path, FileMode.Open, FileAccess.Write);
                    stream.SetLength(length);
                    stream.Flush(flushToDisk: true);
                }
            }
            string backup = Path.Combine(fleetDir, "manifest.before.json");
            string manifest = Path.Combine(Dir, Manifest.FileName);
            File.Copy(backup, manifest + ".tmp", overwrite: true);
            EdgeTune.Core.IO.DurableFiles.SyncFile(manifest + ".tmp");
            File.Move(manifest + ".tmp", manifest, overwrite: true);
            File.Delete(pending.Batch);
            EdgeTune.Core.IO.DurableFiles.SyncFolder(Dir);
        }
        File.Delete(pendingPath);
        EdgeTune.Core.IO.DurableFiles.SyncFolder(fleetDir);
        return pending is not null;
    }

    private void Remember(string device, long revision, string recordId)
    {
        _ledger.Add(Key(device, revision, recordId));
        if (!_revisions.TryGetValue(device, out var set)) _revisions[device] = set = [];
        set.Add(revision);
    }

    // The record id is part of the key: a device whose field log was wiped starts its revisions again at 1.
    private static string Key(string device, long revision, string recordId) => device + "\t" + revision.ToString(CultureInfo.InvariantCulture) + "\t" + recordId;

    private sealed record Pending(Dictionary<string, long> Lengths, string Batch);

    private static void WriteDurably(string path, string text)
    {
        string tmp = path + ".tmp";
        using (var stream = new FileStream(tmp, FileMode.Create, FileAccess.Write))
        {
            stream.Write(Encoding.UTF8.GetBytes(text));
            stream.Flush(flushToDisk: true);
        }
        File.Move(tmp, path, overwrite: true);
    }
}
