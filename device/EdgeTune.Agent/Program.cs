using System.Globalization;
using EdgeTune.Agent;
using EdgeTune.Agent.Bundles;
using EdgeTune.Agent.Config;
using EdgeTune.Agent.FieldLog;
using EdgeTune.Core;

const string Usage = """
    usage: edgetune-agent --config agent.toml
           edgetune-agent export --config agent.toml [--after CURSOR] [--limit N] --out FILE
           edgetune-agent ack --config agent.toml --through CURSOR
           edgetune-agent install BUNDLE.etb --config agent.toml [--allow-downgrade]

      (serve)  serve the model and keep the field log, until stopped
      export   write field records after CURSOR (default 0) to FILE as JSONL, reading the field log directly (the
               agent may be running or stopped); prints the next cursor. Nothing is acknowledged by reading.
      ack      acknowledge every record up to CURSOR, a cursor an export printed: from then on field_log.max_records
               may evict them
      install  verify a signed bundle against [bundles] trust, unpack it into the inactive slot, switch, health-check;
               roll back to the previous slot on any failure
    """;

try
{
    if (args.Contains("--help") || args.Contains("-h"))
    {
        Console.WriteLine(Usage);
        return 0;
    }
    if (args.Length > 0 && args[0] == "export") return Export(Options(args[1..], "--config", "--out", "--after", "--limit"));
    if (args.Length > 0 && args[0] == "ack") return Ack(Options(args[1..], "--config", "--through"));
    if (args.Length > 0 && args[0] == "install") return await Install(args[1..]);
    var options = Options(args, "--config");
    var config = BundleBoot.Load(Required(options, "--config"), message => Console.Error.WriteLine($"edgetune-agent: {message}"));
    var app = AgentApp.Build(config);
    await app.RunAsync();
    return 0;
}
catch (UsageException e)
{
    Console.Error.WriteLine($"edgetune-agent: {e.Message} (see edgetune-agent --help)");
    return 2;
}
catch (EdgeTuneException e)
{
    Console.Error.WriteLine($"edgetune-agent: {e.Message}");
    return 1;
}
catch (IOException e)
{
    Console.Error.WriteLine($"edgetune-agent: {e.Message}");
    return 1;
}
catch (UnauthorizedAccessException e)
{
    Console.Error.WriteLine($"edgetune-agent: {e.Message}");
    return 1;
}
catch (Microsoft.Data.Sqlite.SqliteException e)
{
    Console.Error.WriteLine($"edgetune-agent: the field log: {e.Message}");
    return 1;
}

// Streams page after page (each a snapshot of at most FieldLogStore.MaxPage records, one record in memory at a
// time) into a file written aside, fsynced and renamed, so FILE is whole or absent. The cursor it prints is handed
// out only once the file is in place.
static int Export(Dictionary<string, string> options)
{
    string configPath = Required(options, "--config"), outPath = Required(options, "--out");
    long after = Number(options, "--after", 0, 0, long.MaxValue);
    long limit = Number(options, "--limit", long.MaxValue, 1, long.MaxValue);
    var config = AgentConfig.Load(configPath, checkFiles: false);
    using var store = new FieldLogStore(config.FieldLog.Path);
    string full = Path.GetFullPath(outPath);
    string temporary = full + ".partial";
    long written = 0, cursor = after;
    try
    {
        using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
        using (var writer = new StreamWriter(stream, new System.Text.UTF8Encoding(false)))
        {
            while (written < limit)
            {
                using var page = store.OpenPage(cursor, (int)Math.Min(FieldLogStore.MaxPage, limit - written));
                if (page.Count == 0) break;
                foreach (var example in page.Read())
                {
                    writer.Write(example.ToJsonLine());
                    writer.Write('\n');
                }
                written += page.Count;
                cursor = page.Next;
            }
            writer.Flush();
            stream.Flush(flushToDisk: true);
        }
        File.Move(temporary, full, overwrite: true);
    }
    finally
    {
        if (File.Exists(temporary)) File.Delete(temporary);
    }
    // Pages chain from `after`, so (after, cursor] was delivered whole into the file.
    store.MarkIssued(after, cursor);
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{written} records written to {outPath}; next cursor: {cursor}"));
    return 0;
}

static int Ack(Dictionary<string, string> options)
{
    var config = AgentConfig.Load(Required(options, "--config"), checkFiles: false);
    long through = Number(options, "--through", -1, 0, long.MaxValue);
    if (through < 0) throw new UsageException("--through CURSOR is required (the next cursor an export printed)");
    using var store = new FieldLogStore(config.FieldLog.Path);
    long acknowledged = store.Acknowledge(through);
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"acknowledged through cursor {acknowledged}; {store.Unexported} records not yet acknowledged"));
    return 0;
}

static string Required(Dictionary<string, string> options, string name) =>
    options.TryGetValue(name, out var value) ? value : throw new UsageException($"{name} is required");

static long Number(Dictionary<string, string> options, string name, long fallback, long min, long max)
{
    if (!options.TryGetValue(name, out var text)) return fallback;
    if (!long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long value) || value < min || value > max)
        throw new UsageException($"{name}: '{text}' is not a whole number{(min > 0 ? $" of at least {min}" : " (0 or more)")}");
    return value;
}

static async Task<int> Install(string[] args)
{
    bool allowDowngrade = args.Contains("--allow-downgrade");
    var rest = args.Where(a => a != "--allow-downgrade").ToArray();
    if (rest.Length == 0 || rest[0].StartsWith("--", StringComparison.Ordinal)) throw new UsageException("install needs the bundle file: install BUNDLE.etb --config agent.toml");
    var options = Options(rest[1..], "--config");
    return await InstallCommand.RunAsync(rest[0], Required(options, "--config"), allowDowngrade, Console.Out, Console.Error);
}

static Dictionary<string, string> Options(string[] args, params string[] known)
{
    var options = new Dictionary<string, string>(StringComparer.Ordinal);
    for (int i = 0; i < args.Length; i++)
    {
        if (!known.Contains(args[i])) throw new UsageException($"unknown argument '{args[i]}'");
        if (i + 1 >= args.Length) throw new UsageException($"{args[i]} needs a value");
        options[args[i]] = args[++i];
    }
    return options;
}

/// <summary>A mistake on the command line: one line, the usage, exit 2.</summary>
internal sealed class UsageException(string message) : Exception(message);
