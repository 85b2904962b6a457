using System.Net.Http.Headers;
using EdgeTune.Agent.Config;
using EdgeTune.Agent.Serving;

namespace EdgeTune.Agent.Bundles;

/// <summary>
/// <c>edgetune-agent install B.etb --config agent.toml [--allow-downgrade]</c>. When the agent of that configuration is
/// running, the bundle goes to its admin endpoint (the running agent swaps models without a restart); when it is not,
/// the install runs here and the next start serves the new slot. Prints one line; exit 0 installed, 1 otherwise.
/// </summary>
public static class InstallCommand
{
    public static async Task<int> RunAsync(string bundlePath, string configPath, bool allowDowngrade, TextWriter stdout, TextWriter stderr)
    {
        var config = AgentConfig.Load(configPath, checkFiles: false);
        if (!File.Exists(bundlePath)) { stderr.WriteLine($"edgetune-agent: {bundlePath}: no such bundle file"); return 1; }
        var result = await TryRunningAgentAsync(config, bundlePath, allowDowngrade, stderr);
        if (result is null)
        {
            using var loggers = LoggerFactory.Create(b => b.AddSimpleConsole(o => { o.SingleLine = true; }).AddFilter(l => l >= LogLevel.Information)
                .Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace));
            using var server = new OfflineSlotServer(c => ModelHost.Open(c.Model));
            var installer = new BundleInstaller(config, server, loggers.CreateLogger("edgetune-agent install"), new BundleStatus());
            result = await installer.InstallAsync(bundlePath, allowDowngrade, CancellationToken.None);
        }
        (result.Ok ? stdout : stderr).WriteLine(result.Ok ? BundleEndpoints.Line(result) : $"edgetune-agent: {bundlePath}: {BundleEndpoints.Line(result)}");
        return result.Ok ? 0 : 1;
    }

    /// <summary>The running agent's answer, or null when no agent answers at server.listen.</summary>
    private static async Task<InstallResult?> TryRunningAgentAsync(AgentConfig config, string bundlePath, bool allowDowngrade, TextWriter stderr)
    {
        var listen = new UriBuilder(config.Server.Listen.Replace("://+", "://127.0.0.1", StringComparison.Ordinal).Replace("://*", "://127.0.0.1", StringComparison.Ordinal));
        if (listen.Host is "0.0.0.0" or "[::]" or "::") listen.Host = "127.0.0.1";
        // Only ever this machine's own agent: its certificate may be self-signed.
        using var handler = new HttpClientHandler { ServerCertificateCustomValidationCallback = (_, _, _, _) => true };
        using var client = new HttpClient(handler) { BaseAddress = listen.Uri, Timeout = Timeout.InfiniteTimeSpan };
        try
        {
            using var probe = new CancellationTokenSource(TimeSpan.FromSeconds(3));
            using var _ = await client.GetAsync("/health", probe.Token);
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException)
        {
            return null;
        }
        stderr.WriteLine($"edgetune-agent: the agent is running at {listen.Uri}; installing through it");
        await using var body = File.OpenRead(bundlePath);
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/admin/bundles" + (allowDowngrade ? "?allow_downgrade=true" : "")) { Content = new StreamContent(body) };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", config.Server.ApiToken);
        using var response = await client.SendAsync(request);
        string text = await response.Content.ReadAsStringAsync();
        return BundleEndpoints.Parse(text) ?? new InstallResult(InstallResult.Refused, null, null, $"the agent answered {(int)response.StatusCode}: {text.ReplaceLineEndings(" ")}", "http_error");
    }
}
