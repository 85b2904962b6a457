using System.Net.Http.Json;
using EdgeTune.Agent.Config;
using EdgeTune.Agent.Serving;
using Microsoft.Extensions.DependencyInjection;

namespace EdgeTune.Agent.Tests;

/// <summary>The real model behind a gate the test opens, so requests can be held in the queue deterministically.</summary>
internal sealed class GatedRuntime(IInferenceModel inner) : IInferenceModel
{
    public IInferenceModel Inner => inner;
    public ManualResetEventSlim Gate { get; } = new(false);
    public SemaphoreSlim Entered { get; } = new(0);
    public SemaphoreSlim Cancelled { get; } = new(0);

    /// <summary>Dispose waits for this gate (set by default), so a test can watch the agent while its model unloads.</summary>
    public ManualResetEventSlim DisposeGate { get; } = new(true);
    public SemaphoreSlim Disposing { get; } = new(0);

    public string ModelName => inner.ModelName;
    public string Description => inner.Description;
    public IInferenceRuntime Runtime => inner.Runtime;
    public InferenceCapabilities Capabilities => inner.Capabilities;
    public int ContextSize => inner.ContextSize;
    public int VocabularySize => inner.VocabularySize;
    public int? BosId => inner.BosId;
    public IReadOnlyList<string> Adapters => inner.Adapters;
    public string? ActiveAdapter => inner.ActiveAdapter;
    public int Parallel => inner.Parallel;
    public string? EndOfTurnText => inner.EndOfTurnText;
    public void SetAdapter(string? name) => inner.SetAdapter(name);
    public string ApplyChatTemplate(IReadOnlyList<EdgeTune.Models.Chat.ChatMessage> messages, bool addAssistant = true) => inner.ApplyChatTemplate(messages, addAssistant);
    public int[] Tokenize(string text, bool addSpecial = true, bool parseSpecial = true) => inner.Tokenize(text, addSpecial, parseSpecial);
    public float[] Logits(int[] tokens, int from = 0) => inner.Logits(tokens, from);
    public T Run<T>(Func<IDecodeSession, T> work, CancellationToken cancellationToken = default) => inner.Run(work, cancellationToken);

    /// <summary>Milliseconds each streamed piece of a generation is held on the runtime's thread (slows every sequence decoded with it).</summary>
    public Func<SamplingSettings, int> PieceDelayMs { get; set; } = _ => 0;

    public GenerationResult Generate(int[] promptTokens, SamplingSettings sampling, Action<string>? onText, CancellationToken cancellationToken)
    {
        if (PieceDelayMs(sampling) is > 0 and var delay)
        {
            var inner = onText;
            onText = piece =>
            {
                Thread.Sleep(delay);
                inner?.Invoke(piece);
            };
        }
        Entered.Release();
        try
        {
            Gate.Wait(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            Cancelled.Release();
            throw;
        }
        return inner.Generate(promptTokens, sampling, onText, cancellationToken);
    }

    public Task<GenerationResult> GenerateAsync(int[] promptTokens, SamplingSettings sampling, Action<string>? onText, CancellationToken cancellationToken) =>
        Task.Run(() => Generate(promptTokens, sampling, onText, cancellationToken), cancellationToken);

    public void Dispose()
    {
        Disposing.Release();
        DisposeGate.Wait();
        inner.Dispose();
    }
}

public sealed class QueueTests
{
    [Fact]
    public async Task Full_queue_answers_429_with_Retry_After_and_the_held_requests_complete()
    {
        GatedRuntime? gated = null;
        var agent = new AgentFixture(queueCapacity: 1, c => gated = new GatedRuntime(ModelHost.Open(c.Model)));
        await agent.InitializeAsync();
        try
        {
            var body = new { model = "tiny", prompt = "hello", max_tokens = 2 };
            var first = agent.Client.PostAsJsonAsync("/v1/completions", body);   // generating (held at the gate)
            Assert.True(await gated!.Entered.WaitAsync(TimeSpan.FromSeconds(20)));
            var second = agent.Client.PostAsJsonAsync("/v1/completions", body);  // waiting in the queue
            var queue = agent.App.Services.GetRequiredService<RequestQueue>();
            for (int i = 0; i < 400 && queue.Depth < 1; i++) await Task.Delay(25);
            Assert.Equal(1, queue.Depth);

            using var third = await agent.Client.PostAsJsonAsync("/v1/completions", body);
            Assert.Equal(429, (int)third.StatusCode);
            Assert.True(third.Headers.RetryAfter?.Delta >= TimeSpan.FromSeconds(1));
            var error = System.Text.Json.JsonDocument.Parse(await third.Content.ReadAsStringAsync()).RootElement;
            Http.AssertOpenAiError(error, "queue_full");

            gated.Gate.Set();
            using var r1 = await first;
            using var r2 = await second;
            Assert.Equal(200, (int)r1.StatusCode);
            Assert.Equal(200, (int)r2.StatusCode);
        }
        finally
        {
            gated?.Gate.Set();
            await agent.DisposeAsync();
        }
    }

    [Fact]
    public async Task Client_disconnect_cancels_the_generation_and_frees_the_slot()
    {
        GatedRuntime? gated = null;
        var agent = new AgentFixture(queueCapacity: 0, c => gated = new GatedRuntime(ModelHost.Open(c.Model)));
        await agent.InitializeAsync();
        try
        {
            using var gone = new CancellationTokenSource();
            var request = agent.Client.PostAsJsonAsync("/v1/completions", new { model = "tiny", prompt = "hello", max_tokens = 2 }, gone.Token);
            Assert.True(await gated!.Entered.WaitAsync(TimeSpan.FromSeconds(20)));
            gone.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => request);
            Assert.True(await gated.Cancelled.WaitAsync(TimeSpan.FromSeconds(10)), "the generation was not cancelled");

            gated.Gate.Set();
            var queue = agent.App.Services.GetRequiredService<RequestQueue>();
            for (int i = 0; i < 200 && queue.Busy; i++) await Task.Delay(25);
            using var next = await agent.Client.PostAsJsonAsync("/v1/completions", new { model = "tiny", prompt = "hello", max_tokens = 2 });
            Assert.Equal(200, (int)next.StatusCode);
        }
        finally
        {
            gated?.Gate.Set();
            await agent.DisposeAsync();
        }
    }

    [Fact]
    public async Task Oversized_body_is_413_and_the_service_stays_up()
    {
        var agent = new AgentFixture(8, null, extra: "");
        await agent.InitializeAsync();
        try
        {
            string big = "{\"model\":\"tiny\",\"prompt\":\"" + new string('a', 1_200_000) + "\"}";
            var (status, body) = await agent.Client.PostRaw("/v1/completions", big);
            Assert.Equal(413, status);
            Http.AssertOpenAiError(body, "request_too_large");
            var (ok, _) = await agent.Client.PostJson("/v1/completions", new { model = "tiny", prompt = "hi", max_tokens = 1 });
            Assert.Equal(200, ok);
        }
        finally
        {
            await agent.DisposeAsync();
        }
    }

    [Fact]
    public async Task Health_is_503_while_the_model_loads()
    {
        using var loading = new ManualResetEventSlim(false);
        var agent = new AgentFixture(queueCapacity: 1, c => { loading.Wait(); return ModelHost.Open(c.Model); });
        var start = agent.InitializeAsync();
        try
        {
            using var probe = new HttpClient();
            // The fixture waits for readiness; meanwhile the server answers 503.
            for (int i = 0; i < 400 && agent.App is null; i++) await Task.Delay(25);
            Uri? address = null;
            for (int i = 0; i < 400 && address is null; i++)
            {
                try { address = agent.App?.Urls.Select(u => new Uri(u)).FirstOrDefault(u => u.Port != 0); } catch (InvalidOperationException) { }
                if (address is null) await Task.Delay(25);
            }
            Assert.NotNull(address);
            using var health = await probe.GetAsync(new Uri(address, "/health"));
            Assert.Equal(503, (int)health.StatusCode);
            loading.Set();
            await start;
            using var ready = await probe.GetAsync(new Uri(address, "/health"));
            Assert.Equal(200, (int)ready.StatusCode);
        }
        finally
        {
            loading.Set();
            await start;
            await agent.DisposeAsync();
        }
    }
}
