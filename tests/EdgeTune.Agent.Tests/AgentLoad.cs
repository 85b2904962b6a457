using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;

namespace EdgeTune.Agent.Tests;

/// <summary>
/// Concurrent clients, each sending chat completions one after another, as fast as answers come. Shared by the
/// load test (asserts) and the benchmark's <c>load</c> and <c>concurrent</c> commands (latency percentiles and
/// rejections; aggregate tokens/s and the answers).
/// </summary>
public static class AgentLoad
{
    /// <param name="Answered">Ids of the completions answered 200.</param>
    /// <param name="Unexpected">Anything but 200, or 429 with Retry-After: status and body.</param>
    /// <param name="Answers">What each answered request asked and got, with its completion tokens.</param>
    public sealed record Result(List<string> Answered, int Rejected, List<string> Unexpected, List<double> LatenciesMs, int MaxQueueDepth, List<double> AnsweredLatenciesMs,
        List<Answer> Answers)
    {
        public int CompletionTokens => Answers.Sum(a => a.CompletionTokens);
    }

    public sealed record Answer(string Prompt, string Text, int CompletionTokens);

    /// <param name="prompt">The user message of client c's i-th request; "client c request i" by default.</param>
    /// <param name="model">The served model's name (the agent refuses another).</param>
    /// <param name="temperature">0: greedy (the same prompt gets the same answer); by default sampled with a seed per request.</param>
    public static async Task<Result> RunAsync(Uri server, string token, int clients, int requestsPerClient, int maxTokens, Func<int>? queueDepth = null,
        Func<int, int, string>? prompt = null, float temperature = 0.7f, string model = "tiny")
    {
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = clients }) { BaseAddress = server, Timeout = TimeSpan.FromMinutes(5) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        var answered = new List<string>();
        var unexpected = new List<string>();
        var latencies = new List<double>();
        var answeredLatencies = new List<double>();
        var answers = new List<Answer>();
        int rejected = 0, maxDepth = 0;
        using var done = new CancellationTokenSource();
        var sampler = queueDepth is null ? Task.CompletedTask : Task.Run(async () =>
        {
            while (!done.IsCancellationRequested)
            {
                int depth = queueDepth();
                if (depth > Volatile.Read(ref maxDepth)) Volatile.Write(ref maxDepth, depth);
                try { await Task.Delay(1, done.Token); } catch (OperationCanceledException) { }
            }
        });
        async Task Client(int c)
        {
            for (int i = 0; i < requestsPerClient; i++)
            {
                string content = prompt?.Invoke(c, i) ?? $"client {c} request {i}";
                long start = Stopwatch.GetTimestamp();
                using var response = await http.PostAsJsonAsync("/v1/chat/completions", new
                {
                    model, max_tokens = maxTokens, temperature, seed = c * 1000 + i,
                    messages = new[] { new { role = "user", content } },
                });
                string body = await response.Content.ReadAsStringAsync();
                double ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                lock (answered)
                {
                    latencies.Add(ms);
                    if ((int)response.StatusCode == 200)
                    {
                        var root = JsonDocument.Parse(body).RootElement;
                        answered.Add(root.GetProperty("id").GetString()!);
                        answeredLatencies.Add(ms);
                        answers.Add(new Answer(content, root.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!,
                            root.GetProperty("usage").GetProperty("completion_tokens").GetInt32()));
                    }
                    else if ((int)response.StatusCode == 429 && response.Headers.RetryAfter?.Delta is { } wait && wait >= TimeSpan.FromSeconds(1)) rejected++;
                    else unexpected.Add($"{(int)response.StatusCode} {response.Headers.RetryAfter} {body}");
                }
            }
        }
        await Task.WhenAll(Enumerable.Range(0, clients).Select(c => Task.Run(() => Client(c))));
        await done.CancelAsync();
        await sampler;
        return new Result(answered, rejected, unexpected, latencies, maxDepth, answeredLatencies, answers);
    }

    public static double Percentile(IReadOnlyList<double> values, double p)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.Order().ToArray();
        return sorted[(int)Math.Min(sorted.Length - 1, Math.Ceiling(sorted.Length * p) - 1)];
    }
}
