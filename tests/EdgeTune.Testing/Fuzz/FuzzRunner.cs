using System.Diagnostics;
using EdgeTune.Core;
using EdgeTune.Core.Numerics;

namespace EdgeTune.Testing.Fuzz;

/// <summary>One input the reader did not handle as documented, with the bytes that show it.</summary>
public sealed record FuzzFailure(int Index, string Kind, string Detail, byte[] Input)
{
    public override string ToString() => $"input {Index}: {Kind}: {Detail}";
}

/// <summary>What a fuzz run saw: how many inputs were accepted and refused, what failed, the slowest and the hungriest input.</summary>
public sealed record FuzzReport(
    string Format, int Count, int Accepted, int Refused, IReadOnlyList<FuzzFailure> Failures,
    int SlowestIndex, double SlowestMs, byte[] SlowestInput, int HungriestIndex, long MaxAllocatedBytes, TimeSpan Total)
{
    public string Summary =>
        $"{Format}: {Count} inputs, {Accepted} accepted, {Refused} refused with a clear error, {Failures.Count} failures; " +
        $"slowest input {SlowestIndex} ({SlowestInput.Length} bytes) took {SlowestMs:0.0} ms; most allocated by one input: " +
        $"{MaxAllocatedBytes / 1024.0:0} KiB (input {HungriestIndex}); {Total.TotalSeconds:0.0} s in all";
}

/// <summary>
/// Feeds a reader seeded mutations of a valid input, one at a time on a worker thread, and holds it to its contract:
/// every input is accepted or refused with an <see cref="EdgeTuneException"/> whose one-line message names the file
/// (and the place); nothing else may escape (a crash), no input may run past <c>perInputLimit</c> (a hang, caught by
/// a watchdog on the calling thread), and no input may allocate more than <c>allocationLimit</c> bytes on the reading
/// thread (an allocation sized by an unchecked header). Input i is the same for the same seed on every machine.
/// </summary>
public static class FuzzRunner
{
    public static FuzzReport Run(FuzzTarget target, int count, ulong seed, string dir,
        TimeSpan? perInputLimit = null, long allocationLimit = 64L << 20, int maxFailures = 20)
    {
        var limit = perInputLimit ?? TimeSpan.FromSeconds(20);
        string path = Path.Combine(dir, "fuzz" + target.Extension);
        byte[] valid = target.Seed();
        var failures = new List<FuzzFailure>();
        int accepted = 0, refused = 0, slowestIndex = -1, hungriestIndex = -1;
        double slowestMs = 0;
        long maxAllocated = 0;
        byte[] slowestInput = [];
        byte[] currentInput = [];
        int current = -1;
        long startedAt = 0;
        bool stop = false;
        var total = Stopwatch.StartNew();

        var worker = new Thread(() =>
        {
            for (int i = 0; i < count && !Volatile.Read(ref stop); i++)
            {
                byte[] input = i == 0 ? valid : target.Mutate(valid, InputRandom(seed, i));
                Write(path, input);
                currentInput = input;
                Volatile.Write(ref startedAt, Stopwatch.GetTimestamp());
                Volatile.Write(ref current, i);
                long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
                string? problem = null;
                bool wasRefused = false;
                try
                {
                    wasRefused = target.Consume(path);
                }
                catch (EdgeTuneException e)
                {
                    problem = target.CheckMessage(e.Message, path);
                    wasRefused = true;
                }
                catch (FuzzViolationException e)
                {
                    problem = e.Message;
                }
                catch (Exception e)
                {
                    problem = $"crash: {e.GetType().Name}: {e.Message}\n{e.StackTrace}";
                }
                long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
                double ms = (Stopwatch.GetTimestamp() - Volatile.Read(ref startedAt)) * 1e3 / Stopwatch.Frequency;
                Volatile.Write(ref current, -1);
                if (i == 0 && problem is null && wasRefused) problem = "the valid seed input itself was refused";
                if (problem is null && wasRefused) refused++;
                else if (problem is null) accepted++;
                if (problem is not null) failures.Add(new FuzzFailure(i, problem.StartsWith("crash", StringComparison.Ordinal) ? "crash" : "unclear error", problem, input));
                if (allocated > allocationLimit) failures.Add(new FuzzFailure(i, "allocation", $"{allocated} bytes allocated reading a {input.Length}-byte file", input));
                if (allocated > maxAllocated) (maxAllocated, hungriestIndex) = (allocated, i);
                if (i > 0 && ms > slowestMs) (slowestMs, slowestIndex, slowestInput) = (ms, i, input); // input 0, the seed, pays for the JIT
                if (failures.Count >= maxFailures) break;
            }
        })
        { IsBackground = true, Name = $"fuzz {target.Name}" };
        worker.Start();

        // The watchdog: a reader stuck on one input is reported with that input; the worker cannot be aborted, so it is
        // left behind as a background thread (it ends with the process) and the run stops.
        while (!worker.Join(50))
        {
            int i = Volatile.Read(ref current);
            if (i < 0) continue;
            double seconds = (Stopwatch.GetTimestamp() - Volatile.Read(ref startedAt)) / (double)Stopwatch.Frequency;
            if (seconds <= limit.TotalSeconds || Volatile.Read(ref current) != i) continue;
            Volatile.Write(ref stop, true);
            failures.Add(new FuzzFailure(i, "hang", $"still reading after {seconds:0} s", currentInput));
            break;
        }
        return new FuzzReport(target.Name, count, accepted, refused, failures.ToList(), slowestIndex, slowestMs, slowestInput, hungriestIndex, maxAllocated, total.Elapsed);
    }

    /// <summary>The generator of input <paramref name="index"/>: independent of every other input, so one input can be made again alone.</summary>
    public static Random InputRandom(ulong seed, int index) =>
        new(unchecked((int)SplitMix64.Finalize(seed * SplitMix64.Golden + (ulong)index)));

    /// <summary>
    /// Rewrites the file in place. File.WriteAllBytes truncates to zero first, which ext4 answers by flushing on
    /// close (auto_da_alloc) and makes each input 40 times slower.
    /// </summary>
    private static void Write(string path, byte[] content)
    {
        using var stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, bufferSize: 1);
        stream.Write(content);
        stream.SetLength(content.Length);
    }
}

/// <summary>A consumer's own contract broken (a finding without its file or line, say): counted as a failure, not a refusal.</summary>
public sealed class FuzzViolationException(string message) : Exception(message);
