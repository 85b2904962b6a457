using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using EdgeTune.Agent.Api;
using EdgeTune.Agent.Config;
using EdgeTune.Agent.FieldLog;
using EdgeTune.Agent.Fleet;
using EdgeTune.Formats.FieldData;
using EdgeTune.Agent.Serving;

namespace EdgeTune.Agent;

/// <summary>Builds the agent's web application from a validated configuration.</summary>
public static class AgentApp
{
    /// <param name="runtimeFactory">How the model is loaded (tests wrap the real runtime); LLamaSharp by default.</param>
    /// <param name="gpioFactory">The GPIO controller when [gpio] is enabled (tests pass one over a fake driver); libgpiod by default.</param>
    public static WebApplication Build(AgentConfig config, Func<AgentConfig, ITextRuntime>? runtimeFactory = null, Func<System.Device.Gpio.GpioController>? gpioFactory = null)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ContentRootPath = AppContext.BaseDirectory });
        builder.WebHost.UseUrls(config.Server.Listen);
        builder.WebHost.UseKestrelHttpsConfiguration();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = config.Server.MaxBodyBytes;
            if (config.Server.Certificate is { } certificate)
            {
                var loaded = System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadPkcs12FromFile(certificate, config.Server.CertificatePassword);
                k.ConfigureHttpsDefaults(h => h.ServerCertificate = loaded);
            }
        });
        builder.Host.UseSystemd();
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; });
        builder.Logging.SetMinimumLevel(Enum.Parse<LogLevel>(config.Server.LogLevel, true));
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);

        builder.Services.AddSingleton(config);
        builder.Services.AddSingleton(new RequestQueue(config.Server.QueueCapacity));
        builder.Services.AddSingleton(runtimeFactory ?? (c => new LlamaSharpRuntime(c.Model)));
        builder.Services.AddSingleton<ModelHost>();
        var metrics = new AgentMetrics();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<ModelHost>());
        var redactor = new Redactor(config.FieldLog.Redact, config.FieldLog.RedactReplacement);
        ILogger? fieldLogLogger = null;
        var fieldLog = config.FieldLog.Enabled
            ? new FieldLogStore(config.FieldLog.Path, config.FieldLog.MaxRecords, message => fieldLogLogger?.LogWarning("{Message}", message))
            : null;
        if (fieldLog is not null) builder.Services.AddSingleton(fieldLog);
        builder.Services.AddSingleton(sp => new CompletionEndpoints(config, sp.GetRequiredService<ModelHost>(), sp.GetRequiredService<RequestQueue>(), fieldLog, metrics, redactor));

        if (config.Gpio.Enabled)
            builder.Services.AddHostedService(sp => new GpioService(config,
                gpioFactory ?? (() => new System.Device.Gpio.GpioController(new System.Device.Gpio.Drivers.LibGpiodDriver(config.Gpio.Chip))),
                sp.GetRequiredService<ModelHost>(), sp.GetRequiredService<RequestQueue>(), sp.GetRequiredService<CompletionEndpoints>(), fieldLog,
                sp.GetRequiredService<ILogger<GpioService>>()));

        // [fleet]: the MQTT outbox publishes the field log and a retained status off the request path (Fleet/).
        Func<FleetStatus>? fleetStatus = null;
        if (config.Fleet is { } fleet)
            builder.Services.AddHostedService(sp => new FleetOutbox(fleet, fieldLog, () => fleetStatus!(),
                message => sp.GetRequiredService<ILoggerFactory>().CreateLogger("EdgeTune.Agent.Fleet").LogWarning("{Message}", message)));

        var app = builder.Build();
        fieldLogLogger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("EdgeTune.Agent.FieldLog");
        var tokenBytes = Encoding.UTF8.GetBytes("Bearer " + config.Server.ApiToken);

        // Errors in OpenAI's shape, whatever throws; every request counted.
        app.Use(async (context, next) =>
        {
            try
            {
                await next(context);
            }
            catch (ApiException e) when (!context.Response.HasStarted)
            {
                await e.WriteAsync(context);
            }
            catch (Microsoft.AspNetCore.Http.BadHttpRequestException e) when (!context.Response.HasStarted)
            {
                await new ApiException(e.StatusCode, e.StatusCode == 413 ? "the request body is larger than server.max_body_bytes" : e.Message,
                    code: e.StatusCode == 413 ? "request_too_large" : "bad_request").WriteAsync(context);
            }
            catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
            {
                // The client went away; generation was cancelled with it.
            }
            catch (Exception e) when (!context.Response.HasStarted)
            {
                app.Logger.LogError(e, "request failed");
                await new ApiException(500, e.Message, "server_error", "internal_error").WriteAsync(context);
            }
            finally
            {
                if (context.GetEndpoint() is RouteEndpoint { RoutePattern.RawText: { } route } && route != "/metrics")
                    metrics.Request(route, context.Response.StatusCode);
            }
        });

        // Bearer token on everything but /health (compared in constant time).
        app.Use(async (context, next) =>
        {
            if (context.Request.Path != "/health")
            {
                var given = Encoding.UTF8.GetBytes(context.Request.Headers.Authorization.ToString());
                if (!CryptographicOperations.FixedTimeEquals(given, tokenBytes))
                {
                    await new ApiException(401, "missing or wrong API token (send 'Authorization: Bearer TOKEN')", "invalid_request_error", "invalid_api_key").WriteAsync(context);
                    return;
                }
            }
            await next(context);
        });

        var host = app.Services.GetRequiredService<ModelHost>();
        var endpoints = app.Services.GetRequiredService<CompletionEndpoints>();

        app.MapGet("/health", () => host.Ready
            ? Results.Json(new { status = "ok", model = host.Runtime!.ModelName })
            : Results.Json(new { status = host.LoadError is null ? "loading" : "error", error = host.LoadError }, statusCode: 503));

        app.MapGet("/v1/models", () =>
        {
            var runtime = host.Runtime ?? throw new ApiException(503, "the model is still loading", "server_error", "model_not_ready");
            return Results.Json(new
            {
                @object = "list",
                data = new[] { new { id = runtime.ModelName, @object = "model", created = new DateTimeOffset(File.GetLastWriteTimeUtc(config.Model.Path)).ToUnixTimeSeconds(), owned_by = "edgetune" } },
            });
        });

        app.MapPost("/v1/chat/completions", (HttpContext c) => endpoints.Handle(c, chat: true));
        app.MapPost("/v1/completions", (HttpContext c) => endpoints.Handle(c, chat: false));

        app.MapPost("/v1/feedback", async (HttpContext c) =>
        {
            if (fieldLog is null) throw new ApiException(409, "the field log is disabled (field_log.enabled = false)", code: "field_log_disabled");
            using var doc = await CompletionRequest.ReadJsonAsync(c.Request, c.RequestAborted);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new ApiException(400, "the request body must be a JSON object", code: "invalid_json");
            string id = root.TryGetProperty("completion_id", out var idElement) && idElement.ValueKind == JsonValueKind.String ? idElement.GetString()!
                : throw new ApiException(400, "'completion_id' (a string) is required", code: "invalid_value", param: "completion_id");
            int? rating = null;
            if (root.TryGetProperty("rating", out var r) && r.ValueKind != JsonValueKind.Null)
                rating = r.ValueKind == JsonValueKind.Number && r.TryGetInt32(out int v) ? v : throw new ApiException(400, "'rating' must be an integer", code: "invalid_value", param: "rating");
            string? corrected = root.TryGetProperty("corrected", out var cr) && cr.ValueKind == JsonValueKind.String ? cr.GetString() : null;
            string? comment = root.TryGetProperty("comment", out var cm) && cm.ValueKind == JsonValueKind.String ? cm.GetString() : null;
            if (rating is null && corrected is null) throw new ApiException(400, "give a 'rating' and/or a 'corrected' answer", code: "invalid_value");
            if (!fieldLog.AddFeedback(id, rating, corrected is null ? null : redactor.Apply(corrected), comment is null ? null : redactor.Apply(comment)))
                throw new ApiException(404, $"no completion with id '{id}' in the field log", code: "completion_not_found", param: "completion_id");
            return Results.Json(new { @object = "feedback", completion_id = id, rating, corrected });
        });

        app.MapGet("/v1/field-data", (HttpContext c) =>
        {
            if (fieldLog is null) throw new ApiException(409, "the field log is disabled (field_log.enabled = false)", code: "field_log_disabled");
            long after = 0;
            int limit = 1000;
            if (c.Request.Query["after"] is { Count: > 0 } a && !long.TryParse(a[0], out after) || after < 0)
                throw new ApiException(400, "'after' must be a cursor (a non-negative integer)", code: "invalid_value", param: "after");
            if (c.Request.Query["limit"] is { Count: > 0 } l && (!int.TryParse(l[0], out limit) || limit < 1 || limit > 100_000))
                throw new ApiException(400, "'limit' must be an integer in 1..100000", code: "invalid_value", param: "limit");
            var (examples, next) = fieldLog.Export(after, limit);
            c.Response.Headers["EdgeTune-Next-Cursor"] = next.ToString(System.Globalization.CultureInfo.InvariantCulture);
            return Results.Text(string.Concat(examples.Select(e => e.ToJsonLine() + "\n")), "application/jsonl; charset=utf-8");
        });

        var sensors = config.Telemetry.Enabled
            ? new Lazy<EdgeTune.Profiles.Sensors.BoardSensors>(() => EdgeTune.Profiles.Sensors.BoardSensors.Discover(
                new EdgeTune.Profiles.Sensors.SystemRoot(config.Telemetry.SysfsRoot),
                new EdgeTune.Profiles.SensorSpec(config.Telemetry.PowerRails.Count > 0 ? "ina3221" : "any", config.Telemetry.PowerRails, [], config.Telemetry.GpuDevfreq, null)))
            : null;
        fleetStatus = () => AgentStatus.Of(config, host, app.Services.GetRequiredService<RequestQueue>(), metrics, sensors?.Value);
        app.MapGet("/metrics", () =>
        {
            long? bytes = fieldLog is null ? null
                : new[] { "", "-wal", "-shm" }.Select(x => new FileInfo(fieldLog.Path + x)).Where(f => f.Exists).Sum(f => f.Length);
            var text = new StringBuilder(metrics.Write(app.Services.GetRequiredService<RequestQueue>().Depth, host.Ready, fieldLog?.Count, bytes, fieldLog?.Unexported, fieldLog?.Evicted));
            if (sensors is not null) AgentMetrics.WriteTelemetry(text, sensors.Value.Read(System.Diagnostics.Stopwatch.GetTimestamp()));
            return Results.Text(text.ToString(), "text/plain; version=0.0.4; charset=utf-8");
        });

        app.MapGet("/v1/adapters", () =>
        {
            var runtime = host.Runtime ?? throw new ApiException(503, "the model is still loading", "server_error", "model_not_ready");
            return Results.Json(new { @object = "list", active = runtime.ActiveAdapter, data = runtime.Adapters.Select(a => new { id = a, @object = "adapter", active = a == runtime.ActiveAdapter }) });
        });

        // Switches the LoRA adapter on the loaded base (no reload); {"adapter": null} serves the bare base.
        app.MapPost("/v1/adapters/active", async (HttpContext c) =>
        {
            var runtime = host.Runtime ?? throw new ApiException(503, "the model is still loading", "server_error", "model_not_ready");
            using var doc = await CompletionRequest.ReadJsonAsync(c.Request, c.RequestAborted);
            if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("adapter", out var a) || a.ValueKind is not (JsonValueKind.String or JsonValueKind.Null))
                throw new ApiException(400, "expected {\"adapter\": NAME or null}", code: "invalid_value", param: "adapter");
            string? name = a.GetString();
            if (name is not null && !runtime.Adapters.Contains(name))
                throw new ApiException(400, $"no adapter named '{name}' (loaded: {string.Join(", ", runtime.Adapters)})", code: "adapter_not_found", param: "adapter");
            runtime.SetAdapter(name); // waits for a generation in progress (the runtime's lock)
            return Results.Json(new { @object = "adapter", active = runtime.ActiveAdapter });
        });

        app.MapFallback(() => new ApiException(404, "no such endpoint", code: "not_found").ToResult());
        app.Lifetime.ApplicationStopped.Register(() => fieldLog?.Dispose());
        return app;
    }
}
