using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Profiles;
using EdgeTune.Profiles.Fit;
using EdgeTune.Profiles.Schema;
using EdgeTune.Profiles.Sensors;
using EdgeTune.Profiles.Toml;

namespace EdgeTune.Cli.Commands;

/// <summary><c>edgetune profiles list|validate|show|fit</c>: device profiles and what fits on them.</summary>
internal static class ProfilesCommand
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    public static Command Create(CliConsole console)
    {
        var command = new Command("profiles",
            "Device profiles (profiles/*.toml): list them, validate them, show one with the source of every figure, and plan which quantisation of a model fits a board.\n\n" +
            "Example: edgetune profiles fit --profile jetson-orin-nano-8gb --model model-f16.gguf --context 4096")
        {
            List(console), Validate(console), Show(console), Fit(console),
        };
        return command;
    }

    internal static Option<string?> BoardRootOption() => new("--board-root")
    {
        Description = "Read the board's /sys, /proc and /etc under this folder instead of / (a copy of a board's files, or tests)",
    };

    /// <summary>Resolves --profile: a name, a path, or "auto" (recognise the board).</summary>
    internal static (DeviceProfile Profile, string? DetectedBecause) ResolveProfile(string value, SystemRoot board)
    {
        var loader = new ProfileLoader();
        if (value != "auto") return (loader.Load(value), null);
        var profiles = loader.Catalog.List().Select(loader.Validate).Where(v => v.IsValid).Select(v => v.Profile!).ToList();
        var detection = ProfileDetector.Detect(board, profiles);
        if (detection.Profile is null) throw new EdgeTuneException($"--profile auto: {detection.Reason}; name a profile instead ('edgetune profiles list')");
        return (detection.Profile, detection.Reason);
    }

    // ---- list ------------------------------------------------------------------------------------------

    private static Command List(CliConsole console)
    {
        var json = new Option<bool>("--json") { Description = "Print the list as JSON" };
        var command = new Command("list", "List the known profiles (from $EDGETUNE_PROFILES, ./profiles and the shipped ones).\n\nExample: edgetune profiles list") { json };
        command.SetAction(parse =>
        {
            var loader = new ProfileLoader();
            var rows = loader.Catalog.List().Select(loader.Validate).ToList();
            if (parse.GetValue(json))
            {
                WriteJson(console.Out, w =>
                {
                    w.WriteStartArray();
                    foreach (var r in rows)
                    {
                        w.WriteStartObject();
                        w.WriteString("name", Path.GetFileNameWithoutExtension(r.File));
                        w.WriteString("file", r.File);
                        w.WriteBoolean("valid", r.IsValid);
                        if (r.Profile is { } p)
                        {
                            w.WriteString("display_name", p.DisplayName);
                            if (p.ExtendsChain.Count > 0) w.WriteString("extends", Path.GetFileNameWithoutExtension(p.ExtendsChain[0]));
                            w.WriteNumber("memory_bytes", p.Memory.Total.Value);
                            w.WriteNumber("bandwidth_bytes_per_s", p.Memory.Bandwidth.Value);
                        }
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                });
                return CliApp.Success;
            }
            if (rows.Count == 0)
            {
                console.Error.WriteLine($"edgetune: no profiles found in {string.Join(", ", loader.Catalog.Directories)}");
                return CliApp.Failure;
            }
            int width = rows.Max(r => Path.GetFileNameWithoutExtension(r.File).Length);
            foreach (var r in rows)
            {
                string name = Path.GetFileNameWithoutExtension(r.File).PadRight(width);
                if (r.Profile is { } p)
                    console.Out.WriteLine($"{name}  {p.Memory.Total,7} {p.Memory.Bandwidth,12}  {p.DisplayName}{(p.ExtendsChain.Count > 0 ? $" (extends {Path.GetFileNameWithoutExtension(p.ExtendsChain[0])})" : "")}");
                else console.Out.WriteLine($"{name}  invalid: {r.Diagnostics[0]}");
            }
            return CliApp.Success;
        });
        return command;
    }

    // ---- validate --------------------------------------------------------------------------------------

    private static Command Validate(CliConsole console)
    {
        var paths = new Argument<string[]>("PATH") { Description = "Profile files or folders (default: every known profile)", Arity = ArgumentArity.ZeroOrMore };
        var json = new Option<bool>("--json") { Description = "Print the diagnostics as JSON on stdout" };
        var command = new Command("validate",
            "Check profiles against the schema: TOML syntax, unknown keys, types, units, ranges, sources, required keys and extends chains. " +
            "Each problem is printed as file:line:column: key: message; the exit status is 1 when any profile has one.\n\n" +
            "Example: edgetune profiles validate profiles/*.toml")
        {
            paths, json,
        };
        command.SetAction(parse =>
        {
            var loader = new ProfileLoader();
            var files = new List<string>();
            foreach (var p in parse.GetValue(paths) ?? [])
            {
                if (Directory.Exists(p)) files.AddRange(Directory.EnumerateFiles(p, "*.toml").Order(StringComparer.Ordinal));
                else files.Add(p);
            }
            if (files.Count == 0) files.AddRange(loader.Catalog.List());
            if (files.Count == 0) throw new EdgeTuneException($"no profiles to validate (looked in {string.Join(", ", loader.Catalog.Directories)})");

            var results = files.Select(loader.Validate).ToList();
            var seen = new HashSet<ProfileDiagnostic>();
            if (parse.GetValue(json))
            {
                WriteJson(console.Out, w =>
                {
                    w.WriteStartArray();
                    foreach (var r in results)
                    {
                        w.WriteStartObject();
                        w.WriteString("file", r.File);
                        w.WriteBoolean("valid", r.IsValid);
                        w.WriteStartArray("diagnostics");
                        foreach (var d in r.Diagnostics)
                        {
                            w.WriteStartObject();
                            w.WriteString("file", d.Location.File);
                            w.WriteNumber("line", d.Location.Line);
                            w.WriteNumber("column", d.Location.Column);
                            w.WriteString("key", d.Key);
                            w.WriteString("message", d.Message);
                            w.WriteEndObject();
                        }
                        w.WriteEndArray();
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                });
            }
            else
            {
                foreach (var r in results)
                {
                    if (r.IsValid) console.Out.WriteLine($"ok  {r.File} ({r.Profile!.Name})");
                    // A broken parent shows under every child; print each problem once.
                    foreach (var d in r.Diagnostics)
                        if (seen.Add(d)) console.Error.WriteLine(d.ToString());
                }
                int bad = results.Count(r => !r.IsValid);
                int problems = results.SelectMany(r => r.Diagnostics).Distinct().Count();
                console.Out.WriteLine(bad == 0
                    ? $"{results.Count} profile{(results.Count == 1 ? "" : "s")} valid"
                    : $"{bad} of {results.Count} profile{(results.Count == 1 ? "" : "s")} invalid ({problems} problem{(problems == 1 ? "" : "s")})");
            }
            return results.All(r => r.IsValid) ? CliApp.Success : CliApp.Failure;
        });
        return command;
    }

    // ---- show ------------------------------------------------------------------------------------------

    private static Command Show(CliConsole console)
    {
        var name = new Argument<string>("PROFILE") { Description = "A profile name, a .toml path, or 'auto' to recognise this board" };
        var json = new Option<bool>("--json") { Description = "Print the resolved profile as JSON" };
        var root = BoardRootOption();
        var command = new Command("show",
            "Show a profile with its extends chain applied: every value, its source and the file and line it comes from.\n\n" +
            "Example: edgetune profiles show jetson-orin-nano-8gb-super")
        {
            name, json, root,
        };
        command.SetAction(parse =>
        {
            var board = new SystemRoot(parse.GetValue(root) ?? "/");
            var (profile, because) = ResolveProfile(parse.GetValue(name)!, board);
            if (parse.GetValue(json)) WriteJson(console.Out, w => WriteProfileJson(w, profile, because));
            else WriteProfileText(console.Out, profile, because);
            return CliApp.Success;
        });
        return command;
    }

    private static void WriteProfileText(TextWriter o, DeviceProfile p, string? because)
    {
        o.WriteLine($"{p.Name}: {p.DisplayName}");
        if (because is not null) o.WriteLine($"  detected: {because}");
        o.WriteLine($"  file: {p.File}{(p.ExtendsChain.Count > 0 ? ", extends " + string.Join(" -> ", p.ExtendsChain) : "")}");
        if (p.Description is { } d) o.WriteLine($"  {d}");
        var rows = new List<(string Key, string Value, string Source, string From)>();
        foreach (var field in ProfileSchema.Root.Fields)
        {
            if (field.Name is "schema" or "name" or "display_name" or "description" or "extends") continue;
            if (p.Values[field.Name] is not { } node) continue;
            if (node is TomlTableNode table && field.Kind is FieldKind.Table or FieldKind.Map)
            {
                foreach (var (key, value) in table.Items)
                {
                    var spec = field.Kind == FieldKind.Map ? field.Entry! : field.Table!.Find(key)!;
                    rows.Add(Describe($"{field.Name}.{key}", spec, value));
                }
            }
        }
        int keyWidth = rows.Max(r => r.Key.Length), valueWidth = Math.Min(28, rows.Max(r => r.Value.Length));
        foreach (var (key, value, source, from) in rows)
            o.WriteLine($"  {key.PadRight(keyWidth)}  {value.PadRight(valueWidth)}  {source}{(source.Length > 0 ? "  " : "")}({from})");
        int estimates = rows.Count(r => r.Source.StartsWith("estimate:", StringComparison.Ordinal));
        if (estimates > 0) o.WriteLine($"  {estimates} figure{(estimates == 1 ? " is an estimate: measure it" : "s are estimates: measure them")} on the board and replace the source with \"measured\" and the date.");
    }

    private static (string Key, string Value, string Source, string From) Describe(string key, FieldSpec spec, TomlNode node)
    {
        string from = $"{Path.GetFileName(node.Location.File)}:{node.Location.Line}";
        if (spec.Kind is FieldKind.Figure or FieldKind.TextFigure && node is TomlTableNode figure)
        {
            string source = figure["source"] is TomlValueNode { Value: string s } ? s : "";
            if (figure["date"] is TomlValueNode date) source += $" ({date.Text})";
            string value = figure["value"] is TomlValueNode v
                ? v.Value is string text ? text : $"{v.Text}{(figure["unit"] is TomlValueNode u ? " " + u.Text : "")}"
                : "";
            return (key, value, source, from);
        }
        string plain = node switch
        {
            TomlValueNode v => v.Value is bool b ? (b ? "yes" : "no") : v.Text,
            TomlArrayNode a => string.Join(", ", a.Items.OfType<TomlValueNode>().Select(i => i.Text)),
            _ => "",
        };
        return (key, plain, "", from);
    }

    private static void WriteProfileJson(Utf8JsonWriter w, DeviceProfile p, string? because)
    {
        w.WriteStartObject();
        w.WriteString("name", p.Name);
        w.WriteString("display_name", p.DisplayName);
        w.WriteString("file", p.File);
        if (because is not null) w.WriteString("detected", because);
        w.WriteStartArray("extends");
        foreach (var e in p.ExtendsChain) w.WriteStringValue(e);
        w.WriteEndArray();
        foreach (var field in ProfileSchema.Root.Fields)
        {
            if (field.Kind is not (FieldKind.Table or FieldKind.Map) || p.Values[field.Name] is not TomlTableNode table) continue;
            w.WriteStartObject(field.Name);
            foreach (var (key, value) in table.Items)
            {
                var spec = field.Kind == FieldKind.Map ? field.Entry! : field.Table!.Find(key)!;
                w.WritePropertyName(key);
                WriteNodeJson(w, spec, value);
            }
            w.WriteEndObject();
        }
        w.WriteEndObject();
    }

    private static void WriteNodeJson(Utf8JsonWriter w, FieldSpec spec, TomlNode node)
    {
        string from = node.Location.ToString();
        if (spec.Kind is FieldKind.Figure or FieldKind.TextFigure && node is TomlTableNode figure)
        {
            w.WriteStartObject();
            if (figure["value"] is TomlValueNode { Value: long or double } v)
            {
                double written = v.Value is long l ? l : (double)v.Value;
                w.WriteNumber("value", written);
                string unit = figure["unit"] is TomlValueNode { Value: string u } ? u : "";
                if (unit.Length > 0) w.WriteString("unit", unit);
                double factor = 1;
                if (Units.HasUnits(spec.Dimension)) Units.TryFactor(spec.Dimension, unit, out factor);
                w.WriteNumber("canonical", written * factor);
                w.WriteString("canonical_unit", CanonicalUnit(spec.Dimension));
            }
            else if (figure["value"] is TomlValueNode text) w.WriteString("value", text.Text);
            foreach (var k in new[] { "source", "date", "note" })
                if (figure[k] is TomlValueNode x) w.WriteString(k, x.Text);
            w.WriteString("from", from);
            w.WriteEndObject();
            return;
        }
        switch (node)
        {
            case TomlValueNode { Value: bool b }: w.WriteBooleanValue(b); break;
            case TomlValueNode { Value: long l }: w.WriteNumberValue(l); break;
            case TomlValueNode { Value: double d }: w.WriteNumberValue(d); break;
            case TomlValueNode v: w.WriteStringValue(v.Text); break;
            case TomlArrayNode a:
                w.WriteStartArray();
                foreach (var i in a.Items.OfType<TomlValueNode>()) w.WriteStringValue(i.Text);
                w.WriteEndArray();
                break;
            default: w.WriteNullValue(); break;
        }
    }

    private static string CanonicalUnit(Dimension d) => d switch
    {
        Dimension.Bytes => "B",
        Dimension.Bandwidth => "B/s",
        Dimension.Power => "W",
        Dimension.Time => "s",
        Dimension.Frequency => "Hz",
        Dimension.TokenRate => "tokens/s",
        Dimension.IntegerOps => "ops/s",
        Dimension.FloatOps => "FLOP/s",
        Dimension.Temperature => "°C",
        _ => "",
    };

    // ---- fit -------------------------------------------------------------------------------------------

    private static Command Fit(CliConsole console)
    {
        var profile = new Option<string>("--profile") { Description = "A profile name, a .toml path, or 'auto'", Required = true };
        var model = new Option<string>("--model") { Description = "The model, a .gguf file (any type: F32, F16 or quantised)", Required = true };
        var context = new Option<int?>("--context") { Description = "Context length in tokens (default 4096, or the model's trained context when shorter)" };
        context.Validators.Add(r => { if (r.GetValueOrDefault<int?>() is < 1) r.AddError("--context must be at least 1"); });
        var adapter = new Option<string?>("--adapter") { Description = "A GGUF LoRA adapter applied at run time (its tensors are kept and read every token)" };
        var kvType = new Option<string>("--kv-type") { Description = "KV cache type: f16 (llama.cpp's default), f32, q8_0", DefaultValueFactory = _ => "f16" };
        kvType.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<string>() is { } v && ParseKvType(v) is null) r.AddError($"--kv-type must be f16, f32 or q8_0, not '{v}'");
        });
        var json = new Option<bool>("--json") { Description = "Print the plan as JSON" };
        var root = BoardRootOption();
        var command = new Command("fit",
            "For each quantisation type: weight bytes (exact for the file, planned for the others), KV cache at the context, llama.cpp's compute buffers, " +
            "the total against the profile's memory and budget, the decode bound from the memory bandwidth, and the recommended type.\n\n" +
            "Example: edgetune profiles fit --profile jetson-orin-nano-8gb --model model-f16.gguf --context 4096")
        {
            profile, model, context, adapter, kvType, json, root,
        };
        command.SetAction(parse =>
        {
            var board = new SystemRoot(parse.GetValue(root) ?? "/");
            var (p, _) = ResolveProfile(parse.GetValue(profile)!, board);
            var options = new FitOptions { Context = parse.GetValue(context), KvType = ParseKvType(parse.GetValue(kvType)!)!.Value };
            var report = FitPlanner.Plan(p, parse.GetValue(model)!, parse.GetValue(adapter), options);
            if (parse.GetValue(json)) WriteJson(console.Out, w => WriteFitJson(w, report));
            else WriteFitText(console.Out, report);
            return CliApp.Success;
        });
        return command;
    }

    private static GgmlType? ParseKvType(string value) => value.ToLowerInvariant() switch
    {
        "f16" => GgmlType.F16,
        "f32" => GgmlType.F32,
        "q8_0" => GgmlType.Q8_0,
        _ => null,
    };

    private static void WriteFitText(TextWriter o, FitReport r)
    {
        var p = r.Profile;
        var m = r.Model;
        string budget = p.Budgets.MaxModelMemory is { } mb ? $", memory budget {mb}" : "";
        o.WriteLine($"profile: {p.Name} ({p.DisplayName}): {p.Memory.UsableForModel} usable for the model{budget}, {p.Memory.Bandwidth}");
        o.WriteLine(string.Create(C,
            $"model: {m.Path} ({m.Architecture}, {m.Layers} layers, {m.Heads} heads / {m.KvHeads} KV heads of {m.KeyLength}, vocabulary {m.Vocabulary}, {ModelSummary.Count(m.Parameters)} parameters, {FitPlanner.FileTypeName(m)})"));
        if (r.Adapter is { } a) o.WriteLine($"adapter: {a.Path} (rank {a.Rank}, {Units.FormatBytes(a.Bytes)})");
        long kvElement = GgmlTypes.RowBytes(r.Options.KvType, GgmlTypes.BlockSize(r.Options.KvType));
        o.WriteLine(string.Create(C,
            $"context {r.Context}: KV cache {Units.FormatBytes(r.Rows[0].KvCacheBytes)} ({m.Layers} layers x 2 x {m.KvHeads} KV heads x {m.KeyLength} x {r.Context} x {(double)kvElement / GgmlTypes.BlockSize(r.Options.KvType):0.###} bytes, {GgmlTypes.Name(r.Options.KvType)}); " +
            $"llama.cpp buffers ~{Units.FormatBytes(r.Rows[0].OverheadBytes)}"));
        o.WriteLine();
        string minDecode = p.Budgets.MinDecodeTokensPerSecond is { } md ? $" (budget {md.Value:0.#})" : "";
        o.WriteLine($"{"type",-12} {"weights",10} {"bits/w",6} {"KV",9} {"buffers",9} {"total",10}  {"fits",-15} {"decode <= tokens/s" + minDecode}");
        foreach (var row in r.Rows)
        {
            string type = row.IsFile ? row.Type + " (file)" : row.Type;
            string fits = !row.FitsMemory ? "no" : !row.WithinMemoryBudget ? "over budget" : "yes";
            if (row.Requantizes) fits += " (requant)";
            string mark = ReferenceEquals(row, r.Recommended) ? "  <- recommended" : "";
            o.WriteLine(string.Create(C,
                $"{type,-12} {Units.FormatBytes(row.WeightBytes),10} {row.BitsPerWeight,6:0.00} {Units.FormatBytes(row.KvCacheBytes),9} {Units.FormatBytes(row.OverheadBytes),9} {Units.FormatBytes(row.TotalBytes),10}  {fits,-15} {row.DecodeBoundTokensPerSecond,8:0.#}{(row.MeetsDecodeBudget ? "" : " (below budget)")}{mark}"));
        }
        o.WriteLine();
        o.WriteLine(r.Recommended is { } rec ? $"recommended: {rec.Type}: {r.Reason}" : $"recommended: none: {r.Reason}");
        o.WriteLine("decode bound = bandwidth / bytes read per token (all weights but one embedding row, the adapter, and the KV cache at the full context).");
        if (r.Rows.Any(x => x.Requantizes)) o.WriteLine("requant: the file is already quantised; make this type from the F16/F32 original.");
    }

    private static void WriteFitJson(Utf8JsonWriter w, FitReport r)
    {
        w.WriteStartObject();
        w.WriteString("profile", r.Profile.Name);
        w.WriteNumber("usable_memory_bytes", r.Profile.Memory.UsableForModel.Value);
        if (r.Profile.Budgets.MaxModelMemory is { } mb) w.WriteNumber("memory_budget_bytes", mb.Value);
        if (r.Profile.Budgets.MinDecodeTokensPerSecond is { } md) w.WriteNumber("min_decode_tokens_per_s", md.Value);
        w.WriteNumber("bandwidth_bytes_per_s", r.Profile.Memory.Bandwidth.Value);
        w.WriteStartObject("model");
        w.WriteString("path", r.Model.Path);
        w.WriteString("architecture", r.Model.Architecture);
        w.WriteString("type", FitPlanner.FileTypeName(r.Model));
        w.WriteNumber("parameters", r.Model.Parameters);
        w.WriteNumber("layers", r.Model.Layers);
        w.WriteNumber("heads", r.Model.Heads);
        w.WriteNumber("kv_heads", r.Model.KvHeads);
        w.WriteNumber("key_length", r.Model.KeyLength);
        w.WriteNumber("value_length", r.Model.ValueLength);
        w.WriteNumber("vocabulary", r.Model.Vocabulary);
        w.WriteEndObject();
        if (r.Adapter is { } a)
        {
            w.WriteStartObject("adapter");
            w.WriteString("path", a.Path);
            w.WriteNumber("bytes", a.Bytes);
            w.WriteNumber("rank", a.Rank);
            w.WriteEndObject();
        }
        w.WriteNumber("context", r.Context);
        w.WriteString("kv_type", GgmlTypes.Name(r.Options.KvType));
        w.WriteStartArray("types");
        foreach (var row in r.Rows)
        {
            w.WriteStartObject();
            w.WriteString("type", row.Type);
            w.WriteBoolean("is_file", row.IsFile);
            w.WriteBoolean("requantizes", row.Requantizes);
            w.WriteNumber("weight_bytes", row.WeightBytes);
            w.WriteNumber("adapter_bytes", row.AdapterBytes);
            w.WriteNumber("kv_cache_bytes", row.KvCacheBytes);
            w.WriteNumber("overhead_bytes", row.OverheadBytes);
            w.WriteNumber("total_bytes", row.TotalBytes);
            w.WriteNumber("bits_per_weight", row.BitsPerWeight);
            w.WriteNumber("bytes_per_token", row.BytesPerToken);
            w.WriteNumber("decode_bound_tokens_per_s", row.DecodeBoundTokensPerSecond);
            w.WriteBoolean("fits_memory", row.FitsMemory);
            w.WriteBoolean("within_memory_budget", row.WithinMemoryBudget);
            w.WriteBoolean("meets_decode_budget", row.MeetsDecodeBudget);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        if (r.Recommended is { } rec) w.WriteString("recommended", rec.Type);
        else w.WriteNull("recommended");
        w.WriteString("reason", r.Reason);
        w.WriteEndObject();
    }

    internal static void WriteJson(TextWriter o, Action<Utf8JsonWriter> write)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
            write(w);
        o.WriteLine(Encoding.UTF8.GetString(buffer.ToArray()));
    }
}
