using System.CommandLine;
using EdgeTune.Cli.Commands;
using EdgeTune.Core;

namespace EdgeTune.Cli;

/// <summary>
/// The edgetune command. Exit codes: 0 success, 1 failure (one line on stderr), 2 bad usage.
/// Data goes to stdout (as JSON with --json); progress and messages go to stderr.
/// </summary>
public static class CliApp
{
    public const int Success = 0;
    public const int Failure = 1;
    public const int Usage = 2;

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var console = new CliConsole(stdout, stderr);
        var root = new RootCommand("EdgeTune: tune a small language model for one business task and ship it to edge devices.")
        {
            InspectCommand.Create(console),
            QuantizeCommand.Create(console),
            ConvertCommand.Create(console),
            ExportCommand.Create(console),
            DemoCommand.Create(console),
            TokenizeCommand.Create(console),
            GenerateCommand.Create(console),
            ProfilesCommand.Create(console),
            BenchCommand.Create(console),
            DataCommand.Create(console),
            TrainCommand.Create(console),
            DistillCommand.Create(console),
            EvalCommand.Baseline(console),
            EvalCommand.Eval(console),
            ReviewCommand.Create(console),
            BundleCommand.Create(console),
            DeployCommand.Create(console),
            FleetCommand.Create(console),
            RetrievalCommand.Create(console),
            RunsCommand.Create(console),
            PlanCommand.Create(console),
        };

        if (args.Length == 0)
        {
            // No verb: show what there is, but as a usage error so scripts notice.
            root.Parse(["--help"]).Invoke(new InvocationConfiguration { Output = stderr, Error = stderr });
            return Usage;
        }

        ParseResult parse;
        try
        {
            parse = root.Parse(args);
        }
        catch (InvalidOperationException e) when (e.Message.StartsWith("Cannot parse argument", StringComparison.Ordinal))
        {
            // System.CommandLine runs an option's validators even when its value did not convert, and reading the
            // value there throws: one usage line for every command's validators, not a stack trace.
            stderr.WriteLine($"edgetune: {OneLine(e.Message)}");
            return Usage;
        }
        if (parse.Errors.Count > 0 && !RequestsHelp(args))
        {
            foreach (var error in parse.Errors) stderr.WriteLine($"edgetune: {error.Message}");
            stderr.WriteLine($"Run 'edgetune {string.Join(' ', CommandPath(parse))} --help' for usage.".Replace("  ", " ", StringComparison.Ordinal));
            return Usage;
        }

        try
        {
            return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        catch (Exception e) when (Unwrap(e) is EdgeTuneException user)
        {
            stderr.WriteLine($"edgetune: {OneLine(user.Message)}");
            return Failure;
        }
        catch (Exception e) when (Unwrap(e) is IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"edgetune: {OneLine(Unwrap(e).Message)}");
            return Failure;
        }
        catch (Exception e) when (Unwrap(e) is OperationCanceledException)
        {
            stderr.WriteLine("edgetune: cancelled");
            return Failure;
        }
        catch (Exception e)
        {
            // A bug, not a user mistake: say so in one line; the trace only on request.
            var inner = Unwrap(e);
            stderr.WriteLine($"edgetune: internal error: {OneLine(inner.Message)} ({inner.GetType().Name}); set EDGETUNE_DEBUG=1 for details");
            if (Environment.GetEnvironmentVariable("EDGETUNE_DEBUG") == "1") stderr.WriteLine(inner);
            return Failure;
        }
    }

    private static bool RequestsHelp(string[] args) => args.Any(a => a is "--help" or "-h" or "-?");

    private static IEnumerable<string> CommandPath(ParseResult parse)
    {
        var names = new List<string>();
        for (var c = parse.CommandResult; c is not null; c = c.Parent as System.CommandLine.Parsing.CommandResult)
            if (c.Command is not RootCommand) names.Insert(0, c.Command.Name);
        return names;
    }

    private static Exception Unwrap(Exception e)
    {
        while (true)
        {
            if (e is AggregateException { InnerExceptions.Count: 1 } agg) e = agg.InnerExceptions[0];
            else if (e is System.Reflection.TargetInvocationException { InnerException: { } inner }) e = inner;
            else return e;
        }
    }

    private static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();
}
