using EdgeTune.Agent.Config;
using EdgeTune.Inference;
using EdgeTune.Inference.LlamaCpp;
using EdgeTune.Inference.Onnx;

namespace EdgeTune.Agent.Serving;

/// <summary>Where the served model is: one immutable snapshot, so a reader never sees half a change.</summary>
/// <param name="Status">"loading", "ok", "error" (did not load) or "stopping" (unloading).</param>
public sealed record ModelState(string Status, IInferenceModel? Model, string? ModelName, string? Error)
{
    public static readonly ModelState Loading = new("loading", null, null, null);
}

/// <summary>
/// Loads the model in the background after the server starts, so /health can say 503 while loading; unloads it
/// (llama.cpp's context, model and inference thread) when the host stops.
/// </summary>
public sealed class ModelHost(AgentConfig config, Func<AgentConfig, IInferenceModel> factory, ILogger<ModelHost> logger) : BackgroundService
{
    private ModelState _state = ModelState.Loading;
    private int _stopped;
    private AgentConfig _config = config;
    private readonly SemaphoreSlim _loading = new(1, 1);

    /// <summary>
    /// The agent's model from its configuration: llama.cpp (the configured native library when there is one), or an
    /// ONNX folder; <paramref name="parallel"/> sequences decoded together ([server] parallel; ONNX generates one at a time).
    /// </summary>
    public static IInferenceModel Open(ModelConfig model, int parallel = 1) =>
        (model.Runtime == "onnx" ? (IInferenceRuntime)OnnxGenAiRuntime.Default : new LlamaCppRuntime(model.NativeLibrary)).Open(new ModelOptions
        {
            Path = model.Path,
            Name = model.Name,
            Adapters = model.Adapters,
            ContextSize = model.Context,
            BatchSize = model.Batch,
            Threads = model.Threads,
            GpuLayers = model.GpuLayers,
            NativeLibrary = model.NativeLibrary,
            Parallel = parallel,
        });

    /// <summary>One consistent view of the model (read it once per request).</summary>
    public ModelState State => Volatile.Read(ref _state);

    public IInferenceModel? Runtime => State.Model;
    public string? LoadError => State.Error;
    public bool Ready => State.Model is not null;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await _loading.WaitAsync(stoppingToken).ConfigureAwait(false);
        try
        {
            var model = await LoadOffThePool(_config, stoppingToken).ConfigureAwait(false);
            Volatile.Write(ref _state, new ModelState("ok", model, model.ModelName, null));
            if (Volatile.Read(ref _stopped) != 0)
            {
                Unload(); // the host stopped while the model was loading
                return;
            }
            if (logger.IsEnabled(LogLevel.Information))
                logger.LogInformation("model {Name} loaded from {Path} (context {Context}, adapters: {Adapters})",
                model.ModelName, _config.Model.Path, model.ContextSize, model.Adapters.Count == 0 ? "none" : string.Join(", ", model.Adapters));
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            Volatile.Write(ref _state, new ModelState("error", null, null, e.Message));
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
            Volatile.Write(ref _state, ModelState.Loading);
            _config = next;
            try
            {
                var model = await LoadOffThePool(next, cancellationToken).ConfigureAwait(false);
                Volatile.Write(ref _state, new ModelState("ok", model, model.ModelName, null));
                if (logger.IsEnabled(LogLevel.Information)) logger.LogInformation("model {Name} loaded from {Path}", model.ModelName, next.Model.Path);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                Volatile.Write(ref _state, new ModelState("error", null, null, e.Message));
                throw;
            }
        }
        finally
        {
            _loading.Release();
        }
    }

    /// <summary>
    /// Runs the factory on a thread of its own. A load blocks its caller for seconds to minutes (llama.cpp reads
    /// the file on the inference thread while the caller waits for it); on a thread-pool thread that is one
    /// thread fewer for Kestrel, and in a starved pool (a busy test process, a 2-core board) every such thread
    /// delays the answer to GET /health.
    /// </summary>
    private Task<IInferenceModel> LoadOffThePool(AgentConfig config, CancellationToken cancellationToken) =>
        Task.Factory.StartNew(() => factory(config), cancellationToken, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        Volatile.Write(ref _stopped, 1);
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        Unload();
    }

    /// <summary>New requests see no model (503, "stopping"); a generation in progress finishes first (Dispose waits for it).</summary>
    private void Unload()
    {
        var previous = Interlocked.Exchange(ref _state, new ModelState("stopping", null, null, null));
        if (previous.Model is not { } model) return;
        model.Dispose();
        if (logger.IsEnabled(LogLevel.Information)) logger.LogInformation("model {Name} unloaded", model.ModelName);
    }

    public override void Dispose()
    {
        Unload();
        base.Dispose();
    }
}
