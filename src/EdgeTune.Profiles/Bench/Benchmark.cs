using System.Globalization;
using System.Runtime.InteropServices;
using EdgeTune.Core;
using EdgeTune.Inference;
using EdgeTune.Profiles.Fit;
using EdgeTune.Profiles.Schema;
using EdgeTune.Profiles.Sensors;

namespace EdgeTune.Profiles.Bench;

/// <summary>Everything a benchmark needs besides the runtime.</summary>
public sealed record BenchmarkRequest
{
    public required DeviceProfile Profile { get; init; }
    public required string ModelPath { get; init; }
    public string? AdapterPath { get; init; }
    public BenchSettings Settings { get; init; } = new();
    public int Threads { get; init; } = Environment.ProcessorCount;
    public int GpuLayers { get; init; }

    /// <summary>Where the board's /sys, /proc and /etc are ("/" on the board).</summary>
    public SystemRoot Board { get; init; } = SystemRoot.Host;
    public TimeSpan SampleInterval { get; init; } = TimeSpan.FromMilliseconds(50);
    public TimeProvider Time { get; init; } = TimeProvider.System;
    public string? DetectedProfile { get; init; }
}

/// <summary>
/// Runs a benchmark end to end and judges it: memory before and after, sensors sampled throughout, the
/// measuring loop, then every figure against the profile's budgets and the bandwidth bound, and the
/// run-to-run spread. Runtime-neutral: the runtime comes in as an <see cref="IInferenceRuntime"/>.
/// </summary>
public static class Benchmark
{
    /// <summary>Coefficient of variation of generation speed above which a run is called noisy.</summary>
    public const double StableCvPercent = 5.0;

    public static BenchReport Run(IInferenceRuntime runtime, BenchmarkRequest request, IProgress<BenchProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var settings = request.Settings;
        settings.Validate();
        if (!File.Exists(request.ModelPath) && !Directory.Exists(request.ModelPath)) throw new EdgeTuneException($"{request.ModelPath}: no such file");
        if (request.AdapterPath is { } ap && !File.Exists(ap)) throw new EdgeTuneException($"{ap}: no such file");
        var model = BenchModel.Read(request.ModelPath);
        var adapter = request.AdapterPath is null ? null : AdapterShape.Read(request.AdapterPath);
        var profile = request.Profile;
        var notes = new List<string>();
        if (!profile.Runtimes.Contains(runtime.Key))
            notes.Add($"the profile {profile.Name} does not list the runtime {runtime.Key}; figures describe this machine, not a supported setup of the board");

        var sensors = BoardSensors.Discover(request.Board, profile.Sensors);
        var nvp = NvpModel.Read(request.Board);
        string? powerMode = nvp?.ActiveName;
        var mode = powerMode is null ? null : profile.FindPowerMode(powerMode);
        if (powerMode is not null && mode is null) notes.Add($"the board's power mode {powerMode} is not one of the profile's power_modes");

        int context = RoundUp(settings.PromptTokens + settings.GenTokens + 1, 256);
        var options = new ModelOptions
        {
            Path = request.ModelPath,
            Adapters = request.AdapterPath is { } adapterPath ? [adapterPath] : [],
            ContextSize = context,
            BatchSize = Math.Min(2048, context),
            MicroBatchSize = 512,
            Threads = request.Threads,
            GpuLayers = runtime.UsesDeviceMemory ? request.GpuLayers : 0,
            KvType = GgmlType.F16,
        };

        // Memory: the resident set before loading; the peak during the run (VmHWM, reset here when the
        // kernel allows, else the highest sampled value); the system's available memory throughout.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        long? baselineRss = ProcessMemory.ResidentBytes();
        long? baselineAvailable = MemInfo.Read(SystemRoot.Host)?.AvailableBytes;
        bool peakReset = ProcessMemory.ResetPeak();

        IReadOnlyList<RepetitionTiming> runs;
        IReadOnlyDictionary<string, string> details;
        SensorTrace trace;
        long? peakRss;
        using (var sampler = new SensorSampler(sensors, request.Time, request.SampleInterval))
        {
            sampler.Start();
            try
            {
                // The whole measuring loop runs where the runtime computes (llama.cpp: its one inference thread).
                using var loaded = runtime.Open(options, cancellationToken);
                // An ONNX folder's context is its exported length (llama.cpp takes the one asked for): say so before GenAI's error.
                if (loaded.ContextSize < settings.PromptTokens + settings.GenTokens)
                    throw new EdgeTuneException($"{request.ModelPath}: --prompt-tokens {settings.PromptTokens} + --gen-tokens {settings.GenTokens} exceed the model's context of {loaded.ContextSize} tokens");
                details = loaded.Run(session => session.Details, cancellationToken);
                runs = loaded.Run(session => BenchRunner.Run(session, loaded.VocabularySize, settings, request.Time, progress, cancellationToken), cancellationToken);
                peakRss = peakReset ? ProcessMemory.PeakResidentBytes() : null;
            }
            finally
            {
                trace = sampler.Stop();
            }
            if (sampler.Failure is { } failure) notes.Add(failure);
        }
        long? sampledPeak = trace.Memory.Where(m => m.ProcessResidentBytes is not null).Select(m => m.ProcessResidentBytes!.Value).DefaultIfEmpty().Max() is var s && s > 0 ? s : null;
        peakRss = Max(peakRss, sampledPeak);
        long? minAvailable = trace.Memory.Where(m => m.SystemAvailableBytes is not null).Select(m => m.SystemAvailableBytes!.Value).DefaultIfEmpty(long.MaxValue).Min();
        long? systemDrop = baselineAvailable is { } ba && minAvailable is { } ma && ma != long.MaxValue ? Math.Max(0, ba - ma) : null;
        long processGrowth = peakRss is { } p && baselineRss is { } b ? Math.Max(0, p - b) : 0;
        long peakMemory = runtime.UsesDeviceMemory ? Math.Max(processGrowth, systemDrop ?? 0) : processGrowth;
        if (!peakReset) notes.Add("peak memory is the highest sampled resident set (/proc/self/clear_refs could not reset VmHWM)");

        var measured = runs.Where(r => !r.Warmup).ToList();
        var results = Summarise(measured, settings, trace, sensors, peakMemory, peakRss, baselineRss, systemDrop);
        var bound = Bound(model, adapter, settings, profile, results);
        var budgets = CheckBudgets(profile, results);
        var spread = Spread(measured.Count, results);

        return new BenchReport
        {
            Created = DateTimeOffset.UtcNow,
            Profile = new ProfileInfo(profile.Name, profile.DisplayName, profile.File, profile.Memory.Bandwidth.Value, powerMode, mode?.Watts?.Value),
            Host = new HostInfo
            {
                Machine = Environment.MachineName,
                Os = RuntimeInformation.OSDescription,
                Architecture = ProfileDetector.HostArchitecture(),
                LogicalCores = Environment.ProcessorCount,
                MemoryTotalBytes = MemInfo.Read(SystemRoot.Host)?.TotalBytes,
                BoardModel = DeviceTree.Read(request.Board).Model,
                PowerMode = powerMode,
                DetectedProfile = request.DetectedProfile,
                Sensors = sensors.Describe().ToList(),
            },
            Runtime = new RuntimeInfo(runtime.Key, runtime.Description, options.Threads, options.GpuLayers, options.ContextSize, options.BatchSize,
                model.KvType ?? GgmlTypes.Name(options.KvType), details),
            Model = new ModelInfo
            {
                Path = request.ModelPath,
                Name = model.Name,
                Architecture = model.Architecture,
                Type = model.Type,
                FileBytes = model.FileBytes,
                WeightBytes = model.WeightBytes,
                Parameters = model.Parameters,
                Adapter = adapter?.Path,
                AdapterBytes = adapter?.Bytes,
            },
            Settings = new SettingsInfo(settings.PromptTokens, settings.GenTokens, settings.Repetitions, settings.Warmup, settings.Seed),
            Results = results,
            Bound = bound,
            Budgets = budgets,
            Spread = spread,
            Repetitions = measured.Select(r => new RepetitionRecord(r.Index, r.PromptSeconds * 1e3, r.TtftSeconds * 1e3, r.GenSeconds * 1e3,
                r.PromptTokensPerSecond(settings.PromptTokens), r.GenTokensPerSecond, r.TokenSeconds.Select(t => t * 1e3).ToList())).ToList(),
            Notes = notes,
        };
    }

    private static long? Max(long? a, long? b) => a is null ? b : b is null ? a : Math.Max(a.Value, b.Value);

    private static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;

    internal static ResultsInfo Summarise(IReadOnlyList<RepetitionTiming> measured, BenchSettings settings, SensorTrace trace, BoardSensors sensors,
        long peakMemory, long? peakRss, long? baselineRss, long? systemDrop)
    {
        var promptPhases = measured.Select(r => (r.Start, r.FirstToken)).ToList();
        var genPhases = measured.Select(r => (r.FirstToken, r.End)).ToList();
        var allPhases = measured.Select(r => (r.Start, r.End)).ToList();

        PowerInfo? power = null;
        if (sensors.HasPower && trace.AverageWatts(allPhases) is { } watts)
        {
            double genJoules = genPhases.Sum(p => trace.Joules(p.Item1, p.Item2) ?? 0);
            double promptJoules = promptPhases.Sum(p => trace.Joules(p.Item1, p.Item2) ?? 0);
            int genTokens = measured.Sum(r => r.TokenSeconds.Count);
            power = new PowerInfo(watts, promptJoules / (settings.PromptTokens * measured.Count), genJoules / genTokens,
                trace.AverageRailWatts(allPhases), trace.Readings.Count(r => r.PowerWatts is not null));
        }

        var temps = trace.Temperatures();
        var events = trace.ThrottleEvents();
        var checkedWhat = new List<string>();
        if (sensors.ThermalZones.Any(z => z.PassiveTripC is not null)) checkedWhat.Add("passive trip points of " + string.Join(", ", sensors.ThermalZones.Where(z => z.PassiveTripC is not null).Select(z => z.Type).Distinct()));
        else if (sensors.ThrottleTemperatureC is { } tt && sensors.HasTemperatures) checkedWhat.Add(string.Create(CultureInfo.InvariantCulture, $"the profile's throttle temperature ({tt:0.#} °C)"));
        if (sensors.CoolingDevices.Count > 0) checkedWhat.Add("cooling devices " + string.Join(", ", sensors.CoolingDevices.Select(c => c.Type).Distinct()));
        if (sensors.Gpu is { CurrentFrequencyPath: not null, MaxFrequencyPath: not null }) checkedWhat.Add("GPU clock against its maximum while busy");
        double drift = measured.Count < 2 ? 0 : 100 * (measured[^1].GenTokensPerSecond - measured[0].GenTokensPerSecond) / measured[0].GenTokensPerSecond;

        var runtimeReported = measured.All(r => r.Runtime is { DecodeTokens: > 0, DecodeMilliseconds: > 0, PromptTokens: > 0, PromptMilliseconds: > 0 })
            ? new RuntimeReported(
                measured.Average(r => r.Runtime!.PromptTokens / (r.Runtime.PromptMilliseconds / 1e3)),
                measured.Average(r => r.Runtime!.DecodeTokens / (r.Runtime.DecodeMilliseconds / 1e3)))
            : null;

        return new ResultsInfo
        {
            PromptTokensPerSecond = Summary.Of(measured.Select(r => r.PromptTokensPerSecond(settings.PromptTokens))),
            GenTokensPerSecond = Summary.Of(measured.Select(r => r.GenTokensPerSecond)),
            TtftMs = Summary.Of(measured.Select(r => r.TtftSeconds * 1e3)),
            TokenLatencyMs = Summary.Of(measured.SelectMany(r => r.TokenSeconds).Select(t => t * 1e3)),
            PeakMemoryBytes = peakMemory,
            ProcessPeakRssBytes = peakRss,
            ProcessBaselineRssBytes = baselineRss,
            SystemMemoryDropBytes = systemDrop,
            Power = power,
            TemperaturesC = temps.Count == 0 ? null : temps.ToDictionary(kv => kv.Key, kv => new TemperatureInfo(kv.Value.Max, kv.Value.Mean)),
            GpuLoadPercent = sensors.Gpu is null ? null : trace.AverageGpuLoad(allPhases),
            Throttling = new ThrottleInfo(events.Count > 0, checkedWhat, events, drift),
            RuntimeReported = runtimeReported,
        };
    }

    internal static BoundInfo Bound(BenchModel model, AdapterShape? adapter, BenchSettings settings, DeviceProfile profile, ResultsInfo results)
    {
        // Generation reads the KV cache of every earlier position; on average that is the prompt plus half the generated tokens.
        double meanContext = settings.PromptTokens + (settings.GenTokens + 1) / 2.0;
        long perToken = model.WeightBytesReadPerToken + (adapter?.Bytes ?? 0) + (long)Math.Round(model.KvBytesPerPosition * meanContext);
        double bound = MemoryMath.DecodeBound(profile.Memory.Bandwidth.Value, perToken);
        string basis = string.Create(CultureInfo.InvariantCulture,
            $"{Units.FormatBytes(perToken)} read per token (weights with one embedding row{(adapter is null ? "" : ", adapter")}, KV cache at {meanContext:0.#} positions) at {profile.Memory.Bandwidth}");
        return new BoundInfo(perToken, bound, 100 * results.GenTokensPerSecond.Mean / bound, 1e3 / bound, basis);
    }

    internal static IReadOnlyList<BudgetCheck> CheckBudgets(DeviceProfile profile, ResultsInfo r)
    {
        var checks = new List<BudgetCheck>();
        var b = profile.Budgets;
        if (b.MaxModelMemory is { } mem)
            checks.Add(Check("max_model_memory", "peak memory", mem.Value, r.PeakMemoryBytes, "bytes", atMost: true, sd: null, mem.Provenance.Source));
        if (b.MinDecodeTokensPerSecond is { } min)
            checks.Add(Check("min_decode_tokens_per_s", "generation tokens/s (mean)", min.Value, r.GenTokensPerSecond.Mean, "tokens/s", atMost: false, r.GenTokensPerSecond.StandardDeviation, min.Provenance.Source));
        if (b.MaxTtftP95 is { } ttft)
            checks.Add(Check("max_ttft_p95", "time to first token p95", ttft.Value * 1e3, r.TtftMs.P95, "ms", atMost: true, r.TtftMs.StandardDeviation, ttft.Provenance.Source));
        if (b.MaxWatts is { } watts)
            checks.Add(Check("max_watts", "average board power", watts.Value, r.Power?.AverageWatts, "W", atMost: true, sd: null, watts.Provenance.Source));
        return checks;
    }

    private static BudgetCheck Check(string name, string figure, double limit, double? measured, string unit, bool atMost, double? sd, string source)
    {
        if (measured is not { } m) return new BudgetCheck(name, figure, limit, null, unit, "not measured", false, source);
        bool pass = atMost ? m <= limit : m >= limit;
        bool marginal = sd is { } s && s > 0 && Math.Abs(m - limit) <= s;
        return new BudgetCheck(name, figure, limit, m, unit, pass ? "pass" : "fail", marginal, source);
    }

    internal static SpreadInfo Spread(int repetitions, ResultsInfo r)
    {
        double range = r.GenTokensPerSecond.Mean == 0 ? 0 : 100 * (r.GenTokensPerSecond.Max - r.GenTokensPerSecond.Min) / r.GenTokensPerSecond.Mean;
        if (repetitions < 2)
            return new SpreadInfo(0, 0, 0, 0, false, "one repetition: no run-to-run spread to report; use --repetitions 3 or more");
        bool stable = r.GenTokensPerSecond.CvPercent <= StableCvPercent && r.PromptTokensPerSecond.CvPercent <= StableCvPercent;
        string verdict = string.Create(CultureInfo.InvariantCulture,
            $"generation varies {r.GenTokensPerSecond.CvPercent:0.#}% run to run (range {range:0.#}%), prompt {r.PromptTokensPerSecond.CvPercent:0.#}%, TTFT {r.TtftMs.CvPercent:0.#}% over {repetitions} repetitions");
        verdict += stable
            ? $"; stable (both within {StableCvPercent}%)"
            : $"; noisy (over {StableCvPercent}%): quiet the machine, fix the clocks (jetson_clocks) or add repetitions";
        return new SpreadInfo(r.PromptTokensPerSecond.CvPercent, r.GenTokensPerSecond.CvPercent, r.TtftMs.CvPercent, range, stable, verdict);
    }
}
