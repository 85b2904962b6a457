namespace EdgeTune.Core;

/// <summary>
/// A user-facing failure: bad input, a missing file, an impossible request. The message is one line that
/// names the file and the place (byte offset, line, key) so the user can act on it; the CLI prints it
/// without a stack trace and exits 1.
/// </summary>
public class EdgeTuneException : Exception
{
    public EdgeTuneException(string message) : base(message) { }
    public EdgeTuneException(string message, Exception inner) : base(message, inner) { }
    public EdgeTuneException() { }
}

/// <summary>A file that does not follow its format. <see cref="Exception.Message"/> reads "FILE: at byte N: what".</summary>
public sealed class FileFormatException : EdgeTuneException
{
    /// <summary>The place and the problem may quote the file (a key name); control characters in them are escaped, so the message stays one line.</summary>
    public FileFormatException(string file, string place, string problem)
        : base($"{file}: {MessageText.Escape(place)}: {MessageText.Escape(problem)}")
    {
        File = file;
        Place = place;
        Problem = problem;
    }

    public FileFormatException() { File = Place = Problem = ""; }
    public FileFormatException(string message) : base(message) { File = Place = Problem = ""; }
    public FileFormatException(string message, Exception inner) : base(message, inner) { File = Place = Problem = ""; }

    public string File { get; }
    public string Place { get; }
    public string Problem { get; }

    public static FileFormatException AtOffset(string file, long offset, string problem) =>
        new(file, $"at byte {offset}", problem);

    public static FileFormatException AtKey(string file, string key, string problem) =>
        new(file, $"key '{key}'", problem);
}
