using EdgeTune.Agent.Config;
using EdgeTune.Agent.Serving;
using EdgeTune.Inference;
using EdgeTune.Testing;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

namespace EdgeTune.Agent.Tests;

/// <summary>
/// Kestrel answers from the thread pool, so the agent must not hold pool threads while it starts: a starved pool
/// (a busy test process beside the demo's in-process agent) left GET /health unanswered for minutes.
/// </summary>
public sealed class StartupUnderLoadTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    public async Task The_model_loads_on_a_thread_of_its_own_while_health_says_loading(int parallel)
    {
        using var dir = new TempDir();
        string model = TinyAgentModel.Write(dir.Path);
        var config = AgentConfig.Load(TinyAgentModel.WriteConfig(dir.Path, model, serverExtra: $"parallel = {parallel}"));
        using var loadMayFinish = new ManualResetEventSlim();
        bool? loadedOnPoolThread = null;
        var app = AgentApp.Build(config, c =>
        {
            loadedOnPoolThread = Thread.CurrentThread.IsThreadPoolThread;
            loadMayFinish.Wait(TimeSpan.FromSeconds(60)); // a slow load: the file read from a slow card
            return ModelHost.Open(c.Model, c.Server.Parallel);
        });
        await app.StartAsync();
        try
        {
            var address = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
            using var client = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(60) };
            using (var loading = await client.GetAsync("/health"))
            {
                Assert.Equal(503, (int)loading.StatusCode);
                Assert.Contains("loading", await loading.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            }
            loadMayFinish.Set();
            await AgentFixture.WaitReady(client);
            Assert.False(loadedOnPoolThread, "the model was loaded on a thread-pool thread");
            Assert.Equal(parallel, app.Services.GetRequiredService<ModelHost>().Runtime!.Parallel);
        }
        finally
        {
            loadMayFinish.Set();
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }
}
