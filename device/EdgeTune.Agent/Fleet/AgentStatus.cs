using EdgeTune.Agent.Api;
using EdgeTune.Agent.Config;
using EdgeTune.Agent.Serving;
using EdgeTune.Formats.FieldData;
using EdgeTune.Profiles.Sensors;

namespace EdgeTune.Agent.Fleet;

/// <summary>The agent's half of the fleet status message: health, what it serves, speed, queue and sensors.</summary>
internal static class AgentStatus
{
    /// <summary>ok (a model serves), loading, or error (it did not load).</summary>
    public static string Health(ModelHost host) => host.Runtime is not null ? "ok" : host.LoadError is null ? "loading" : "error";

    public static FleetStatus Of(AgentConfig config, ModelHost host, RequestQueue queue, AgentMetrics metrics, BoardSensors? sensors, EdgeTune.Core.Drift.DriftSnapshot? drift = null)
    {
        var runtime = host.Runtime;
        SensorReading? reading = null;
        try { reading = sensors?.Read(System.Diagnostics.Stopwatch.GetTimestamp()); }
        catch (IOException) { /* a sensor that vanished leaves its figures out */ }
        return new FleetStatus
        {
            Device = config.Fleet?.Device ?? config.FieldLog.DeviceId,
            Health = Health(host),
            Error = host.LoadError,
            Model = runtime?.ModelName ?? config.Model.Name,
            Adapter = runtime?.ActiveAdapter,
            TokensPerSecond = metrics.LastTokensPerSecond,
            QueueDepth = queue.Depth,
            PowerWatts = reading?.PowerWatts,
            TemperatureC = reading is { TemperaturesC.Count: > 0 } r ? r.TemperaturesC.Values.Max() : null,
            DriftPromptLengthPsi = drift?.PromptLengthPsi,
            DriftTokenJs = drift?.TokenJs,
            DriftFormatValidity = drift?.FormatValidity,
            DriftWarning = drift?.Warning,
            DriftReasons = drift is { Reasons.Count: > 0 } d ? d.Reasons : null,
        };
    }
}
