using Spectre.Console;

namespace EdgeTune.Cli;

/// <summary>Where a command writes: data to <see cref="Out"/>, progress and notes to <see cref="Error"/>.</summary>
public sealed class CliConsole(TextWriter stdout, TextWriter stderr)
{
    public TextWriter Out { get; } = stdout;
    public TextWriter Error { get; } = stderr;

    /// <summary>True when stderr is a terminal that can redraw a progress bar.</summary>
    public bool Interactive => ReferenceEquals(Error, Console.Error) && !Console.IsErrorRedirected;

    /// <summary>
    /// Runs <paramref name="work"/> with a progress reporter: a live bar on a terminal, otherwise a line
    /// every 10% so logs of long jobs show they are alive.
    /// </summary>
    public T WithProgress<T>(string title, Func<Action<double, string>, T> work)
    {
        if (Interactive)
        {
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            T result = default!;
            console.Progress()
                .AutoClear(true)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask(title, maxValue: 1.0);
                    result = work((fraction, what) =>
                    {
                        task.Value = fraction;
                        task.Description = $"{title} {Markup.Escape(what)}";
                    });
                });
            return result;
        }

        int lastDecile = -1;
        return work((fraction, what) =>
        {
            int decile = (int)(fraction * 10);
            if (decile == lastDecile) return;
            lastDecile = decile;
            Error.WriteLine($"{title}: {fraction:P0} {what}");
        });
    }
}
