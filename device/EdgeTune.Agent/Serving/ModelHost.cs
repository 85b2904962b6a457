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
    private AgentConfig _config = config;
    private readonly SemaphoreSlim _loading = new(1, 1);

    public ITextRuntime? Runtime => Volatile.Read(ref _runtime);
    public string? LoadError { get; private set; }
    public bool Ready => Runtime is not null;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await _loading.WaitAsync(stoppingToken).ConfigureAwait(false);
        try
        {
            var runtime = await Task.Run(() => factory(_config), stoppingToken).ConfigureAwait(false);
            Volatile.Write(ref _runtime, runtime);
            if (Volatile.Read(ref _stopped) != 0)
            {
                Unload(); // the host stopped while the model was loading
                return;
            }
            if (logger.IsEnabled(LogLevel.Information))
                logger.LogInformation("model {Name} loaded from {Path} (context {Context}, adapters: {Adapters})",
                runtime.ModelName, _config.Model.Path, runtime.ContextSize, runtime.Adapters.Count == 0 ? "none" : string.Join(", ", runtime.Adapters));
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            LoadError = e.Message;
            logger.LogError("model did not load: {Message}", e.Message);
        }
        finally
        {
            _loading.Release();
        }
    }

    /// <summary>
    /// Serves <paramref name="next"/>'s model instead (a bundle install or its rollback). The current runtime is
    /// unloaded first (a board has memory for one model); if the new one does not load, Runtime stays null and
    /// the exception says why.
    /// </summary>
    public async Task ReloadAsync(AgentConfig next, CancellationToken cancellationToken)
    {
        await _loading.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            Unload();
            LoadError = null;
            _config = next;
            try
            {
                var runtime = await Task.Run(() => factory(next), cancellationToken).ConfigureAwait(false);
                Volatile.Write(ref _runtime, runtime);
                if (logger.IsEnabled(LogLevel.Information)) logger.LogInformation("model {Name} loaded from {Path}", runtime.ModelName, next.Model.Path);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                LoadError = e.Message;
                throw;
            }
        }
        finally
        {
            _loading.Release();
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
