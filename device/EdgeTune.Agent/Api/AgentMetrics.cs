using System.Globalization;
using System.Text;

namespace EdgeTune.Agent.Api;

/// <summary>The agent's counters and histograms, written as Prometheus text (version 0.0.4) at GET /metrics.</summary>
public sealed class AgentMetrics
{
    private static readonly double[] LatencyBuckets = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
    private readonly Lock _lock = new();
    private readonly Dictionary<(string Path, int Status), long> _requests = [];
    private readonly Histogram _latency = new(LatencyBuckets);
    private readonly Histogram _ttft = new(LatencyBuckets);
    private long _promptTokens, _completionTokens, _rejected;
    private double _lastTokensPerSecond;

    /// <summary>Generation speed of the latest completion (tokens/s), null before the first.</summary>
    public double? LastTokensPerSecond
    {
        get
        {
            lock (_lock) return _lastTokensPerSecond > 0 ? _lastTokensPerSecond : null;
        }
    }

    public void Request(string path, int status)
    {
        lock (_lock)
        {
            _requests[(path, status)] = _requests.GetValueOrDefault((path, status)) + 1;
            if (status == 429) _rejected++;
        }
    }

    public void Generation(double latencySeconds, double ttftSeconds, int promptTokens, int completionTokens, double generationSeconds)
    {
        lock (_lock)
        {
            _latency.Observe(latencySeconds);
            _ttft.Observe(ttftSeconds);
            _promptTokens += promptTokens;
            _completionTokens += completionTokens;
            if (completionTokens > 0 && generationSeconds > 0) _lastTokensPerSecond = completionTokens / generationSeconds;
        }
    }

    /// <summary>The text of /metrics; gauges are read at the moment of the scrape.</summary>
    public string Write(int queueDepth, bool ready, long? fieldLogRecords, long? fieldLogBytes, long? fieldLogUnexported = null, long? fieldLogEvicted = null, long? fieldLogRefused = null)
    {
        var s = new StringBuilder();
        lock (_lock)
        {
            s.Append("# HELP edgetune_requests_total HTTP requests by path and status.\n# TYPE edgetune_requests_total counter\n");
            foreach (var ((path, status), n) in _requests.OrderBy(kv => kv.Key.Path, StringComparer.Ordinal).ThenBy(kv => kv.Key.Status))
                s.Append(CultureInfo.InvariantCulture, $"edgetune_requests_total{{path=\"{path}\",status=\"{status}\"}} {n}\n");
            s.Append(CultureInfo.InvariantCulture, $"# HELP edgetune_requests_rejected_total Requests refused with 429 because the queue was full.\n# TYPE edgetune_requests_rejected_total counter\nedgetune_requests_rejected_total {_rejected}\n");
            _latency.Write(s, "edgetune_completion_duration_seconds", "Completion latency, request received to answer complete.");
            _ttft.Write(s, "edgetune_time_to_first_token_seconds", "Time from the start of generation to the first sampled token.");
            s.Append(CultureInfo.InvariantCulture, $"# HELP edgetune_prompt_tokens_total Prompt tokens evaluated.\n# TYPE edgetune_prompt_tokens_total counter\nedgetune_prompt_tokens_total {_promptTokens}\n");
            s.Append(CultureInfo.InvariantCulture, $"# HELP edgetune_completion_tokens_total Tokens generated.\n# TYPE edgetune_completion_tokens_total counter\nedgetune_completion_tokens_total {_completionTokens}\n");
            s.Append(CultureInfo.InvariantCulture, $"# HELP edgetune_tokens_per_second Generation speed of the latest completion.\n# TYPE edgetune_tokens_per_second gauge\nedgetune_tokens_per_second {_lastTokensPerSecond:R}\n");
        }
        s.Append(CultureInfo.InvariantCulture, $"# HELP edgetune_queue_depth Requests waiting for the model.\n# TYPE edgetune_queue_depth gauge\nedgetune_queue_depth {queueDepth}\n");
        s.Append(CultureInfo.InvariantCulture, $"# HELP edgetune_model_ready 1 when the model is loaded.\n# TYPE edgetune_model_ready gauge\nedgetune_model_ready {(ready ? 1 : 0)}\n");
        if (fieldLogRecords is { } records)
            s.Append(CultureInfo.InvariantCulture, $"# HELP edgetune_field_log_records Completions in the field log.\n# TYPE edgetune_field_log_records gauge\nedgetune_field_log_records {records}\n");
        if (fieldLogBytes is { } bytes)
            s.Append(CultureInfo.InvariantCulture, $"# HELP edgetune_field_log_bytes Size of the field log on disk (database and WAL).\n# TYPE edgetune_field_log_bytes gauge\nedgetune_field_log_bytes {bytes}\n");
        if (fieldLogUnexported is { } lag)
            s.Append(CultureInfo.InvariantCulture, $"# HELP edgetune_field_log_unexported Records after the last cursor an export consumer acknowledged (export lag).\n# TYPE edgetune_field_log_unexported gauge\nedgetune_field_log_unexported {lag}\n");
        if (fieldLogEvicted is { } evicted)
            s.Append(CultureInfo.InvariantCulture, $"# HELP edgetune_field_log_evicted_total Records evicted by field_log.max_records.\n# TYPE edgetune_field_log_evicted_total counter\nedgetune_field_log_evicted_total {evicted}\n");
        if (fieldLogRefused is { } refused)
            s.Append(CultureInfo.InvariantCulture, $"# HELP edgetune_field_log_refused_total Records not stored because the field log was at max_records with nothing acknowledged to evict.\n# TYPE edgetune_field_log_refused_total counter\nedgetune_field_log_refused_total {refused}\n");
        return s.ToString();
    }

    /// <summary>Power, temperature and GPU-load gauges from one sensor reading (absent sensors are left out).</summary>
    public static void WriteTelemetry(StringBuilder s, EdgeTune.Profiles.Sensors.SensorReading r)
    {
        if (r.RailWatts.Count > 0)
        {
            s.Append("# HELP edgetune_rail_power_watts Power of one INA3221 rail.\n# TYPE edgetune_rail_power_watts gauge\n");
            foreach (var (rail, w) in r.RailWatts.OrderBy(kv => kv.Key, StringComparer.Ordinal)) s.Append(CultureInfo.InvariantCulture, $"edgetune_rail_power_watts{{rail=\"{rail}\"}} {w:R}\n");
        }
        if (r.PowerWatts is { } total)
            s.Append(CultureInfo.InvariantCulture, $"# HELP edgetune_board_power_watts Board power (sum of the configured rails).\n# TYPE edgetune_board_power_watts gauge\nedgetune_board_power_watts {total:R}\n");
        if (r.TemperaturesC.Count > 0)
        {
            s.Append("# HELP edgetune_temperature_celsius Thermal zone temperature.\n# TYPE edgetune_temperature_celsius gauge\n");
            foreach (var (zone, c) in r.TemperaturesC.OrderBy(kv => kv.Key, StringComparer.Ordinal)) s.Append(CultureInfo.InvariantCulture, $"edgetune_temperature_celsius{{zone=\"{zone}\"}} {c:R}\n");
        }
        if (r.GpuLoadPercent is { } load)
            s.Append(CultureInfo.InvariantCulture, $"# HELP edgetune_gpu_load_percent GPU load from devfreq.\n# TYPE edgetune_gpu_load_percent gauge\nedgetune_gpu_load_percent {load:R}\n");
        s.Append(CultureInfo.InvariantCulture, $"# HELP edgetune_throttling 1 when a thermal zone is at its limit or a cooling device is engaged.\n# TYPE edgetune_throttling gauge\nedgetune_throttling {(r.Throttling.Count > 0 ? 1 : 0)}\n");
    }

    /// <summary>The drift monitor's gauges (absent figures are left out); edgetune_drift_warning is 1 when a threshold is crossed.</summary>
    public static void WriteDrift(StringBuilder s, EdgeTune.Core.Drift.DriftSnapshot d)
    {
        void Gauge(string name, string help, double? value)
        {
            if (value is { } v) s.Append(CultureInfo.InvariantCulture, $"# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v:R}\n");
        }
        Gauge("edgetune_drift_window_samples", "Completions in the drift window.", d.Samples);
        Gauge("edgetune_drift_prompt_length_psi", "Population stability index of prompt lengths against the training set (above 0.25: a shift).", d.PromptLengthPsi);
        Gauge("edgetune_drift_token_js", "Jensen-Shannon divergence (bits) of the prompt token distribution against the training set.", d.TokenJs);
        Gauge("edgetune_drift_format_validity", "Share of answers with the keys every training answer has.", d.FormatValidity);
        Gauge("edgetune_drift_feedback_rate", "Share of completions in the window with a rating.", d.FeedbackRate);
        Gauge("edgetune_drift_mean_rating", "Mean rating in the window.", d.MeanRating);
        Gauge("edgetune_drift_warning", "1 when a drift threshold ([drift] in agent.toml) is crossed.", d.Warning ? 1 : 0);
    }

    private sealed class Histogram(double[] bounds)
    {
        private readonly long[] _counts = new long[bounds.Length];
        private long _count;
        private double _sum;

        public void Observe(double value)
        {
            for (int i = 0; i < bounds.Length; i++) if (value <= bounds[i]) _counts[i]++;
            _count++;
            _sum += value;
        }

        public void Write(StringBuilder s, string name, string help)
        {
            s.Append(CultureInfo.InvariantCulture, $"# HELP {name} {help}\n# TYPE {name} histogram\n");
            for (int i = 0; i < bounds.Length; i++) s.Append(CultureInfo.InvariantCulture, $"{name}_bucket{{le=\"{bounds[i]:R}\"}} {_counts[i]}\n");
            s.Append(CultureInfo.InvariantCulture, $"{name}_bucket{{le=\"+Inf\"}} {_count}\n{name}_sum {_sum:R}\n{name}_count {_count}\n");
        }
    }
}
