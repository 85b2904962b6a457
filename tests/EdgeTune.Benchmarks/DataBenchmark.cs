using System.Diagnostics;
using System.Text.Json;
using EdgeTune.Data;

namespace EdgeTune.Benchmarks;

/// <summary>
/// `data check` throughput (MB/s, rows/s) and peak resident memory (VmHWM) on a generated JSONL of
/// Alpaca rows (~300 bytes each, 1% planted duplicates). The file is written once and reused; its page
/// cache is warmed so the figure is the checker's, not the disk's.
///
///   dotnet run -c Release --project tests/EdgeTune.Benchmarks -- data [--mb 1024] [--dir D]
/// </summary>
internal static class DataBenchmark
{
    public static int Run(string[] args)
    {
        string Opt(string name, string fallback)
        {
            int i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        }
        long megabytes = long.Parse(Opt("--mb", "1024"));
        string dir = Opt("--dir", Path.Combine(Path.GetTempPath(), "edgetune-bench-data"));
        Directory.CreateDirectory(dir);
        string file = Path.Combine(dir, $"bench-v2-{megabytes}mb.jsonl");
        if (!File.Exists(file)) Generate(file, megabytes << 20);
        long bytes = new FileInfo(file).Length;
        using (var f = File.OpenRead(file)) f.CopyTo(Stream.Null);

        // Reading alone first, so the report separates parsing from checking.
        var read = Stopwatch.StartNew();
        long parsed = DatasetReader.Read(file).LongCount();
        read.Stop();

        var sw = Stopwatch.StartNew();
        var checker = new DataChecker();
        long rows = 0;
        foreach (var item in DatasetReader.Read(file)) { checker.Add(item); rows++; }
        var report = checker.Finish();
        sw.Stop();
        Console.WriteLine($"data check: {file} ({bytes / 1e6:0.0} MB, {rows} rows)");
        Console.WriteLine($"  reading only: {bytes / 1e6 / read.Elapsed.TotalSeconds:0.0} MB/s, {parsed / read.Elapsed.TotalSeconds:0} rows/s");
        Console.WriteLine($"  data check:   {bytes / 1e6 / sw.Elapsed.TotalSeconds:0.0} MB/s, {rows / sw.Elapsed.TotalSeconds:0} rows/s, {sw.Elapsed.TotalSeconds:0.00} s");
        Console.WriteLine($"  peak memory (VmHWM): {PeakMb():0} MB; {report.Findings.Count} findings");
        return 0;
    }

    private static void Generate(string file, long bytes)
    {
        Console.Error.WriteLine($"writing {file} ...");
        var r = new Random(1);
        // A 5,000-word vocabulary, so unrelated rows share few shingles, as in real text.
        string[] words = Enumerable.Range(0, 5000).Select(i => "w" + i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        string Words(int n) => string.Join(' ', Enumerable.Range(0, n).Select(_ => words[r.Next(words.Length)]));
        using var w = new StreamWriter(file);
        long written = 0;
        string? previous = null;
        while (written < bytes)
        {
            string line = previous is not null && r.Next(100) == 0 ? previous
                : JsonSerializer.Serialize(new { instruction = Words(20), input = Words(10), output = Words(15) });
            w.WriteLine(line);
            written += line.Length + 1;
            previous = line;
        }
    }

    private static double PeakMb()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024.0;
        return double.NaN;
    }
}
