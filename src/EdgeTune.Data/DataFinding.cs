namespace EdgeTune.Data;

public enum Severity { Info, Warning, Error }

/// <summary>
/// One problem in the data. <see cref="Line"/> is 1-based; 0 means the dataset as a whole (label balance, size).
/// <see cref="Kind"/> is a stable machine name (malformed, empty-answer, duplicate, near-duplicate, conflict,
/// format, over-length, label-balance, pii, size).
/// </summary>
public sealed record DataFinding(string Kind, Severity Severity, string File, long Line, string Message)
{
    public override string ToString() =>
        Line > 0 ? $"{File}:{Line}: {SeverityName}: {Kind}: {Message}" : $"{File}: {SeverityName}: {Kind}: {Message}";

    public string SeverityName => Severity.ToString().ToLowerInvariant();
}
