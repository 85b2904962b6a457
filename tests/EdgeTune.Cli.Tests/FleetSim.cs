using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using EdgeTune.Agent.FieldLog;
using EdgeTune.Agent.Fleet;
using EdgeTune.Core.Numerics;
using EdgeTune.Formats.FieldData;
using EdgeTune.Testing;

namespace EdgeTune.Cli.Tests;

/// <summary>
/// A simulated agent: the agent's real outbox (<see cref="FleetOutbox"/>) over a real SQLite field log, without the
/// model and HTTP server around them. Records are distinct random sentences, so the ingest rules keep every one.
/// </summary>
internal sealed class SimAgent : IDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private ulong _seed;

    public SimAgent(string dir, string device, FleetConnection connection, string fleet = "f1", long maxRecords = 0)
    {
        Device = device;
        Log = new FieldLogStore(Path.Combine(dir, device + ".db"), maxRecords);
        Config = new FleetConfig { Connection = connection with { ClientId = device }, Device = device, Fleet = fleet, StatusEverySeconds = 1 };
        _seed = (ulong)device.GetHashCode(StringComparison.Ordinal) * 7919;
        Outbox = NewOutbox();
    }

    public string Device { get; }
    public FieldLogStore Log { get; }
    public FleetConfig Config { get; }
    public FleetOutbox Outbox { get; private set; }
    public List<string> Ids { get; } = [];

    private FleetOutbox NewOutbox() => new(Config, Log) { InitialBackoff = TimeSpan.FromMilliseconds(50), MaxBackoff = TimeSpan.FromMilliseconds(500) };

    public void Add(int n)
    {
        for (int i = 0; i < n; i++)
        {
            string id = $"cmpl-{Device}-{Ids.Count}";
            string question = Sentence(12), answer = Sentence(8);
            Log.Add(new CompletionRecord(id, DateTimeOffset.UtcNow, Device, "chat", "tiny", null,
                [new FieldMessage("user", question)], answer, new Dictionary<string, object?> { ["temperature"] = 0.0 },
                12.5 + i % 7, 3, 12, 8, "stop"));
            Ids.Add(id);
        }
    }

    private string Sentence(int words) =>
        string.Join(' ', Enumerable.Range(0, words).Select(_ => Word(SplitMix64.Next(ref _seed) % 50_000)));

    private static string Word(ulong n)
    {
        var chars = new List<char>();
        do { chars.Add((char)('a' + (int)(n % 26))); n /= 26; } while (n > 0);
        return new string([.. chars]) + "x";
    }

    public Task StartAsync() => Outbox.StartAsync(_stop.Token);

    public async Task StopAsync()
    {
        await Outbox.StopAsync(CancellationToken.None);
        Outbox.Dispose();
        Outbox = NewOutbox();
    }

    public void Dispose()
    {
        _stop.Cancel();
        try { Outbox.StopAsync(CancellationToken.None).GetAwaiter().GetResult(); }
        catch (OperationCanceledException) { }
        Outbox.Dispose();
        Log.Dispose();
    }
}

internal static class FleetData
{
    /// <summary>A split folder made by <c>edgetune data split</c> from 60 ticket-like rows (so it has a frozen test split).</summary>
    public static string MakeSplitFolder(TempDir dir)
    {
        string source = dir.File("seed.jsonl");
        File.WriteAllLines(source, Enumerable.Range(0, 60).Select(i =>
            JsonSerializer.Serialize(new { prompt = $"Seed ticket {i}: printer {i * 7919 % 1000} on floor {i % 9} jams", completion = $"{{\"team\": \"facilities\", \"n\": {i}}}" })));
        string data = dir.File("data");
        var r = CliRunner.Run("data", "split", source, "--out", data);
        Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
        Assert.True(new FileInfo(Path.Combine(data, "test.jsonl")).Length > 0, "the seed split has a test split");
        return data;
    }

    public static string Sha256(string file) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(file)));

    /// <summary>(device, record id) of every collected row, across the splits a collection may write.</summary>
    public static List<(string Device, string Record)> Collected(string data)
    {
        var rows = new List<(string, string)>();
        foreach (var name in new[] { "train", "eval", "heldback", "test" })
        {
            string path = Path.Combine(data, name + ".jsonl");
            if (!File.Exists(path)) continue;
            foreach (var line in File.ReadLines(path))
            {
                using var doc = JsonDocument.Parse(line);
                if (!doc.RootElement.TryGetProperty("provenance", out var p) || !p.TryGetProperty("record", out var record)) continue;
                Assert.Equal("fleet", p.GetProperty("source").GetString());
                Assert.True(p.TryGetProperty("time", out _) && p.TryGetProperty("revision", out _), line);
                rows.Add((p.GetProperty("device").GetString()!, record.GetString()!));
            }
        }
        return rows;
    }

    /// <summary>Every id of every agent collected exactly once, nothing else.</summary>
    public static void AssertExactlyOnce(string data, IEnumerable<SimAgent> agents)
    {
        var collected = Collected(data);
        var duplicates = collected.GroupBy(c => c).Where(g => g.Count() > 1).Select(g => g.Key).ToList();
        Assert.True(duplicates.Count == 0, $"written twice: {string.Join(", ", duplicates.Take(5))}");
        var expected = agents.SelectMany(a => a.Ids.Select(id => (a.Device, id))).ToHashSet();
        var missing = expected.Except(collected).ToList();
        Assert.True(missing.Count == 0, $"{missing.Count} record(s) never collected, e.g. {string.Join(", ", missing.Take(5))}");
        Assert.Equal(expected.Count, collected.Count);
    }

    /// <summary>Waits (a liveness bound, not a timing assertion) until every outbox has nothing left to send.</summary>
    public static async Task DrainAsync(IEnumerable<SimAgent> agents, TimeSpan limit)
    {
        var clock = Stopwatch.StartNew();
        while (agents.Any(a => a.Outbox.Lag > 0))
        {
            if (clock.Elapsed > limit)
                throw new TimeoutException("outboxes still hold records: " + string.Join(", ", agents.Where(a => a.Outbox.Lag > 0).Select(a => $"{a.Device}={a.Outbox.Lag} ({a.Outbox.LastError})").Take(5)));
            await Task.Delay(50);
        }
    }
}
