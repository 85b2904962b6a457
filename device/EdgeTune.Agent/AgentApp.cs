using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using EdgeTune.Agent.Api;
using EdgeTune.Agent.Bundles;
using EdgeTune.Agent.Config;
using EdgeTune.Agent.FieldLog;
using EdgeTune.Agent.Fleet;
using EdgeTune.Formats.FieldData;
using EdgeTune.Agent.Serving;
using EdgeTune.Inference;

namespace EdgeTune.Agent;

/// <summary>Builds the agent's web application from a validated configuration.</summary>
public static class AgentApp
{
    /// <param name="runtimeFactory">How the model is loaded (tests wrap the real runtime); llama.cpp (EdgeTune.Inference) by default.</param>
    /// <param name="gpioFactory">The GPIO controller when [gpio] is enabled (tests pass one over a fake driver); libgpiod by default.</param>
    public static WebApplication Build(AgentConfig config, Func<AgentConfig, IInferenceModel>? runtimeFactory = null, Func<System.Device.Gpio.GpioController>? gpioFactory = null)
    {
        // Configurations built in code (the demo, tests) get the checks agent.toml gets at load.
        foreach (var (key, message) in config.Server.Problems())
            throw new AgentConfigException($"{config.File}: {key}: {message}");
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
        builder.Services.AddHostedService<SystemdWatchdog>();
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; });
        builder.Logging.SetMinimumLevel(Enum.Parse<LogLevel>(config.Server.LogLevel, true));
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);

        builder.Services.AddSingleton(config);
        var queue = new RequestQueue(config.Server.QueueCapacity, config.Server.Parallel);
        builder.Services.AddSingleton(queue);
        // [retrieval]: the index is opened for each model that loads (its tokenizer checked; a stale one fails the load),
        // the device's own or the one a bundle brings with its model.
        var retriever = new KnowledgeRetriever();
        var load = runtimeFactory ?? (c => ModelHost.Open(c.Model, c.Server.Parallel));
        Func<AgentConfig, IInferenceModel> factory = c =>
        {
            var model = load(c);
            try
            {
                retriever.Attach(model, c.Retrieval);
                queue.Parallel = model.Parallel; // what the model decodes together (an ONNX model: one at a time)
                return model;
            }
            catch
            {
                model.Dispose();
                throw;
            }
        };
        builder.Services.AddSingleton(_ => retriever);
        builder.Services.AddSingleton(factory);
        builder.Services.AddSingleton<ModelHost>();
        var metrics = new AgentMetrics();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<ModelHost>());
        var redactor = new Redactor(config.FieldLog.Redact, config.FieldLog.RedactReplacement);
        ILogger? fieldLogLogger = null;
        var fieldLog = config.FieldLog.Enabled
            ? new FieldLogStore(config.FieldLog.Path, config.FieldLog.MaxRecords, message => fieldLogLogger?.LogWarning("{Message}", message))
            : null;
        var authenticator = new TokenAuthenticator(config.Server.AllTokens);
        if (fieldLog is not null) builder.Services.AddSingleton(fieldLog);
        var drift = config.Drift.Fingerprint is { } fingerprint
            ? new EdgeTune.Core.Drift.DriftMonitor(EdgeTune.Core.Drift.DriftFingerprint.Read(fingerprint), config.Drift.Thresholds)
            : null;
        builder.Services.AddSingleton(sp => new CompletionEndpoints(config, sp.GetRequiredService<ModelHost>(), sp.GetRequiredService<RequestQueue>(), fieldLog, metrics, redactor, retriever, drift));

        BundleEndpoints.AddServices(builder.Services, config);

        if (config.Gpio.Enabled)
            builder.Services.AddHostedService(sp => new GpioService(config,
                gpioFactory ?? (() => new System.Device.Gpio.GpioController(new System.Device.Gpio.Drivers.LibGpiodDriver(config.Gpio.Chip))),
                sp.GetRequiredService<ModelHost>(), sp.GetRequiredService<RequestQueue>(), sp.GetRequiredService<CompletionEndpoints>(), fieldLog,
                sp.GetRequiredService<ILogger<GpioService>>()));

        // [fleet]: the MQTT outbox publishes the field log and a retained status off the request path (Fleet/).
        Func<FleetStatus>? fleetStatus = null;
        if (config.Fleet is { } fleet)
        {
            builder.Services.AddHostedService(sp => new FleetOutbox(fleet, fieldLog, () => fleetStatus!(),
                message => sp.GetRequiredService<ILoggerFactory>().CreateLogger("EdgeTune.Agent.Fleet").LogWarning("{Message}", message)));
            // ... and takes staged rollouts (edgetune fleet rollout) through the bundle installer.
            builder.Services.AddHostedService(sp => new FleetRollout(fleet, sp.GetRequiredService<BundleInstaller>(), config.Bundles.MaxBundleBytes,
                () => AgentStatus.Health(sp.GetRequiredService<ModelHost>()), sp.GetRequiredService<ILoggerFactory>().CreateLogger("EdgeTune.Agent.Fleet")));
        }

        var app = builder.Build();
        fieldLogLogger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("EdgeTune.Agent.FieldLog");

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
                // The details (paths, exception text) go to the log, not to the client.
                app.Logger.LogError(e, "request failed");
                await new ApiException(500, "internal error (the agent's log has the details)", "server_error", "internal_error").WriteAsync(context);
            }
            finally
            {
                if (context.GetEndpoint() is RouteEndpoint { RoutePattern.RawText: { } route } && route != "/metrics")
                    metrics.Request(route, context.Response.StatusCode);
            }
        });

        app.UseRouting();

        // Bearer token on everything but /health (compared in constant time), then the endpoint's scope: what it
        // declares with RequireScope, admin when it declares nothing.
        app.Use(async (context, next) =>
        {
            if (context.Request.Path != "/health")
            {
                var granted = authenticator.Authenticate(context.Request.Headers.Authorization.ToString());
                if (granted == Scope.None)
                {
                    await new ApiException(401, "missing or wrong API token (send 'Authorization: Bearer TOKEN')", "invalid_request_error", "invalid_api_key").WriteAsync(context);
                    return;
                }
                Scopes.Grant(context, granted);
                var required = context.GetEndpoint()?.Metadata.GetMetadata<RequiredScope>()?.AnyOf ?? Scope.Admin;
                context.RequireScope(required);
            }
            await next(context);
        });

        var host = app.Services.GetRequiredService<ModelHost>();
        var endpoints = app.Services.GetRequiredService<CompletionEndpoints>();

        // One snapshot of the model's state (a model unloading between two reads cannot make /health throw);
        // ok, loading, error or stopping only: no model path or exception text for the unauthenticated (the log has the reason).
        app.MapGet("/health", () => host.State is { Model: not null } ready
            ? Results.Json(new { status = ready.Status })
            : Results.Json(new { status = host.State.Status }, statusCode: 503));

        app.MapGet("/v1/models", () =>
        {
            var runtime = host.Runtime ?? throw new ApiException(503, "the model is still loading", "server_error", "model_not_ready");
            return Results.Json(new
            {
                @object = "list",
                data = new[] { new { id = runtime.ModelName, @object = "model", created = new DateTimeOffset(File.GetLastWriteTimeUtc(config.Model.Path)).ToUnixTimeSeconds(), owned_by = "edgetune" } },
            });
        }).RequireScope(Scope.Chat);

        app.MapPost("/v1/chat/completions", (HttpContext c) => endpoints.Handle(c, chat: true)).RequireScope(Scope.Chat);
        app.MapPost("/v1/completions", (HttpContext c) => endpoints.Handle(c, chat: false)).RequireScope(Scope.Chat);

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
            if (rating is { } given) drift?.Feedback(id, given);
            return Results.Json(new { @object = "feedback", completion_id = id, rating, corrected });
        }).RequireScope(Scope.Chat);

        // One page of JSONL, streamed from a snapshot: the store's lock is not held while it is written out, and
        // memory holds one record at a time whatever the page size. Reading acknowledges nothing.
        app.MapGet("/v1/field-data", async (HttpContext c) =>
        {
            if (fieldLog is null) throw new ApiException(409, "the field log is disabled (field_log.enabled = false)", code: "field_log_disabled");
            long after = QueryNumber(c, "after", 0, 0, long.MaxValue, "a cursor (a non-negative integer)");
            int limit = (int)QueryNumber(c, "limit", DefaultPage, 1, FieldLogStore.MaxPage, $"an integer in 1..{FieldLogStore.MaxPage}");
            using var page = fieldLog.OpenPage(after, limit);
            c.Response.Headers["EdgeTune-Next-Cursor"] = page.Next.ToString(System.Globalization.CultureInfo.InvariantCulture);
            c.Response.Headers["EdgeTune-Count"] = page.Count.ToString(System.Globalization.CultureInfo.InvariantCulture);
            c.Response.ContentType = "application/jsonl; charset=utf-8";
            await using (var writer = new StreamWriter(c.Response.Body, new UTF8Encoding(false), 1 << 16, leaveOpen: true))
            {
                foreach (var example in page.Read())
                {
                    await writer.WriteAsync(example.ToJsonLine().AsMemory(), c.RequestAborted);
                    await writer.WriteAsync("\n".AsMemory(), c.RequestAborted);
                }
                await writer.FlushAsync(c.RequestAborted);
            }
            page.Complete(); // the whole page went out: its cursor may now be acknowledged
        }).RequireScope(Scope.Fleet);

        // The consumer has stored everything up to a cursor an export handed out; only then may max_records evict it.
        app.MapPost("/v1/field-data/ack", async (HttpContext c) =>
        {
            if (fieldLog is null) throw new ApiException(409, "the field log is disabled (field_log.enabled = false)", code: "field_log_disabled");
            using var doc = await CompletionRequest.ReadJsonAsync(c.Request, c.RequestAborted);
            long through = doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("through", out var t) &&
                t.ValueKind == JsonValueKind.Number && t.TryGetInt64(out long n) && n >= 0
                ? n : throw new ApiException(400, "expected {\"through\": CURSOR}, the EdgeTune-Next-Cursor of an export", code: "invalid_value", param: "through");
            long acknowledged;
            try { acknowledged = fieldLog.Acknowledge(through); }
            catch (FieldLogException e) { throw new ApiException(409, e.Message, code: "cursor_not_issued", param: "through"); }
            return Results.Json(new { @object = "field_data.ack", acknowledged, unexported = fieldLog.Unexported });
        }).RequireScope(Scope.Fleet);

        var sensors = config.Telemetry.Enabled
            ? new Lazy<EdgeTune.Profiles.Sensors.BoardSensors>(() => EdgeTune.Profiles.Sensors.BoardSensors.Discover(
                new EdgeTune.Profiles.Sensors.SystemRoot(config.Telemetry.SysfsRoot),
                new EdgeTune.Profiles.SensorSpec(config.Telemetry.PowerRails.Count > 0 ? "ina3221" : "any", config.Telemetry.PowerRails, [], config.Telemetry.GpuDevfreq, null)))
            : null;
        var installer = app.Services.GetRequiredService<BundleInstaller>();
        fleetStatus = () => AgentStatus.Of(config, host, app.Services.GetRequiredService<RequestQueue>(), metrics, sensors?.Value, drift?.Snapshot()) with
        {
            Bundle = installer.Store.Active is { } slot ? installer.InstalledVersion(slot) : null,
        };
        app.MapGet("/metrics", () =>
        {
            long? bytes = fieldLog is null ? null
                : new[] { "", "-wal", "-shm" }.Select(x => new FileInfo(fieldLog.Path + x)).Where(f => f.Exists).Sum(f => f.Length);
            var text = new StringBuilder(metrics.Write(app.Services.GetRequiredService<RequestQueue>().Depth, host.Ready, fieldLog?.Count, bytes, fieldLog?.Unexported, fieldLog?.Evicted, fieldLog?.Refused));
            if (sensors is not null) AgentMetrics.WriteTelemetry(text, sensors.Value.Read(System.Diagnostics.Stopwatch.GetTimestamp()));
            if (drift is not null) AgentMetrics.WriteDrift(text, drift.Snapshot());
            app.Services.GetRequiredService<BundleStatus>().Write(text);
            return Results.Text(text.ToString(), "text/plain; version=0.0.4; charset=utf-8");
        }).RequireScope(Scope.Fleet | Scope.Admin);

        app.MapGet("/v1/adapters", () =>
        {
            var runtime = host.Runtime ?? throw new ApiException(503, "the model is still loading", "server_error", "model_not_ready");
            return Results.Json(new { @object = "list", active = runtime.ActiveAdapter, data = runtime.Adapters.Select(a => new { id = a, @object = "adapter", active = a == runtime.ActiveAdapter }) });
        }).RequireScope(Scope.Chat | Scope.Admin);

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
            // Through the request queue like a completion: requests admitted before the switch are answered (and
            // recorded) with the adapter they were admitted under, and later ones with the new one.
            // The adapter is the context's, shared by every sequence decoded together: the switch waits until none generates.
            using var lease = await queue.EnterExclusiveAsync(c.RequestAborted);
            if (lease is null)
            {
                await new ApiException(429, $"the request queue is full ({queue.Capacity} waiting); retry later", "rate_limit_error", "queue_full").WriteAsync(c, queue.RetryAfterSeconds);
                return Results.Empty;
            }
            runtime.SetAdapter(name);
            return Results.Json(new { @object = "adapter", active = runtime.ActiveAdapter });
        }).RequireScope(Scope.Admin);

        BundleEndpoints.Map(app, config);
        app.MapFallback(() => new ApiException(404, "no such endpoint", code: "not_found").ToResult()).RequireScope(Scope.All);
        app.Lifetime.ApplicationStopped.Register(() => fieldLog?.Dispose());
        return app;
    }

    /// <summary>Records per export page when the request gives no <c>limit</c>.</summary>
    public const int DefaultPage = 1000;

    private static long QueryNumber(HttpContext c, string name, long fallback, long min, long max, string expected)
    {
        if (c.Request.Query[name] is not { Count: > 0 } values) return fallback;
        return values.Count == 1 && long.TryParse(values[0], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long v) && v >= min && v <= max
            ? v : throw new ApiException(400, $"'{name}' must be {expected}", code: "invalid_value", param: name);
    }
}
