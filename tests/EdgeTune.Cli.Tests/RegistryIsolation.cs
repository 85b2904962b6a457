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
