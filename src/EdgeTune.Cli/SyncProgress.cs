namespace EdgeTune.Cli;

/// <summary>Reports on the calling thread (Progress&lt;T&gt; would post to the thread pool and arrive late).</summary>
internal sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
