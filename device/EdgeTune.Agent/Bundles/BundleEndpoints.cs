using System.Text.Json;
using EdgeTune.Agent.Api;
using EdgeTune.Agent.Config;
using Microsoft.AspNetCore.Http.Features;

namespace EdgeTune.Agent.Bundles;

/// <summary>POST /v1/admin/bundles: the body is the .etb; the answer is the install's outcome.</summary>
public static class BundleEndpoints
{
    /// <summary>The installer behind the running agent (its ModelHost and request queue), the outcome counters, and the post-restart health check.</summary>
    public static void AddServices(IServiceCollection services, AgentConfig config)
    {
        var status = new BundleStatus(new SlotStore(config.Bundles.StateDir));
        services.AddSingleton(status);
        services.AddSingleton(sp => new BundleInstaller(config,
            new HostSlotServer(sp.GetRequiredService<Serving.ModelHost>(), sp.GetRequiredService<Serving.RequestQueue>()),
            sp.GetRequiredService<ILoggerFactory>().CreateLogger("EdgeTune.Agent.Bundles"), status));
        services.AddHostedService<BundleConfirmService>();
    }

    public static void Map(WebApplication app, AgentConfig config)
    {
        var installer = app.Services.GetRequiredService<BundleInstaller>();
        app.MapPost("/v1/admin/bundles", async (HttpContext c) =>
        {
            if (c.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit) limit.MaxRequestBodySize = config.Bundles.MaxBundleBytes;
            if (c.Request.ContentLength is { } length && length > config.Bundles.MaxBundleBytes)
                throw new ApiException(413, $"the bundle is {length} bytes, more than bundles.max_bundle_bytes ({config.Bundles.MaxBundleBytes})", code: "request_too_large");
            string incoming = Path.Combine(installer.Store.StateDir, "incoming");
            Directory.CreateDirectory(incoming);
            if (c.Request.ContentLength is { } size && new DriveInfo(incoming).AvailableFreeSpace < 2 * size + BundleInstaller.SpaceMargin)
                throw new ApiException(507, $"not enough free space in {incoming} for a {size}-byte bundle and its unpacked copy", code: "no_space");
            string upload = Path.Combine(incoming, $"upload-{Guid.NewGuid():N}.etb");
            try
            {
                await using (var file = new FileStream(upload, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true))
                    await c.Request.Body.CopyToAsync(file, c.RequestAborted);
                bool allowDowngrade = c.Request.Query["allow_downgrade"] is { Count: > 0 } d && d[0] is "1" or "true";
                // Not tied to the request: a client that hangs up must not stop an install halfway.
                var result = await installer.InstallAsync(upload, allowDowngrade, CancellationToken.None);
                return Results.Json(ToJson(result), statusCode: result.Ok ? 200 : result.Code == "busy" ? 409 : 422);
            }
            finally
            {
                File.Delete(upload);
            }
        }).RequireScope(Scope.Admin);
    }

    public static Dictionary<string, object?> ToJson(InstallResult r) => new()
    {
        ["object"] = "bundle_install", ["outcome"] = r.Outcome, ["version"] = r.Version, ["slot"] = r.Slot, ["reason"] = r.Reason, ["code"] = r.Code, ["score"] = r.Score,
    };

    public static string Line(InstallResult r) => r.Outcome switch
    {
        InstallResult.Installed => $"installed {r.Version} in slot {r.Slot}",
        InstallResult.RolledBack => $"rolled back (version {r.Version}): {r.Reason}",
        _ => $"refused ({r.Code}): {r.Reason}",
    };

    public static InstallResult? Parse(string json)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            var root = doc.RootElement;
            string? S(string k) => root.TryGetProperty(k, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
            return S("outcome") is { } outcome ? new InstallResult(outcome, S("version"), S("slot"), S("reason"), S("code")) : null;
        }
        catch (JsonException) { return null; }
    }
}
