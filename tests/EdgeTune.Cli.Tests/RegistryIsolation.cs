using System.Runtime.CompilerServices;
using EdgeTune.Core.Runs;

namespace EdgeTune.Cli.Tests;

internal static class RegistryIsolation
{
    /// <summary>Commands run in-process record their runs in a registry of this test process, not in runs/ of the working directory.</summary>
    [ModuleInitializer]
    internal static void Isolate() =>
        Environment.SetEnvironmentVariable(RunRegistry.EnvironmentVariable, Path.Combine(Path.GetTempPath(), $"edgetune-test-runs-{Environment.ProcessId}"));
}

internal static class ThreadPoolFloor
{
    /// <summary>
    /// This test process hosts several agents (Kestrel answers from the thread pool) beside training and commands that
    /// wait synchronously on HTTP calls, on a 2-core machine where the pool starts with 2 threads and adds about one
    /// every half second when starved: a measured 26 s before an agent's first /health answer with 40 blocked pool
    /// items (device/EdgeTune.Agent/README.md, "Start-up and the thread pool"). A floor of 32 threads keeps the
    /// process's own waits from delaying its agents.
    /// </summary>
    [ModuleInitializer]
    internal static void Raise()
    {
        ThreadPool.GetMinThreads(out int workers, out int io);
        ThreadPool.SetMinThreads(Math.Max(workers, 32), Math.Max(io, 32));
    }
}
