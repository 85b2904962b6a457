using EdgeTune.Agent.Serving;
using Microsoft.Extensions.DependencyInjection;

namespace EdgeTune.Agent.Tests;

/// <summary>Runs alone: it measures the process's managed heap.</summary>
[CollectionDefinition(nameof(Alone), DisableParallelization = true)]
public sealed class Alone;

[Collection(nameof(Alone))]
public sealed class FuzzAndLoadTests
{
    [Fact]
    public async Task A_seeded_slice_of_mutated_requests_each_gets_a_clear_answer_and_the_agent_stays_up()
    {
        var agent = new AgentFixture(8, null, withAdapter: true);
        await agent.InitializeAsync();
        try
        {
            // The full run (10,000+ requests) is `dotnet run --project tests/EdgeTune.Agent.Benchmarks -- fuzz`.
            var fuzzer = new HttpFuzzer(agent.BaseAddress, TinyAgentModel.Token, seed: 13);
            var (byStatus, problems) = await fuzzer.RunAsync(400, 4, TimeSpan.FromSeconds(120), CancellationToken.None);
            Assert.True(problems.Count == 0, $"{problems.Count} problems:\n" + string.Join("\n", problems.Take(10)));
            Assert.True(byStatus.Keys.Count(s => s is >= 400 and < 500) >= 5, "the mutations reached too few kinds of refusal: " + string.Join(", ", byStatus));
            Assert.True(byStatus.GetValueOrDefault(200) > 0, "no mutated request was still valid");
            var (status, _) = await agent.Client.PostJson("/v1/chat/completions", new { model = "tiny", max_tokens = 2, messages = new[] { new { role = "user", content = "still there?" } } });
            Assert.Equal(200, status);
        }
        finally
        {
            await agent.DisposeAsync();
        }
    }

    [Fact]
    public async Task Sixty_four_clients_get_only_200_or_429_with_Retry_After_and_every_answer_is_in_the_field_log()
    {
        var agent = new AgentFixture(queueCapacity: 8, null);
        await agent.InitializeAsync();
        try
        {
            var queue = agent.App.Services.GetRequiredService<RequestQueue>();
            // A warm-up round, then the heap is measured around the real one.
            await AgentLoad.RunAsync(agent.BaseAddress, TinyAgentModel.Token, 64, 1, 4);
            long before = GC.GetTotalMemory(forceFullCollection: true);
            var result = await AgentLoad.RunAsync(agent.BaseAddress, TinyAgentModel.Token, 64, 4, 4, () => queue.Depth);
            long after = GC.GetTotalMemory(forceFullCollection: true);

            Assert.True(result.Unexpected.Count == 0, string.Join("\n", result.Unexpected.Take(5)));
            Assert.Equal(256, result.Answered.Count + result.Rejected);
            Assert.True(result.Answered.Count > 0);
            Assert.InRange(result.MaxQueueDepth, 0, queue.Capacity);
            Assert.True(after - before < 64L << 20, $"managed heap grew by {(after - before) >> 20} MiB over 256 requests");

            // Every answered completion (both rounds) is in the field log, and nothing else is.
            var logged = (await agent.Client.DrainFieldData()).Select(e => e.Metadata.Id).ToHashSet();
            Assert.Subset(logged, result.Answered.ToHashSet());
            Assert.Equal(logged.Count, agent.App.Services.GetRequiredService<EdgeTune.Agent.FieldLog.FieldLogStore>().Count);
        }
        finally
        {
            await agent.DisposeAsync();
        }
    }
}
