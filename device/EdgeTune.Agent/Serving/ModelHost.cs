using EdgeTune.Agent.Config;

namespace EdgeTune.Agent.Serving;

/// <summary>Loads the runtime in the background after the server starts, so /health can say 503 while loading.</summary>
public sealed class ModelHost(AgentConfig config, Func<AgentConfig, ITextRuntime> factory, ILogger<ModelHost> logger) : BackgroundService
{
    private volatile ITextRuntime? _runtime;

    public ITextRuntime? Runtime => _runtime;
    public string? LoadError { get; private set; }
    public bool Ready => _runtime is not null;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            var runtime = await Task.Run(() => factory(config), stoppingToken).ConfigureAwait(false);
            _runtime = runtime;
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

    public override void Dispose()
    {
        _runtime?.Dispose();
        base.Dispose();
    }
}
