using EdgeTune.Formats.Synthetic;
using EdgeTune.Inference.LlamaCpp;
using EdgeTune.Testing;

namespace EdgeTune.Inference.Tests;

/// <summary>
/// llama.cpp with several sequences in one context (ModelOptions.Parallel): concurrent generations are decoded
/// together, and each gives exactly what it gives alone. (Exact for these models; in general only up to float
/// summation order: llama.cpp's CPU matmul sums a one-token pass with vec_dot and a wider one with tinyBLAS, see
/// device/EdgeTune.Agent/README.md, Batched serving.)
/// </summary>
public sealed class BatchedGenerationTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly string _path;

    public BatchedGenerationTests()
    {
        _path = _dir.File("tiny.gguf");
        TinyLlama.WriteGguf(_path, new TinyLlamaConfig { Embedding = 64, Layers = 2, Heads = 4, KvHeads = 2, FeedForward = 128, ContextLength = 256, Seed = 3 });
    }

    public void Dispose() => _dir.Dispose();

    // The agent's settings (f16 KV cache, flash attention on auto): what is served, not the parity settings.
    private LlamaCppModel Open(int parallel) => LlamaCppRuntime.Default.Load(new ModelOptions { Path = _path, Threads = 2, ContextSize = 256, Parallel = parallel });

    /// <summary>Prompts of different lengths and budgets, so sequences join and leave the batch at different steps.</summary>
    private static List<(string Prompt, SamplingSettings Sampling)> Requests() =>
    [
        ("hello", SamplingSettings.Greedy(24)),
        ("the device model is hello world", SamplingSettings.Greedy(7)),
        ("world", SamplingSettings.Greedy(40)),
        ("the model of the device in the world of hello", SamplingSettings.Greedy(16)),
        ("device", new SamplingSettings(20, 0.9f, 0.95f, 42, [])),
        ("hello hello world", SamplingSettings.Greedy(1)),
        ("in the world", SamplingSettings.Greedy(33)),
        ("model", new SamplingSettings(30, 0, 1, null, ["d"])),
        ("is the world", SamplingSettings.Greedy(12)),
        ("the hello", SamplingSettings.Greedy(28)),
    ];

    [Fact]
    public async Task Concurrent_generations_are_decoded_together_and_answer_as_one_at_a_time()
    {
        var requests = Requests();
        List<GenerationResult> alone;
        using (var one = Open(1))
        {
            Assert.Equal(1, one.Parallel);
            alone = [.. requests.Select(r => one.Generate(one.Tokenize(r.Prompt), r.Sampling, null, default))];
        }
        using var four = Open(4);
        Assert.Equal(4, four.Parallel);
        var streamed = requests.Select(_ => new System.Text.StringBuilder()).ToArray();
        var threads = new HashSet<int>();
        var together = await Task.WhenAll(requests.Select((r, i) =>
            four.GenerateAsync(four.Tokenize(r.Prompt), r.Sampling, piece =>
            {
                streamed[i].Append(piece);
                lock (threads) threads.Add(Environment.CurrentManagedThreadId);
            }, default)));

        Assert.Equal(4, four.PeakSequencesPerPass);
        Assert.Equal([four.InferenceThreadId], threads); // every decode (and its streaming) on the one inference thread
        for (int i = 0; i < requests.Count; i++)
        {
            Assert.Equal(alone[i].Tokens, together[i].Tokens);
            Assert.Equal(alone[i].Text, together[i].Text);
            Assert.Equal(alone[i].Text, streamed[i].ToString());
            Assert.Equal(alone[i].FinishReason, together[i].FinishReason);
            Assert.Equal(alone[i].CompletionTokens, together[i].CompletionTokens);
        }
        Assert.Contains(alone, r => r.CompletionTokens >= 30); // long enough to overlap with several others

        // A synchronous caller on another thread goes through the same scheduler; a second round reuses the slots.
        var again = await Task.WhenAll(requests.Select(r => Task.Run(() => four.Generate(four.Tokenize(r.Prompt), r.Sampling, null, default))));
        Assert.Equal(alone.Select(r => r.Text), again.Select(r => r.Text));
    }

    [Fact]
    public async Task Cancelling_one_generation_leaves_the_others_untouched()
    {
        var prompts = new[] { "hello", "world", "the device", "model is" };
        var sampling = SamplingSettings.Greedy(120);
        using var model = Open(4);
        var alone = new List<GenerationResult>();
        foreach (var p in prompts) alone.Add(await model.GenerateAsync(model.Tokenize(p), sampling, null, default));
        Assert.All(alone, r => Assert.Equal(120, r.CompletionTokens));

        using var cancel = new CancellationTokenSource();
        int pieces = 0;
        var victim = model.GenerateAsync(model.Tokenize(prompts[1]), sampling, _ =>
        {
            if (Interlocked.Increment(ref pieces) == 5) cancel.Cancel(); // mid-answer, on the scheduler's own thread
        }, cancel.Token);
        var others = new[] { 0, 2, 3 }.Select(i => model.GenerateAsync(model.Tokenize(prompts[i]), sampling, null, default)).ToArray();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => victim);
        var answers = await Task.WhenAll(others);
        Assert.Equal([alone[0].Tokens, alone[2].Tokens, alone[3].Tokens], answers.Select(a => a.Tokens));
        Assert.True(model.PeakSequencesPerPass >= 3);

        // The freed slot serves the next request as if nothing had happened there.
        var after = await model.GenerateAsync(model.Tokenize(prompts[1]), sampling, null, default);
        Assert.Equal(alone[1].Tokens, after.Tokens);
    }

    [Fact]
    public async Task A_request_cancelled_while_it_waits_for_a_slot_never_starts_and_a_disposed_model_refuses()
    {
        using var model = Open(2);
        var sampling = SamplingSettings.Greedy(60);
        var busy = Enumerable.Range(0, 2).Select(_ => model.GenerateAsync(model.Tokenize("hello world"), sampling, null, default)).ToArray();
        using var cancel = new CancellationTokenSource();
        bool started = false;
        var waiting = model.GenerateAsync(model.Tokenize("world"), sampling, _ => started = true, cancel.Token);
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);
        await Task.WhenAll(busy);
        Assert.False(started);
        Assert.Throws<PromptTooLongException>(() => model.Generate(new int[model.ContextSize], sampling, null, default));

        var prompt = model.Tokenize("hello");
        model.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => model.GenerateAsync(prompt, sampling, null, default));
    }
}
