using EdgeTune.Agent.Config;

namespace EdgeTune.Agent.Serving;

/// <summary>
/// Loads the runtime in the background after the server starts, so /health can say 503 while loading; unloads it
/// (llama.cpp's context, model and inference thread) when the host stops.
/// </summary>
public sealed class ModelHost(AgentConfig config, Func<AgentConfig, ITextRuntime> factory, ILogger<ModelHost> logger) : BackgroundService
{
    private ITextRuntime? _runtime;
    private int _stopped;

    public ITextRuntime? Runtime => Volatile.Read(ref _runtime);
    public string? LoadError { get; private set; }
    public bool Ready => Runtime is not null;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            var runtime = await Task.Run(() => factory(config), stoppingToken).ConfigureAwait(false);
            Volatile.Write(ref _runtime, runtime);
            if (Volatile.Read(ref _stopped) != 0)
            {
                Unload(); // the host stopped while the model was loading
                return;
            }
            if (logger.IsEnabled(LogLevel.Information))
                logger.LogInformation("model {Name} loaded from {Path} (context {Context}, adapters: {Adapters})",
                runtime.ModelName, config.Model.Path, runtime.ContextSize, runtime.Adapters.Count == 0 ? "none" : string.Join(", ", runtime.Adapters));
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            LoadError = e.Message;
            logger.LogError("model did not load: {Message}", e.Message);
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        Volatile.Write(ref _stopped, 1);
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        Unload();
    }

    /// <summary>New requests see no model (503); a generation in progress finishes first (Dispose waits for it).</summary>
    private void Unload()
    {
        var runtime = Interlocked.Exchange(ref _runtime, null);
        if (runtime is null) return;
        runtime.Dispose();
        if (logger.IsEnabled(LogLevel.Information)) logger.LogInformation("model {Name} unloaded", runtime.ModelName);
    }

    public override void Dispose()
    {
        Unload();
        base.Dispose();
    }
}
