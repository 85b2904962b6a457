using System.Text.Json;
using System.Text.Json.Serialization;
using EdgeTune.Core;

namespace EdgeTune.Profiles.Bench;

/// <summary>
/// The result of <c>edgetune bench</c>, written as JSON (schema <see cref="SchemaId"/>), summarised in
/// Markdown and charted. Durations are milliseconds, rates tokens per second, sizes bytes, power watts.
/// </summary>
public sealed record BenchReport
{
    public const string SchemaId = "edgetune.bench/1";

    public string Schema { get; init; } = SchemaId;
    public required DateTimeOffset Created { get; init; }
    public required ProfileInfo Profile { get; init; }
    public required HostInfo Host { get; init; }
    public required RuntimeInfo Runtime { get; init; }
    public required ModelInfo Model { get; init; }
    public required SettingsInfo Settings { get; init; }
    public required ResultsInfo Results { get; init; }
    public required BoundInfo Bound { get; init; }
    public required IReadOnlyList<BudgetCheck> Budgets { get; init; }
    public required SpreadInfo Spread { get; init; }
    public required IReadOnlyList<RepetitionRecord> Repetitions { get; init; }
    public IReadOnlyList<string> Notes { get; init; } = [];

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>Reads a bench JSON file; bad files fail with the file and the line.</summary>
    public static BenchReport Read(string path)
    {
        if (!File.Exists(path)) throw new EdgeTuneException($"{path}: no such file");
        string text = File.ReadAllText(path);
        try
        {
            using (var doc = JsonDocument.Parse(text))
            {
                if (doc.RootElement.ValueKind != JsonValueKind.Object
                    || !doc.RootElement.TryGetProperty("schema", out var schema) || schema.GetString() != SchemaId)
                    throw new EdgeTuneException($"{path}: not an edgetune bench result (expected \"schema\": \"{SchemaId}\")");
            }
            return JsonSerializer.Deserialize<BenchReport>(text, Json) ?? throw new EdgeTuneException($"{path}: empty bench result");
        }
        catch (JsonException e)
        {
            string where = e.LineNumber is { } line ? $"{line + 1}:{(e.BytePositionInLine ?? 0) + 1}: " : "";
            throw new EdgeTuneException($"{path}:{where}{FirstSentence(e.Message)}");
        }
    }

    private static string FirstSentence(string message)
    {
        int i = message.IndexOf(". Path:", StringComparison.Ordinal);
        return i > 0 ? message[..i] : message;
    }
}

public sealed record ProfileInfo(string Name, string DisplayName, string File, double BandwidthBytesPerSecond, string? PowerMode, double? PowerModeWatts);

public sealed record HostInfo
{
    public required string Machine { get; init; }
    public required string Os { get; init; }
    public required string Architecture { get; init; }
    public required int LogicalCores { get; init; }
    public long? MemoryTotalBytes { get; init; }
    public string? BoardModel { get; init; }
    public string? PowerMode { get; init; }
    public string? DetectedProfile { get; init; }

    /// <summary>The sensors found, and those absent with the reason.</summary>
    public required IReadOnlyList<string> Sensors { get; init; }
}

public sealed record RuntimeInfo(string Key, string Description, int Threads, int GpuLayers, int ContextSize, int BatchSize, string KvType, IReadOnlyDictionary<string, string> Details);

public sealed record ModelInfo
{
    public required string Path { get; init; }
    public string? Name { get; init; }
    public required string Architecture { get; init; }
    public required string Type { get; init; }
    public required long FileBytes { get; init; }
    public required long WeightBytes { get; init; }
    public required long Parameters { get; init; }
    public string? Adapter { get; init; }
    public long? AdapterBytes { get; init; }
}

public sealed record SettingsInfo(int PromptTokens, int GenTokens, int Repetitions, int Warmup, int Seed);

public sealed record ResultsInfo
{
    public required Summary PromptTokensPerSecond { get; init; }
    public required Summary GenTokensPerSecond { get; init; }

    /// <summary>Time to first token per repetition: the prompt and the pick of the first token.</summary>
    public required Summary TtftMs { get; init; }

    /// <summary>Every decode step of every measured repetition.</summary>
    public required Summary TokenLatencyMs { get; init; }

    /// <summary>Peak memory the run added: the process's peak resident set above its size before loading (and, for GPU runtimes, the drop in the system's available memory when larger).</summary>
    public required long PeakMemoryBytes { get; init; }
    public long? ProcessPeakRssBytes { get; init; }
    public long? ProcessBaselineRssBytes { get; init; }
    public long? SystemMemoryDropBytes { get; init; }
    public PowerInfo? Power { get; init; }
    public IReadOnlyDictionary<string, TemperatureInfo>? TemperaturesC { get; init; }
    public double? GpuLoadPercent { get; init; }
    public required ThrottleInfo Throttling { get; init; }

    /// <summary>The runtime's own counters (llama.cpp's perf timings), a cross-check on the harness's clock.</summary>
    public RuntimeReported? RuntimeReported { get; init; }
}

public sealed record PowerInfo(double AverageWatts, double? PromptJoulesPerToken, double GenJoulesPerToken, IReadOnlyDictionary<string, double> RailWatts, int Readings);

public sealed record TemperatureInfo(double Max, double Mean);

public sealed record ThrottleInfo(bool Noticed, IReadOnlyList<string> Checked, IReadOnlyList<string> Events, double GenDriftPercent);

public sealed record RuntimeReported(double PromptTokensPerSecond, double GenTokensPerSecond);

/// <summary>Decode against the memory bandwidth: bytes read per token at the average context of generation.</summary>
public sealed record BoundInfo(long BytesPerToken, double GenTokensPerSecondBound, double GenPercentOfBound, double TokenLatencyBoundMs, string Basis);

/// <summary>One figure against its budget: pass, fail, or not measured (no sensor); marginal when within one standard deviation.</summary>
public sealed record BudgetCheck(string Name, string Figure, double Limit, double? Measured, string Unit, string Status, bool Marginal, string Source);

public sealed record SpreadInfo(double PromptCvPercent, double GenCvPercent, double TtftCvPercent, double GenRangePercent, bool Stable, string Verdict);

public sealed record RepetitionRecord(int Index, double PromptMs, double TtftMs, double GenMs, double PromptTokensPerSecond, double GenTokensPerSecond, IReadOnlyList<double> TokenLatenciesMs);
