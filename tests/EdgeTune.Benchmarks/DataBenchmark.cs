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
        string file = Path.Combine(dir, $"bench-{megabytes}mb.jsonl");
        if (!File.Exists(file)) Generate(file, megabytes << 20);
        long bytes = new FileInfo(file).Length;
        using (var f = File.OpenRead(file)) f.CopyTo(Stream.Null);

        var sw = Stopwatch.StartNew();
        var checker = new DataChecker();
        long rows = 0;
        foreach (var item in DatasetReader.Read(file)) { checker.Add(item); rows++; }
        var report = checker.Finish();
        sw.Stop();
        Console.WriteLine($"data check: {file} ({bytes / 1e6:0.0} MB, {rows} rows)");
        Console.WriteLine($"  {bytes / 1e6 / sw.Elapsed.TotalSeconds:0.0} MB/s, {rows / sw.Elapsed.TotalSeconds:0} rows/s, {sw.Elapsed.TotalSeconds:0.00} s");
        Console.WriteLine($"  peak memory (VmHWM): {PeakMb():0} MB; {report.Findings.Count} findings");
        return 0;
    }

    private static void Generate(string file, long bytes)
    {
        Console.Error.WriteLine($"writing {file} ...");
        var r = new Random(1);
        string[] words = "apple river stone cloud quiet market engine garden silver orbit candle forest window ladder harbor pencil thunder meadow copper lantern valley rocket bridge marble violin desert canyon pepper tunnel island".Split(' ');
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
