using System.Text.Json;
using System.Text.Json.Serialization;

namespace EdgeTune.Formats.FieldData;

/// <summary>
/// The field-record schema shared by the on-device agent (which writes it) and the dataset pipeline (which
/// reads it back): one JSONL line per completion in the chat format, <c>{"messages": [...], "metadata": {...}}</c>.
/// The last message is the training target: the user's corrected answer when there is one, else the model's output.
/// </summary>
public sealed record FieldExample(
    [property: JsonPropertyName("messages")] IReadOnlyList<FieldMessage> Messages,
    [property: JsonPropertyName("metadata")] FieldProvenance Metadata)
{
    public static readonly JsonSerializerOptions JsonOptions = new()
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        WriteIndented = false,
    };

    public string ToJsonLine() => JsonSerializer.Serialize(this, JsonOptions);

    public static FieldExample? FromJsonLine(string line) => JsonSerializer.Deserialize<FieldExample>(line, JsonOptions);
}

public sealed record FieldMessage(
    [property: JsonPropertyName("role")] string Role,
    [property: JsonPropertyName("content")] string Content);

/// <summary>Where an example came from and what the user thought of it.</summary>
public sealed record FieldProvenance
{
    [JsonPropertyName("source")] public string Source { get; init; } = "edgetune-agent";
    [JsonPropertyName("id")] public required string Id { get; init; }
    [JsonPropertyName("cursor")] public long Cursor { get; init; }
    [JsonPropertyName("device_id")] public string? DeviceId { get; init; }
    [JsonPropertyName("created")] public DateTimeOffset Created { get; init; }
    [JsonPropertyName("kind")] public string Kind { get; init; } = "chat";
    [JsonPropertyName("model")] public string? Model { get; init; }
    [JsonPropertyName("adapter")] public string? Adapter { get; init; }
    [JsonPropertyName("sampling")] public IReadOnlyDictionary<string, JsonElement>? Sampling { get; init; }
    [JsonPropertyName("latency_ms")] public double LatencyMs { get; init; }
    [JsonPropertyName("prompt_tokens")] public int PromptTokens { get; init; }
    [JsonPropertyName("completion_tokens")] public int CompletionTokens { get; init; }
    [JsonPropertyName("finish_reason")] public string? FinishReason { get; init; }

    /// <summary>The model's own output when a correction replaced it as the target.</summary>
    [JsonPropertyName("model_output")] public string? ModelOutput { get; init; }
    [JsonPropertyName("feedback")] public FieldFeedback? Feedback { get; init; }
}

/// <summary>The latest feedback on a completion: a rating (-1, 0, +1 or a scale the product chooses) and/or a corrected answer.</summary>
public sealed record FieldFeedback(
    [property: JsonPropertyName("rating")] int? Rating,
    [property: JsonPropertyName("corrected")] string? Corrected,
    [property: JsonPropertyName("comment")] string? Comment,
    [property: JsonPropertyName("created")] DateTimeOffset Created);
