using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;

namespace EdgeTune.Agent.Tests;

/// <summary>
/// Concurrent clients, each sending chat completions one after another, as fast as answers come. Shared by the
/// load test (asserts) and the benchmark's <c>load</c> command (prints latency percentiles and rejections).
/// </summary>
public static class AgentLoad
{
    /// <param name="Answered">Ids of the completions answered 200.</param>
    /// <param name="Unexpected">Anything but 200, or 429 with Retry-After: status and body.</param>
    public sealed record Result(List<string> Answered, int Rejected, List<string> Unexpected, List<double> LatenciesMs, int MaxQueueDepth, List<double> AnsweredLatenciesMs);

    public static async Task<Result> RunAsync(Uri server, string token, int clients, int requestsPerClient, int maxTokens, Func<int>? queueDepth = null)
    {
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = clients }) { BaseAddress = server, Timeout = TimeSpan.FromMinutes(5) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        var answered = new List<string>();
        var unexpected = new List<string>();
        var latencies = new List<double>();
        var answeredLatencies = new List<double>();
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
                long start = Stopwatch.GetTimestamp();
                using var response = await http.PostAsJsonAsync("/v1/chat/completions", new
                {
                    model = "tiny", max_tokens = maxTokens, temperature = 0.7, seed = c * 1000 + i,
                    messages = new[] { new { role = "user", content = $"client {c} request {i}" } },
                });
                string body = await response.Content.ReadAsStringAsync();
                double ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                lock (answered)
                {
                    latencies.Add(ms);
                    if ((int)response.StatusCode == 200)
                    {
                        answered.Add(JsonDocument.Parse(body).RootElement.GetProperty("id").GetString()!);
                        answeredLatencies.Add(ms);
                    }
                    else if ((int)response.StatusCode == 429 && response.Headers.RetryAfter?.Delta is { } wait && wait >= TimeSpan.FromSeconds(1)) rejected++;
                    else unexpected.Add($"{(int)response.StatusCode} {response.Headers.RetryAfter} {body}");
                }
            }
        }
        await Task.WhenAll(Enumerable.Range(0, clients).Select(c => Task.Run(() => Client(c))));
        await done.CancelAsync();
        await sampler;
        return new Result(answered, rejected, unexpected, latencies, maxDepth, answeredLatencies);
    }

    public static double Percentile(IReadOnlyList<double> values, double p)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.Order().ToArray();
        return sorted[(int)Math.Min(sorted.Length - 1, Math.Ceiling(sorted.Length * p) - 1)];
    }
}
