using EdgeTune.Models.Chat;
using EdgeTune.Inference;
using System.Text.Json;
using EdgeTune.Agent.Serving;
using EdgeTune.Bundles;

namespace EdgeTune.Agent.Bundles;

/// <summary>
/// What "healthy" means for a freshly switched slot: the model loaded, the canary prompt gets a non-empty answer
/// within the deadline, and, when the bundle carries a scored set, enough of its prompts are answered exactly.
/// Greedy decoding, so the verdict does not depend on a seed.
/// </summary>
public static class HealthCheck
{
    public const int CanaryTokens = 16;
    public const int MaxScoredItems = 200;

    /// <summary>Throws <see cref="HealthCheckException"/> with the reason when the slot is not healthy; returns the scored set's score (null: the bundle has none).</summary>
    /// <param name="exclusive">Runs a generation with the runtime to itself (the agent's request queue).</param>
    public static async Task<double?> CheckAsync(IInferenceModel runtime, string canaryPrompt, HealthSet? scored, string slotFolder, TimeSpan deadline,
        Func<Func<Task<GenerationResult>>, CancellationToken, Task<GenerationResult>> exclusive, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(deadline);
        try
        {
            var canary = await GenerateAsync(runtime, canaryPrompt, CanaryTokens, exclusive, timeout.Token);
            if (canary.CompletionTokens == 0 || canary.Text.Trim().Length == 0)
                throw new HealthCheckException($"the canary prompt got an empty answer ({canary.FinishReason})");
            if (scored is null) return null;
            var items = ReadScoredSet(Path.Combine(slotFolder, scored.Path));
            int right = 0;
            foreach (var (prompt, expected) in items)
            {
                var answer = await GenerateAsync(runtime, prompt, Math.Max(8, runtime.Tokenize(expected).Length + 4), exclusive, timeout.Token);
                if (Normalise(answer.Text) == Normalise(expected)) right++;
            }
            double score = items.Count == 0 ? 0 : (double)right / items.Count;
            if (score < scored.Threshold)
                throw new HealthCheckException($"the scored set {scored.Path} scored {right}/{items.Count} = {score:0.00}, below the bundle's threshold {scored.Threshold:0.00}");
            return score;
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new HealthCheckException($"the health check did not finish within bundles.health_timeout_seconds ({deadline.TotalSeconds:0.###} s)");
        }
        catch (PromptTooLongException e)
        {
            throw new HealthCheckException($"the canary does not fit the model's context ({e.Message})");
        }
    }

    private static Task<GenerationResult> GenerateAsync(IInferenceModel runtime, string prompt, int maxTokens,
        Func<Func<Task<GenerationResult>>, CancellationToken, Task<GenerationResult>> exclusive, CancellationToken ct)
    {
        string text;
        try { text = runtime.ApplyChatTemplate([new ChatMessage("user", prompt)]); }
        catch (InvalidOperationException) { text = prompt; } // a model without a chat template answers the bare prompt
        var tokens = runtime.Tokenize(text);
        if (tokens.Length + 1 > runtime.ContextSize)
            throw new HealthCheckException($"the canary prompt has {tokens.Length} tokens; the model's context holds {runtime.ContextSize}");
        var sampling = new SamplingSettings(Math.Min(maxTokens, runtime.ContextSize - tokens.Length), 0f, 1f, 0, []);
        return exclusive(() => runtime.GenerateAsync(tokens, sampling, _ => { }, ct), ct);
    }

    private static string Normalise(string s) => string.Join(' ', s.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));

    private static List<(string Prompt, string Expected)> ReadScoredSet(string path)
    {
        var items = new List<(string, string)>();
        int line = 0;
        foreach (var text in File.ReadLines(path))
        {
            line++;
            if (text.Trim().Length == 0) continue;
            try
            {
                using var doc = JsonDocument.Parse(text);
                var root = doc.RootElement;
                if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("prompt", out var p) && p.ValueKind == JsonValueKind.String
                    && root.TryGetProperty("expected", out var e) && e.ValueKind == JsonValueKind.String)
                    items.Add((p.GetString()!, e.GetString()!));
                else throw new HealthCheckException($"{path}:{line}: expected {{\"prompt\": TEXT, \"expected\": TEXT}}");
            }
            catch (JsonException) { throw new HealthCheckException($"{path}:{line}: not valid JSON"); }
            if (items.Count > MaxScoredItems) throw new HealthCheckException($"{path}: more than {MaxScoredItems} items (the health set is meant to be small)");
        }
        return items;
    }
}

/// <summary>A slot that is not healthy: the message is the reason logged, shown in /metrics and answered.</summary>
public sealed class HealthCheckException : Exception
{
    public HealthCheckException(string message) : base(message) { }
    public HealthCheckException() : base("the health check failed") { }
    public HealthCheckException(string message, Exception inner) : base(message, inner) { }
}
