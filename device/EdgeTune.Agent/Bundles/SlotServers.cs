using EdgeTune.Inference;
using EdgeTune.Agent.Config;
using EdgeTune.Agent.Serving;

namespace EdgeTune.Agent.Bundles;

/// <summary>The running agent: models load through its ModelHost; health-check generations wait in its request queue.</summary>
public sealed class HostSlotServer(ModelHost host, RequestQueue queue) : ISlotServer
{
    public async Task<IInferenceModel> ServeAsync(AgentConfig config, CancellationToken cancellationToken)
    {
        await host.ReloadAsync(config, cancellationToken);
        return host.Runtime ?? throw new InvalidOperationException(host.LoadError ?? "the model did not load");
    }

    public async Task<GenerationResult> ExclusiveAsync(Func<Task<GenerationResult>> generate, CancellationToken cancellationToken)
    {
        while (true)
        {
            using var lease = await queue.EnterAsync(cancellationToken);
            if (lease is not null) return await generate();
            await Task.Delay(50, cancellationToken); // the queue is full of requests: wait a turn
        }
    }
}

/// <summary>The command line with no agent running: the installer loads the model itself for the health check, then lets it go.</summary>
public sealed class OfflineSlotServer(Func<AgentConfig, IInferenceModel> factory) : ISlotServer, IDisposable
{
    private IInferenceModel? _runtime;

    public async Task<IInferenceModel> ServeAsync(AgentConfig config, CancellationToken cancellationToken)
    {
        Dispose();
        _runtime = await Task.Run(() => factory(config), cancellationToken);
        return _runtime;
    }

    public Task<GenerationResult> ExclusiveAsync(Func<Task<GenerationResult>> generate, CancellationToken cancellationToken) => generate();

    public void Dispose()
    {
        _runtime?.Dispose();
        _runtime = null;
    }
}
