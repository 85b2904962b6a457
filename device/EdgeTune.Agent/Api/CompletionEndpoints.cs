using System.Diagnostics;
using System.Text.Json;
using System.Threading.Channels;
using EdgeTune.Agent.Config;
using EdgeTune.Agent.FieldLog;
using EdgeTune.Agent.Serving;
using EdgeTune.Formats.FieldData;
using EdgeTune.Inference;

namespace EdgeTune.Agent.Api;

/// <summary>POST /v1/chat/completions and /v1/completions, plain and SSE streaming.</summary>
internal sealed class CompletionEndpoints(AgentConfig config, ModelHost host, RequestQueue queue, FieldLogStore? log, AgentMetrics metrics, Redactor redactor,
    KnowledgeRetriever? retriever = null, EdgeTune.Core.Drift.DriftMonitor? drift = null)
{
    /// <summary>The drift monitor ([drift] with a fingerprint), fed by every completion and rating; null when off.</summary>
    public EdgeTune.Core.Drift.DriftMonitor? Drift => drift;

    /// <summary>The most recent completion in the field log (what a feedback button rates).</summary>
    public volatile string? LastLoggedId;

    public async Task Handle(HttpContext context, bool chat)
    {
        var aborted = context.RequestAborted;
        using var document = await CompletionRequest.ReadJsonAsync(context.Request, aborted);
        var request = CompletionRequest.Parse(document.RootElement, chat);
        var runtime = host.Runtime ?? throw new ApiException(503, host.LoadError is not null ? "the model did not load (the agent's log has the reason)" : "the model is still loading", "server_error", "model_not_ready");
        if (request.Model is { } name && name != runtime.ModelName)
            throw new ApiException(400, $"unknown model '{name}' (this agent serves '{runtime.ModelName}')", code: "model_not_found", param: "model");

        var clock = Stopwatch.StartNew();
        // [retrieval]: chat completions are served with knowledge chunks in the system turn (the request is not changed);
        // when the prompt would leave too little room for the answer, the least relevant chunks are left out first.
        var messages = request.Messages;
        IReadOnlyList<string>? chunkIds = null;
        string prompt;
        int[] tokens;
        if (chat && retriever?.Retrieve(request.Messages!, text => runtime.Tokenize(text, addSpecial: false, parseSpecial: false).Length) is { } chunks)
        {
            int answerRoom = Math.Min(request.MaxTokens ?? config.Model.DefaultMaxTokens, runtime.ContextSize / 2);
            for (int n = chunks.Count; ; n--)
            {
                messages = KnowledgeRetriever.Place(request.Messages!, chunks.Take(n).ToList());
                prompt = runtime.ApplyChatTemplate(messages);
                tokens = runtime.Tokenize(prompt);
                chunkIds = chunks.Take(n).Select(c => c.ChunkId).ToList();
                if (n == 0 || tokens.Length + answerRoom <= runtime.ContextSize) break;
            }
        }
        else
        {
            prompt = chat ? runtime.ApplyChatTemplate(request.Messages!) : request.Prompt!;
            tokens = runtime.Tokenize(prompt);
        }
        int room = runtime.ContextSize - tokens.Length;
        if (room < 1)
            throw new ApiException(400, $"the prompt has {tokens.Length} tokens; the model's context holds {runtime.ContextSize}", code: "context_length_exceeded", param: chat ? "messages" : "prompt");
        int maxTokens = Math.Min(request.MaxTokens ?? config.Model.DefaultMaxTokens, room);
        var sampling = new SamplingSettings(maxTokens, request.Temperature, request.TopP, request.Seed, request.Stop);

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(aborted);
        timeout.CancelAfter(TimeSpan.FromSeconds(config.Server.RequestTimeoutSeconds));
        var ct = timeout.Token;

        RequestQueue.Lease? lease;
        try
        {
            lease = await queue.EnterAsync(ct);
        }
        catch (OperationCanceledException) when (!aborted.IsCancellationRequested)
        {
            throw new ApiException(504, $"the request waited longer than server.request_timeout_seconds ({config.Server.RequestTimeoutSeconds} s) for the model", "timeout_error", "timeout");
        }
        if (lease is null)
        {
            await new ApiException(429, $"the request queue is full ({queue.Capacity} waiting); retry later", "rate_limit_error", "queue_full").WriteAsync(context, queue.RetryAfterSeconds);
            return;
        }

        string id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        string objectName = chat ? "chat.completion" : "text_completion";
        using (lease)
        {
            if (!request.Stream)
            {
                GenerationResult result;
                try
                {
                    result = await runtime.GenerateAsync(tokens, sampling, _ => { }, ct);
                }
                catch (ObjectDisposedException)
                {
                    throw new ApiException(503, "the agent is stopping", "server_error", "model_not_ready");
                }
                catch (OperationCanceledException) when (!aborted.IsCancellationRequested)
                {
                    throw new ApiException(504, $"the request took longer than server.request_timeout_seconds ({config.Server.RequestTimeoutSeconds} s)", "timeout_error", "timeout");
                }
                finally
                {
                    lease.Dispose(); // the slot is free once the model is done; the record names the adapter that answered
                }
                Record(id, chat, request, messages, chunkIds, runtime, result.Adapter, sampling, result, clock.Elapsed.TotalMilliseconds);
                object choice = chat
                    ? new { index = 0, message = new { role = "assistant", content = result.Text }, logprobs = (object?)null, finish_reason = result.FinishReason }
                    : new { index = 0, text = result.Text, logprobs = (object?)null, finish_reason = result.FinishReason };
                await context.Response.WriteAsJsonAsync(new
                {
                    id,
                    @object = objectName,
                    created,
                    model = runtime.ModelName,
                    choices = new[] { choice },
                    usage = Usage(result),
                }, aborted);
                return;
            }

            // SSE: pieces flow from the generating thread through a channel to the response.
            var pieces = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
            async Task<GenerationResult> Generate()
            {
                try { return await runtime.GenerateAsync(tokens, sampling, piece => pieces.Writer.TryWrite(piece), ct); }
                finally
                {
                    pieces.Writer.TryComplete();
                    lease.Dispose();
                }
            }
            var generation = Generate();
            context.Response.ContentType = "text/event-stream";
            context.Response.Headers.CacheControl = "no-cache";
            string chunkObject = chat ? "chat.completion.chunk" : "text_completion";
            try
            {
                if (chat) await Send(context, Chunk(id, chunkObject, created, runtime.ModelName, chat, null, role: true), aborted);
                await foreach (var piece in pieces.Reader.ReadAllAsync(aborted))
                    await Send(context, Chunk(id, chunkObject, created, runtime.ModelName, chat, piece), aborted);
                var result = await generation;
                // The record is durable before the final event: a client that saw [DONE] has a logged completion.
                Record(id, chat, request, messages, chunkIds, runtime, result.Adapter, sampling, result, clock.Elapsed.TotalMilliseconds);
                await Send(context, Chunk(id, chunkObject, created, runtime.ModelName, chat, null, finish: result.FinishReason, usage: Usage(result)), aborted);
                await context.Response.WriteAsync("data: [DONE]\n\n", aborted);
                await context.Response.Body.FlushAsync(aborted);
            }
            catch (OperationCanceledException)
            {
                try { await generation; } catch (OperationCanceledException) { }
                if (!aborted.IsCancellationRequested)
                    await Send(context, new { error = new { message = "the request took longer than server.request_timeout_seconds", type = "timeout_error", code = "timeout" } }, CancellationToken.None);
            }
        }
    }

    private static object Usage(GenerationResult r) => new { prompt_tokens = r.PromptTokens, completion_tokens = r.CompletionTokens, total_tokens = r.PromptTokens + r.CompletionTokens };

    private static object Chunk(string id, string objectName, long created, string model, bool chat, string? text, bool role = false, string? finish = null, object? usage = null)
    {
        object choice = chat
            ? new { index = 0, delta = role ? new { role = "assistant", content = "" } : (object)(text is null ? new { } : new { content = text }), logprobs = (object?)null, finish_reason = finish }
            : new { index = 0, text = text ?? "", logprobs = (object?)null, finish_reason = finish };
        return new { id, @object = objectName, created, model, choices = new[] { choice }, usage };
    }

    private static async Task Send(HttpContext context, object payload, CancellationToken ct)
    {
        await context.Response.WriteAsync("data: " + JsonSerializer.Serialize(payload) + "\n\n", ct);
        await context.Response.Body.FlushAsync(ct);
    }

    /// <param name="served">The conversation as the model was shown it (with [retrieval], the chunks in the system turn).</param>
    /// <param name="chunkIds">With [retrieval], the knowledge chunks shown (recorded as "retrieved_chunks" beside the sampling settings).</param>
    private void Record(string id, bool chat, CompletionRequest request, IReadOnlyList<Models.Chat.ChatMessage>? served, IReadOnlyList<string>? chunkIds,
        IInferenceModel runtime, string? adapter, SamplingSettings sampling, GenerationResult result, double latencyMs)
    {
        metrics.Generation(latencyMs / 1000, result.TimeToFirstTokenMs / 1000, result.PromptTokens, result.CompletionTokens, (result.GenerationMs - result.TimeToFirstTokenMs) / 1000);
        if (drift is not null)
        {
            // The prompt as the fingerprint counts it: the non-assistant messages' text, in the model's tokens, no markers.
            string text = chat ? string.Join("\n", request.Messages!.Where(m => m.Role != "assistant").Select(m => m.Content)) : request.Prompt!;
            drift.Observe(id, runtime.Tokenize(text, addSpecial: false, parseSpecial: false), result.Text);
        }
        if (log is null || request.LogOptOut) return;
        if (config.FieldLog.SampleRate < 1 && Random.Shared.NextDouble() >= config.FieldLog.SampleRate) return;
        var messages = chat
            ? served!.Select(m => new FieldMessage(m.Role, redactor.Apply(m.Content))).ToList()
            : [new FieldMessage("user", redactor.Apply(request.Prompt!))];
        var settings = new Dictionary<string, object?>
        {
            ["max_tokens"] = sampling.MaxTokens, ["temperature"] = sampling.Temperature, ["top_p"] = sampling.TopP,
            ["seed"] = sampling.Seed, ["stop"] = sampling.Stop,
        };
        if (chunkIds is not null)
        {
            settings["retrieval_index"] = retriever?.IndexName;
            settings["retrieved_chunks"] = chunkIds;
        }
        long? stored = log.Add(new CompletionRecord(id, DateTimeOffset.UtcNow, config.FieldLog.DeviceId, chat ? "chat" : "completion", runtime.ModelName, adapter,
            messages, redactor.Apply(result.Text), settings,
            latencyMs, result.TimeToFirstTokenMs, result.PromptTokens, result.CompletionTokens, result.FinishReason));
        if (stored is not null) LastLoggedId = id; // null: refused, the log is full of unacknowledged records
    }
}
