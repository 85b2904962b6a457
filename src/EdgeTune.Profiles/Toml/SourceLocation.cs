namespace EdgeTune.Profiles.Toml;

/// <summary>A place in a text file, 1-based, printed the way compilers print it: <c>file:line:column</c>.</summary>
public readonly record struct SourceLocation(string File, int Line, int Column)
{
    public static SourceLocation StartOf(string file) => new(file, 1, 1);

    public override string ToString() => $"{File}:{Line}:{Column}";
}
