using System.Diagnostics;
using System.Globalization;

namespace EdgeTune.Core.IO;

/// <summary>
/// Named points in the crash-safe writers (checkpoint replacement, split folder swap) where a test can make the
/// process die as abruptly as a power cut or the OOM killer would: SIGKILL of itself, no finally blocks, no
/// flushing. Armed only by the environment of a child process: EDGETUNE_CRASH_AT=NAME kills at the first pass of
/// NAME, NAME#N at the N-th. Unset (always, outside such tests), a pass costs one comparison.
/// </summary>
public static class CrashPoints
{
    public const string Variable = "EDGETUNE_CRASH_AT";
    private static readonly (string Name, int Count)? Armed = Parse(Environment.GetEnvironmentVariable(Variable));
    private static int _passes;

    public static void Pass(string name)
    {
        if (Armed is not { } armed || armed.Name != name) return;
        if (Interlocked.Increment(ref _passes) < armed.Count) return;
        Process.GetCurrentProcess().Kill();
        Thread.Sleep(Timeout.Infinite); // the signal is asynchronous: go no further meanwhile
    }

    private static (string, int)? Parse(string? value)
    {
        if (string.IsNullOrWhiteSpace(value)) return null;
        int hash = value.IndexOf('#', StringComparison.Ordinal);
        if (hash < 0) return (value, 1);
        return (value[..hash], int.Parse(value[(hash + 1)..], CultureInfo.InvariantCulture));
    }
}
