using EdgeTune.Agent;
using EdgeTune.Agent.Bundles;
using EdgeTune.Agent.Config;
using EdgeTune.Agent.FieldLog;
using EdgeTune.Core;

const string Usage = """
    usage: edgetune-agent --config agent.toml
           edgetune-agent export --config agent.toml [--after CURSOR] [--limit N] --out FILE
           edgetune-agent install BUNDLE.etb --config agent.toml [--allow-downgrade]
    """;

try
{
    if (args.Length > 0 && args[0] == "export") return Export(args[1..]);
    if (args.Length > 0 && args[0] == "install") return await Install(args[1..]);
    var options = Options(args);
    if (!options.TryGetValue("--config", out var configPath)) { Console.Error.WriteLine(Usage); return 2; }
    var config = BundleBoot.Load(configPath, message => Console.Error.WriteLine($"edgetune-agent: {message}"));
    var app = AgentApp.Build(config);
    await app.RunAsync();
    return 0;
}
catch (EdgeTuneException e)
{
    Console.Error.WriteLine($"edgetune-agent: {e.Message}");
    return 1;
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"edgetune-agent: {e.Message}\n{Usage}");
    return 2;
}
catch (IOException e)
{
    Console.Error.WriteLine($"edgetune-agent: {e.Message}");
    return 1;
}

// Reads the field log directly (the agent may be stopped); prints the next cursor to pass as --after.
static int Export(string[] args)
{
    var options = Options(args);
    if (!options.TryGetValue("--config", out var configPath) || !options.TryGetValue("--out", out var outPath)) { Console.Error.WriteLine(Usage); return 2; }
    long after = options.TryGetValue("--after", out var a) ? long.Parse(a, System.Globalization.CultureInfo.InvariantCulture) : 0;
    int limit = options.TryGetValue("--limit", out var l) ? int.Parse(l, System.Globalization.CultureInfo.InvariantCulture) : int.MaxValue;
    var config = AgentConfig.Load(configPath, checkFiles: false);
    using var store = new FieldLogStore(config.FieldLog.Path);
    var (examples, next) = store.Export(after, limit);
    using (var writer = new StreamWriter(outPath, append: false, new System.Text.UTF8Encoding(false)))
        foreach (var e in examples) writer.Write(e.ToJsonLine() + "\n");
    Console.WriteLine($"{examples.Count} records written to {outPath}; next cursor: {next}");
    return 0;
}

static async Task<int> Install(string[] args)
{
    bool allowDowngrade = args.Contains("--allow-downgrade");
    var rest = args.Where(a => a != "--allow-downgrade").ToArray();
    if (rest.Length == 0 || rest[0].StartsWith("--", StringComparison.Ordinal)) { Console.Error.WriteLine(Usage); return 2; }
    var options = Options(rest[1..]);
    if (!options.TryGetValue("--config", out var configPath)) { Console.Error.WriteLine(Usage); return 2; }
    return await InstallCommand.RunAsync(rest[0], configPath, allowDowngrade, Console.Out, Console.Error);
}

static Dictionary<string, string> Options(string[] args)
{
    var options = new Dictionary<string, string>(StringComparer.Ordinal);
    for (int i = 0; i < args.Length; i++)
    {
        if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length) throw new ArgumentException($"unexpected argument '{args[i]}'");
        options[args[i]] = args[++i];
    }
    return options;
}
