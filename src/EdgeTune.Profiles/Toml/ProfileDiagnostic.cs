using EdgeTune.Core;

namespace EdgeTune.Profiles.Toml;

/// <summary>One problem in a profile: <c>file:line:column: key: message</c>.</summary>
public sealed record ProfileDiagnostic(SourceLocation Location, string Key, string Message)
{
    public override string ToString() => $"{Location}: {Key}: {Message}";
}

/// <summary>
/// A profile that does not load. <see cref="Exception.Message"/> is the first diagnostic (and how many more
/// there are), so the CLI's one line names the file and the place; <see cref="Diagnostics"/> has them all.
/// </summary>
public sealed class ProfileException : EdgeTuneException
{
    public ProfileException(IReadOnlyList<ProfileDiagnostic> diagnostics)
        : base(Describe(diagnostics))
    {
        Diagnostics = diagnostics;
    }

    public ProfileException() : base("profile error") => Diagnostics = [];
    public ProfileException(string message) : base(message) => Diagnostics = [];
    public ProfileException(string message, Exception inner) : base(message, inner) => Diagnostics = [];

    public IReadOnlyList<ProfileDiagnostic> Diagnostics { get; }

    private static string Describe(IReadOnlyList<ProfileDiagnostic> diagnostics) => diagnostics.Count switch
    {
        0 => "profile error",
        1 => diagnostics[0].ToString(),
        _ => $"{diagnostics[0]} (and {diagnostics.Count - 1} more; run 'edgetune profiles validate' to see all)",
    };
}
