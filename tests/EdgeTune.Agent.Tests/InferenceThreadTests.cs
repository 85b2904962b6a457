using EdgeTune.Agent.Config;
using EdgeTune.Agent.Serving;
using EdgeTune.Testing;
using Microsoft.Extensions.DependencyInjection;

namespace EdgeTune.Agent.Tests;

/// <summary>
/// llama.cpp's CPU backend uses OpenMP, and libgomp keeps a worker team per calling thread: compute from many
/// threads throttles every team in the process. The runtime therefore computes on one thread of its own.
/// </summary>
public sealed class InferenceThreadTests
{
    [Fact]
    public async Task Every_generation_runs_on_the_runtimes_own_thread_which_ends_on_dispose()
    {
        using var dir = new TempDir();
        var config = AgentConfig.Load(TinyAgentModel.WriteConfig(dir.Path, TinyAgentModel.Write(dir.Path)));
        var runtime = (EdgeTune.Inference.LlamaCpp.LlamaCppModel)ModelHost.Open(config.Model);
        var sampling = new SamplingSettings(4, 0, 1, null, []);
        var prompt = runtime.Tokenize("hello");
        var seen = new HashSet<int>();
        void Note(string _) { lock (seen) seen.Add(Environment.CurrentManagedThreadId); }

        runtime.Generate(prompt, sampling, Note, default);                              // from the test's thread
        await Task.Run(() => runtime.Generate(prompt, sampling, Note, default));        // from a pool thread
        await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => runtime.GenerateAsync(prompt, sampling, Note, default)));
        var other = new Thread(() => runtime.Generate(prompt, sampling, Note, default));
        other.Start();
        other.Join();

        Assert.Equal([runtime.InferenceThreadId], seen);
        Assert.True(runtime.InferenceThreadAlive);
        runtime.Dispose();
        Assert.False(runtime.InferenceThreadAlive);
        Assert.Throws<ObjectDisposedException>(() => runtime.Generate(prompt, sampling, Note, default));
        runtime.Dispose(); // twice is harmless
    }

    [Fact]
    public async Task A_cancelled_generation_is_reported_as_cancelled()
    {
        using var dir = new TempDir();
        var config = AgentConfig.Load(TinyAgentModel.WriteConfig(dir.Path, TinyAgentModel.Write(dir.Path)));
        using var runtime = (EdgeTune.Inference.LlamaCpp.LlamaCppModel)ModelHost.Open(config.Model);
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => runtime.GenerateAsync(runtime.Tokenize("hello"), new SamplingSettings(4, 0, 1, null, []), _ => { }, cancelled.Token));
        Assert.Throws<PromptTooLongException>(() => runtime.Generate(new int[runtime.ContextSize], new SamplingSettings(4, 0, 1, null, []), _ => { }, default));
    }

    [Fact]
    public async Task Stopping_the_agent_unloads_the_model()
    {
        EdgeTune.Inference.LlamaCpp.LlamaCppModel? loaded = null;
        var agent = new AgentFixture(8, c => loaded = (EdgeTune.Inference.LlamaCpp.LlamaCppModel)ModelHost.Open(c.Model));
        await agent.InitializeAsync();
        var (status, _) = await agent.Client.PostJson("/v1/completions", new { prompt = "hello", max_tokens = 3 });
        Assert.Equal(200, status);
        Assert.True(loaded!.InferenceThreadAlive);
        await agent.App.StopAsync();
        Assert.False(loaded.InferenceThreadAlive);
        Assert.Null(agent.App.Services.GetRequiredService<ModelHost>().Runtime);
        await agent.DisposeAsync();
    }
}
