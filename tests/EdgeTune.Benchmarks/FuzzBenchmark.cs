using EdgeTune.Testing.Fuzz;

namespace EdgeTune.Benchmarks;

/// <summary>
/// The readers under mutated input, at full size: 10,000 inputs per format by default (the unit suite runs a few
/// hundred of each). Prints per format how many inputs were accepted and refused, every failure (a crash, an unclear
/// message, a hang past the watchdog, an allocation past the bound) and the slowest input; failing and slowest inputs
/// are written to the folder so they can be replayed. Exit 1 when anything failed.
///
///   dotnet run -c Release --project tests/EdgeTune.Benchmarks -- fuzz [--format gguf|safetensors|jsonl|csv|recipe|profile] [--count 10000] [--seed 1] [--dir D]
/// </summary>
internal static class FuzzBenchmark
{
    public static int Run(string[] args)
    {
        string Opt(string name, string fallback)
        {
            int i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        }
        string? format = Opt("--format", "");
        int count = int.Parse(Opt("--count", "10000"));
        ulong seed = ulong.Parse(Opt("--seed", "1"));
        string dir = Opt("--dir", Path.Combine(Path.GetTempPath(), "edgetune-fuzz"));
        Directory.CreateDirectory(dir);
        var targets = format.Length == 0 ? FuzzTargets.All : [FuzzTargets.Get(format)];

        int failed = 0;
        foreach (var target in targets)
        {
            string work = Path.Combine(dir, target.Name);
            Directory.CreateDirectory(work);
            var report = FuzzRunner.Run(target, count, seed, work);
            Console.WriteLine(report.Summary);
            string slowest = Path.Combine(dir, $"{target.Name}-slowest-{report.SlowestIndex}{target.Extension}");
            File.WriteAllBytes(slowest, report.SlowestInput);
            Console.WriteLine($"  slowest input written to {slowest}");
            foreach (var failure in report.Failures)
            {
                string file = Path.Combine(dir, $"{target.Name}-failure-{failure.Index}{target.Extension}");
                File.WriteAllBytes(file, failure.Input);
                Console.WriteLine($"  FAILED {failure} ({file})");
            }
            failed += report.Failures.Count;
        }
        Console.WriteLine(failed == 0 ? $"no failures (seed {seed})" : $"{failed} failures (seed {seed})");
        return failed == 0 ? 0 : 1;
    }
}
