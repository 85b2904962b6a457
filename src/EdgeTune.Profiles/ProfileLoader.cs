using System.Globalization;
using System.Text.RegularExpressions;
using EdgeTune.Profiles.Schema;
using EdgeTune.Profiles.Toml;
using Tomlyn;

namespace EdgeTune.Profiles;

/// <summary>The outcome of validating one profile file: the profile when it is valid, and every problem found.</summary>
public sealed record ProfileValidation(string File, DeviceProfile? Profile, IReadOnlyList<ProfileDiagnostic> Diagnostics)
{
    public bool IsValid => Profile is not null && Diagnostics.Count == 0;
}

/// <summary>
/// Reads device profiles: TOML syntax, the schema (unknown keys, types, units, ranges, sources), the
/// <c>extends</c> chain (missing parents and cycles refused), required keys on the merged result, and
/// checks across keys. Every problem is a <see cref="ProfileDiagnostic"/> with <c>file:line:column</c>.
/// </summary>
public sealed class ProfileLoader(ProfileCatalog catalog)
{
    private const int MaxExtendsDepth = 16;
    private readonly Dictionary<string, (TomlTableNode Root, List<ProfileDiagnostic> Diagnostics)> _files = new(StringComparer.Ordinal);

    public ProfileCatalog Catalog { get; } = catalog;

    public ProfileLoader() : this(ProfileCatalog.Default()) { }

    /// <summary>Load a profile by path or name; throws <see cref="ProfileException"/> when it is not valid.</summary>
    public DeviceProfile Load(string nameOrPath)
    {
        string path = Catalog.Resolve(nameOrPath)
            ?? throw new Core.EdgeTuneException(nameOrPath.EndsWith(".toml", StringComparison.OrdinalIgnoreCase) || nameOrPath.Contains('/')
                ? $"{nameOrPath}: no such file"
                : $"no profile named '{nameOrPath}' ({Catalog.DescribeSearch(nameOrPath)}); 'edgetune profiles list' shows the known ones");
        var result = Validate(path);
        if (!result.IsValid) throw new ProfileException(result.Diagnostics);
        return result.Profile!;
    }

    public ProfileValidation Validate(string path)
    {
        var diagnostics = new List<ProfileDiagnostic>();
        if (!File.Exists(path))
        {
            diagnostics.Add(new ProfileDiagnostic(SourceLocation.StartOf(path), "file", "no such file"));
            return new ProfileValidation(path, null, diagnostics);
        }

        // The chain from this file to its root ancestor; each file is checked on its own first.
        var chain = new List<(string Path, TomlTableNode Root)>();
        string current = path;
        while (true)
        {
            var (root, fileDiagnostics) = ReadFile(current);
            diagnostics.AddRange(fileDiagnostics);
            chain.Add((current, root));
            if (root["extends"] is not TomlValueNode { Value: string parentName } extendsNode) break;

            string? parent = ResolveParent(current, parentName);
            if (parent is null)
            {
                diagnostics.Add(new ProfileDiagnostic(extendsNode.Location, "extends",
                    $"no profile named '{parentName}' (looked for {parentName}.toml beside this file and in {string.Join(", ", Catalog.Directories)})"));
                break;
            }
            int seenAt = chain.FindIndex(c => SameFile(c.Path, parent));
            if (seenAt >= 0)
            {
                var names = chain.Skip(seenAt).Select(c => Path.GetFileNameWithoutExtension(c.Path)).Append(Path.GetFileNameWithoutExtension(parent));
                diagnostics.Add(new ProfileDiagnostic(extendsNode.Location, "extends", $"extends cycle: {string.Join(" -> ", names)}"));
                break;
            }
            if (chain.Count >= MaxExtendsDepth)
            {
                diagnostics.Add(new ProfileDiagnostic(extendsNode.Location, "extends", $"extends chain is deeper than {MaxExtendsDepth} profiles"));
                break;
            }
            current = parent;
        }
        if (diagnostics.Count > 0) return new ProfileValidation(path, null, Distinct(diagnostics));

        // Merge from the root ancestor down; then what must hold for the whole.
        var merged = chain[^1].Root;
        for (int i = chain.Count - 2; i >= 0; i--) merged = Merge(merged, chain[i].Root, ProfileSchema.Root, isRoot: true);
        CheckRequired(merged, ProfileSchema.Root, "", path, diagnostics);
        if (diagnostics.Count > 0) return new ProfileValidation(path, null, diagnostics);

        var profile = Build(merged, path, chain.Skip(1).Select(c => c.Path).ToList());
        CheckAcross(profile, merged, diagnostics);
        return new ProfileValidation(path, diagnostics.Count == 0 ? profile : null, diagnostics);
    }

    private static List<ProfileDiagnostic> Distinct(List<ProfileDiagnostic> diagnostics) => diagnostics.Distinct().ToList();

    private static bool SameFile(string a, string b) =>
        string.Equals(Path.GetFullPath(a), Path.GetFullPath(b), StringComparison.Ordinal);

    private string? ResolveParent(string child, string parentName)
    {
        string dir = Path.GetDirectoryName(Path.GetFullPath(child)) ?? ".";
        if (parentName.EndsWith(".toml", StringComparison.OrdinalIgnoreCase) || parentName.Contains('/'))
        {
            string relative = Path.Combine(dir, parentName);
            return File.Exists(relative) ? relative : null;
        }
        string beside = Path.Combine(dir, parentName + ".toml");
        if (File.Exists(beside)) return PreferGivenForm(child, beside);
        return Catalog.Resolve(parentName);
    }

    // Keep paths in the form the user gave (relative stays relative) so messages read naturally.
    private static string PreferGivenForm(string child, string resolved)
    {
        if (Path.IsPathRooted(child)) return resolved;
        string childDir = Path.GetDirectoryName(child) ?? "";
        return Path.Combine(childDir, Path.GetFileName(resolved));
    }

    private (TomlTableNode Root, List<ProfileDiagnostic> Diagnostics) ReadFile(string path)
    {
        string key = Path.GetFullPath(path);
        if (_files.TryGetValue(key, out var cached)) return cached;
        var diagnostics = new List<ProfileDiagnostic>();
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            diagnostics.Add(new ProfileDiagnostic(SourceLocation.StartOf(path), "file", e.Message));
            return _files[key] = (new TomlTableNode(SourceLocation.StartOf(path)), diagnostics);
        }
        var root = TomlDocument.Parse(text, path, diagnostics);
        if (diagnostics.Count == 0)
        {
            CheckTable(root, ProfileSchema.Root, "", diagnostics);
            if (root["name"] is TomlValueNode { Value: string name } nameNode && name != Path.GetFileNameWithoutExtension(path))
                diagnostics.Add(new ProfileDiagnostic(nameNode.Location, "name",
                    $"'{name}' does not match the file name '{Path.GetFileName(path)}' (extends finds profiles by file name)"));
        }
        return _files[key] = (root, diagnostics);
    }

    // ---- The schema, one file at a time: everything but required keys -------------------------------

    private static string Join(string path, string key) => path.Length == 0 ? key : $"{path}.{key}";

    private static void CheckTable(TomlTableNode table, TableSpec spec, string path, List<ProfileDiagnostic> d)
    {
        foreach (var (key, value) in table.Items)
        {
            var field = spec.Find(key);
            if (field is null)
            {
                d.Add(new ProfileDiagnostic(value.Location, Join(path, key), UnknownKey(key, spec.Fields.Select(f => f.Name))));
                continue;
            }
            CheckField(field, value, Join(path, key), d);
        }
    }

    private static string UnknownKey(string key, IEnumerable<string> known)
    {
        var names = known.ToList();
        string? close = names.Select(n => (Name: n, Distance: Distance(key, n)))
            .Where(x => x.Distance <= Math.Max(2, x.Name.Length / 3)).OrderBy(x => x.Distance).Select(x => x.Name).FirstOrDefault();
        return close is not null
            ? $"unknown key; did you mean '{close}'?"
            : $"unknown key; expected one of {string.Join(", ", names)}";
    }

    private static void CheckField(FieldSpec field, TomlNode value, string path, List<ProfileDiagnostic> d)
    {
        switch (field.Kind)
        {
            case FieldKind.String:
                if (Expect<string>(value, path, "a string", d) is { } s) CheckString(field, s, value.Location, path, d);
                break;
            case FieldKind.Integer:
                if (value is TomlValueNode { Value: long n })
                {
                    if ((field.Min is { } min && n < min) || (field.Max is { } max && n > max))
                        d.Add(new ProfileDiagnostic(value.Location, path, field.Min == field.Max ? $"must be {field.Min}, found {n}" : $"must be between {field.Min} and {field.Max}, found {n}"));
                }
                else d.Add(new ProfileDiagnostic(value.Location, path, $"expected an integer, found {value.Describe()}"));
                break;
            case FieldKind.Boolean:
                Expect<bool>(value, path, "true or false", d);
                break;
            case FieldKind.StringArray:
                if (value is not TomlArrayNode array)
                {
                    d.Add(new ProfileDiagnostic(value.Location, path, $"expected an array of strings, found {value.Describe()}"));
                    break;
                }
                for (int i = 0; i < array.Items.Count; i++)
                {
                    if (array.Items[i] is TomlValueNode { Value: string item }) CheckString(field, item, value.Location, $"{path}[{i}]", d);
                    else d.Add(new ProfileDiagnostic(value.Location, $"{path}[{i}]", $"expected a string, found {array.Items[i].Describe()}"));
                }
                break;
            case FieldKind.Table:
                if (value is TomlTableNode table) CheckTable(table, field.Table!, path, d);
                else d.Add(new ProfileDiagnostic(value.Location, path, $"expected a table ([{path}]), found {value.Describe()}"));
                break;
            case FieldKind.Map:
                if (value is not TomlTableNode map)
                {
                    d.Add(new ProfileDiagnostic(value.Location, path, $"expected a table ([{path}]), found {value.Describe()}"));
                    break;
                }
                foreach (var (key, entry) in map.Items)
                {
                    if (field.KeyPattern is { } kp && !Regex.IsMatch(key, kp))
                        d.Add(new ProfileDiagnostic(entry.Location, Join(path, key), $"name must match {kp}"));
                    CheckField(field.Entry!, entry, Join(path, key), d);
                }
                break;
            case FieldKind.Figure:
            case FieldKind.TextFigure:
                CheckFigure(field, value, path, d);
                break;
        }
    }

    private static T? Expect<T>(TomlNode value, string path, string what, List<ProfileDiagnostic> d)
    {
        if (value is TomlValueNode { Value: T t }) return t;
        d.Add(new ProfileDiagnostic(value.Location, path, $"expected {what}, found {value.Describe()}"));
        return default;
    }

    private static void CheckString(FieldSpec field, string s, SourceLocation at, string path, List<ProfileDiagnostic> d)
    {
        if (s.Trim().Length == 0) d.Add(new ProfileDiagnostic(at, path, "must not be empty"));
        else if (field.Allowed is { } allowed && !allowed.Contains(s))
            d.Add(new ProfileDiagnostic(at, path, $"'{s}' is not one of {string.Join(", ", allowed)}"));
        else if (field.Pattern is { } pattern && !Regex.IsMatch(s, pattern))
            d.Add(new ProfileDiagnostic(at, path, $"'{s}' is not {field.PatternHint ?? "valid"}"));
    }

    private static void CheckFigure(FieldSpec field, TomlNode node, string path, List<ProfileDiagnostic> d)
    {
        bool text = field.Kind == FieldKind.TextFigure;
        if (node is not TomlTableNode figure)
        {
            string example = text ? "{ value = \"…\", source = \"https://…\" }"
                : Units.HasUnits(field.Dimension) ? $"{{ value = …, unit = \"{Units.Names(field.Dimension).First()}\", source = \"https://…\" }}"
                : "{ value = …, source = \"https://…\" }";
            d.Add(new ProfileDiagnostic(node.Location, path, $"expected a figure with its source, {example}; found {node.Describe()}"));
            return;
        }
        foreach (var (key, v) in figure.Items)
            if (!ProfileSchema.FigureKeys.Contains(key))
                d.Add(new ProfileDiagnostic(v.Location, Join(path, key), UnknownKey(key, ProfileSchema.FigureKeys)));

        // value
        var valueNode = figure["value"];
        double? number = null;
        if (valueNode is null) d.Add(new ProfileDiagnostic(figure.Location, Join(path, "value"), "required key is missing"));
        else if (text)
        {
            if (Expect<string>(valueNode, Join(path, "value"), "a string", d) is { } s) CheckString(field, s, valueNode.Location, Join(path, "value"), d);
        }
        else if (valueNode is TomlValueNode { Value: long l }) number = l;
        else if (valueNode is TomlValueNode { Value: double x })
        {
            if (field.Dimension == Dimension.Count)
                d.Add(new ProfileDiagnostic(valueNode.Location, Join(path, "value"), $"is a count and must be a whole number, found {valueNode.Describe()}"));
            else if (double.IsFinite(x)) number = x;
            else d.Add(new ProfileDiagnostic(valueNode.Location, Join(path, "value"), $"must be a finite number, found {valueNode.Describe()}"));
        }
        else if (field.AllowUncapped && valueNode is TomlValueNode { Value: "uncapped" }) { }
        else d.Add(new ProfileDiagnostic(valueNode.Location, Join(path, "value"),
            $"expected a number{(field.AllowUncapped ? " or \"uncapped\"" : "")}, found {valueNode.Describe()}"));

        // unit
        var unitNode = figure["unit"];
        double factor = 1;
        string? unit = null;
        bool uncapped = valueNode is TomlValueNode { Value: "uncapped" };
        if (text || !Units.HasUnits(field.Dimension))
        {
            if (unitNode is not null)
                d.Add(new ProfileDiagnostic(unitNode.Location, Join(path, "unit"), text ? "a text figure takes no unit" : "is a count and takes no unit"));
        }
        else if (unitNode is null)
        {
            if (!uncapped)
                d.Add(new ProfileDiagnostic(figure.Location, Join(path, "unit"), $"required key is missing; a {Units.Describe(field.Dimension)} is written in {string.Join(", ", Units.Names(field.Dimension))}"));
        }
        else if (Expect<string>(unitNode, Join(path, "unit"), "a string", d) is { } u)
        {
            unit = u;
            if (!Units.TryFactor(field.Dimension, u, out factor))
            {
                string what = Units.DimensionOf(u) is { } other ? $"'{u}' is a {Units.Describe(other)} unit" : $"unknown unit '{u}'";
                d.Add(new ProfileDiagnostic(unitNode.Location, Join(path, "unit"),
                    $"{what}; a {Units.Describe(field.Dimension)} is written in {string.Join(", ", Units.Names(field.Dimension))}"));
                number = null;
            }
        }

        // range, in the canonical unit, reported in the written one
        if (number is { } value && (unit is not null || !Units.HasUnits(field.Dimension)))
        {
            double canonical = value * factor;
            string shown = unit is null ? value.ToString(CultureInfo.InvariantCulture) : $"{value.ToString(CultureInfo.InvariantCulture)} {unit}";
            if (field.Min is { } min && (field.MinExclusive ? canonical <= min : canonical < min))
                d.Add(new ProfileDiagnostic(valueNode!.Location, Join(path, "value"),
                    $"must be {(field.MinExclusive ? "greater than" : "at least")} {Units.Format(field.Dimension, min)}, found {shown}"));
            else if (field.Max is { } max && canonical > max)
                d.Add(new ProfileDiagnostic(valueNode!.Location, Join(path, "value"), $"must be at most {Units.Format(field.Dimension, max)}, found {shown}"));
        }

        // source and date
        var sourceNode = figure["source"];
        string? source = null;
        if (sourceNode is null) d.Add(new ProfileDiagnostic(figure.Location, Join(path, "source"), "required key is missing; every figure names its source"));
        else if (Expect<string>(sourceNode, Join(path, "source"), "a string", d) is { } src)
        {
            source = src;
            if (SourceProblem(src) is { } problem) d.Add(new ProfileDiagnostic(sourceNode.Location, Join(path, "source"), problem));
        }
        var dateNode = figure["date"];
        if (dateNode is not null && dateNode is not TomlValueNode { Value: TomlDateTime { Kind: TomlDateTimeKind.LocalDate } })
            d.Add(new ProfileDiagnostic(dateNode.Location, Join(path, "date"), $"expected a date such as 2025-01-31, found {dateNode.Describe()}"));
        if (source == "measured" && dateNode is null)
            d.Add(new ProfileDiagnostic(sourceNode!.Location, Join(path, "date"), "a measured figure needs the date it was measured (date = 2025-01-31)"));
        if (figure["note"] is { } noteNode) Expect<string>(noteNode, Join(path, "note"), "a string", d);
    }

    internal static string? SourceProblem(string source)
    {
        if (source.StartsWith("http://", StringComparison.Ordinal) || source.StartsWith("https://", StringComparison.Ordinal))
            return Uri.TryCreate(source, UriKind.Absolute, out var uri) && uri.Host.Contains('.') ? null : $"'{source}' is not a valid link";
        if (source == "measured") return null;
        foreach (var prefix in ProfileSchema.SourcePrefixes)
            if (source.StartsWith(prefix, StringComparison.Ordinal))
                return source[prefix.Length..].Trim().Length >= 3 ? null : $"'{prefix}' must be followed by the explanation";
        return "must be a link (https://…), \"measured\" with a date, or start with \"derived:\", \"estimate:\" or \"policy:\" and say how";
    }

    // ---- extends: merge, then required keys on the whole ------------------------------------------------

    private static TomlTableNode Merge(TomlTableNode parent, TomlTableNode child, TableSpec spec, bool isRoot)
    {
        var merged = new TomlTableNode(child.Location);
        foreach (var (key, value) in parent.Items)
        {
            var field = spec.Find(key);
            if (isRoot && field is { Inherited: false }) continue;
            merged.Set(key, value);
        }
        foreach (var (key, value) in child.Items)
        {
            var field = spec.Find(key);
            if (field?.Kind == FieldKind.Table && merged[key] is TomlTableNode p && value is TomlTableNode c)
                merged.Set(key, Merge(p, c, field.Table!, isRoot: false));
            else if (field?.Kind == FieldKind.Map && merged[key] is TomlTableNode pm && value is TomlTableNode cm)
                merged.Set(key, MergeMap(pm, cm));
            else merged.Set(key, value);
        }
        return merged;
    }

    private static TomlTableNode MergeMap(TomlTableNode parent, TomlTableNode child)
    {
        var merged = new TomlTableNode(child.Location);
        foreach (var (k, v) in parent.Items) merged.Set(k, v);
        foreach (var (k, v) in child.Items) merged.Set(k, v);
        return merged;
    }

    private static void CheckRequired(TomlTableNode table, TableSpec spec, string path, string file, List<ProfileDiagnostic> d)
    {
        foreach (var field in spec.Fields)
        {
            var value = table[field.Name];
            if (value is null)
            {
                if (!field.Required) continue;
                // A key a file must state itself is reported at the top of that file; others where their table is.
                var at = path.Length == 0 ? SourceLocation.StartOf(file) : table.Location;
                string what = field.Kind is FieldKind.Table ? $"required table [{Join(path, field.Name)}] is missing" : "required key is missing";
                d.Add(new ProfileDiagnostic(at, Join(path, field.Name), what));
                continue;
            }
            if (field.Kind == FieldKind.Table && value is TomlTableNode sub)
                CheckRequired(sub, field.Table!, Join(path, field.Name), file, d);
        }
    }

    // ---- The typed profile ---------------------------------------------------------------------------

    private static DeviceProfile Build(TomlTableNode root, string file, IReadOnlyList<string> ancestors)
    {
        var identity = (TomlTableNode)root["identity"]!;
        var cpu = (TomlTableNode)root["cpu"]!;
        var memory = (TomlTableNode)root["memory"]!;
        var gpu = root["gpu"] as TomlTableNode;
        var compute = root["compute"] as TomlTableNode;
        var sensors = root["sensors"] as TomlTableNode;
        var budgets = root["budgets"] as TomlTableNode;
        var runtimes = (TomlTableNode)root["runtimes"]!;
        var powerModes = root["power_modes"] as TomlTableNode;

        return new DeviceProfile
        {
            Name = Str(root, "name")!,
            DisplayName = Str(root, "display_name")!,
            Description = Str(root, "description"),
            File = file,
            ExtendsChain = ancestors,
            Identity = new ProfileIdentity(Str(identity, "vendor")!, Str(identity, "soc")!, Str(identity, "module"), Str(identity, "architecture")!,
                StrArray(identity, "device_tree_ids"), Str(identity, "detect_power_mode")),
            Cpu = new CpuSpec(Str(cpu, "model")!, Fig(cpu, "cores", Dimension.Count)!, TextFig(cpu, "isa")!, Fig(cpu, "max_frequency", Dimension.Frequency)),
            Gpu = gpu is null ? null : new GpuSpec(Str(gpu, "model")!, TextFig(gpu, "compute_capability"), Fig(gpu, "cuda_cores", Dimension.Count),
                Fig(gpu, "tensor_cores", Dimension.Count), Fig(gpu, "max_frequency", Dimension.Frequency))
            {
                Memory = Fig(gpu, "memory", Dimension.Bytes), MemoryBandwidth = Fig(gpu, "memory_bandwidth", Dimension.Bandwidth),
            },
            Memory = new MemorySpec(Str(memory, "type"), memory["unified"] is TomlValueNode { Value: true },
                Fig(memory, "total", Dimension.Bytes)!, Fig(memory, "usable_for_model", Dimension.Bytes)!, Fig(memory, "bandwidth", Dimension.Bandwidth)!),
            Compute = compute is null
                ? new Dictionary<string, Quantity>()
                : compute.Items.ToDictionary(kv => kv.Key, kv => Fig(compute, kv.Key, ProfileSchema.Root.Find("compute")!.Table!.Find(kv.Key)!.Dimension)!),
            PowerModes = powerModes is null ? [] : powerModes.Items.Select(kv =>
            {
                var f = (TomlTableNode)kv.Value;
                bool uncapped = f["value"] is TomlValueNode { Value: "uncapped" };
                return new PowerMode(kv.Key, uncapped ? null : Fig(powerModes, kv.Key, Dimension.Power), ProvenanceOf(f));
            }).ToList(),
            Runtimes = runtimes.Items.Where(kv => kv.Value is TomlValueNode { Value: true }).Select(kv => kv.Key).ToHashSet(StringComparer.Ordinal),
            Sensors = sensors is null ? SensorSpec.None : new SensorSpec(Str(sensors, "power") ?? "none", StrArray(sensors, "power_rails"),
                StrArray(sensors, "thermal_zones"), StrArray(sensors, "gpu_devfreq"), Fig(sensors, "throttle_temperature", Dimension.Temperature)),
            Budgets = budgets is null ? new Budgets(null, null, null, null) : new Budgets(Fig(budgets, "max_model_memory", Dimension.Bytes),
                Fig(budgets, "min_decode_tokens_per_s", Dimension.TokenRate), Fig(budgets, "max_ttft_p95", Dimension.Time), Fig(budgets, "max_watts", Dimension.Power)),
            Values = root,
        };
    }

    private static string? Str(TomlTableNode t, string key) => t[key] is TomlValueNode { Value: string s } ? s : null;

    private static IReadOnlyList<string> StrArray(TomlTableNode t, string key) =>
        t[key] is TomlArrayNode a ? a.Items.OfType<TomlValueNode>().Select(v => (string)v.Value).ToList() : [];

    private static Provenance ProvenanceOf(TomlTableNode figure)
    {
        DateOnly? date = figure["date"] is TomlValueNode { Value: TomlDateTime dt } ? DateOnly.FromDateTime(dt.DateTime.DateTime) : null;
        return new Provenance(Str(figure, "source")!, date, Str(figure, "note"), figure.Location);
    }

    internal static Quantity? Fig(TomlTableNode t, string key, Dimension dimension)
    {
        if (t[key] is not TomlTableNode f || f["value"] is not TomlValueNode { Value: long or double } v) return null;
        double written = v.Value is long l ? l : (double)v.Value;
        string unit = Str(f, "unit") ?? "";
        double factor = 1;
        if (Units.HasUnits(dimension)) Units.TryFactor(dimension, unit, out factor);
        return new Quantity(written * factor, dimension, written, unit, ProvenanceOf(f));
    }

    private static TextFact? TextFig(TomlTableNode t, string key) =>
        t[key] is TomlTableNode f && f["value"] is TomlValueNode { Value: string s } ? new TextFact(s, ProvenanceOf(f)) : null;

    // ---- What must hold across keys --------------------------------------------------------------------

    private static void CheckAcross(DeviceProfile p, TomlTableNode root, List<ProfileDiagnostic> d)
    {
        var m = p.Memory;
        if (m.UsableForModel.Value > m.Total.Value)
            d.Add(new ProfileDiagnostic(m.UsableForModel.Provenance.Location, "memory.usable_for_model",
                $"{m.UsableForModel} is more than memory.total ({m.Total})"));
        if (p.Budgets.MaxModelMemory is { } budget && budget.Value > m.UsableForModel.Value)
            d.Add(new ProfileDiagnostic(budget.Provenance.Location, "budgets.max_model_memory",
                $"{budget} is more than memory.usable_for_model ({m.UsableForModel})"));
        if (p.Runtimes.Count == 0)
            d.Add(new ProfileDiagnostic(root["runtimes"]!.Location, "runtimes", "no runtime is enabled; set at least one of " + string.Join(", ", ProfileSchema.RuntimeKeys) + " to true"));
        foreach (var gpuRuntime in new[] { "llama_cpp_cuda", "onnxruntime_cuda", "onnxruntime_tensorrt" })
            if (p.Runtimes.Contains(gpuRuntime) && p.Gpu?.ComputeCapability is null)
                d.Add(new ProfileDiagnostic(((TomlTableNode)root["runtimes"]!)[gpuRuntime]!.Location, $"runtimes.{gpuRuntime}",
                    "needs a CUDA GPU: set gpu.compute_capability"));
        if (p.Sensors.Power == "ina3221" && p.Sensors.PowerRails.Count == 0)
            d.Add(new ProfileDiagnostic(((TomlTableNode)root["sensors"]!)["power"]!.Location, "sensors.power_rails",
                "an INA3221 power monitor needs the rail labels to add up (power_rails = [\"VDD_IN\"])"));
        if (p.Identity.DetectPowerMode is { } mode && p.FindPowerMode(mode) is null)
            d.Add(new ProfileDiagnostic(((TomlTableNode)root["identity"]!)["detect_power_mode"]!.Location, "identity.detect_power_mode",
                $"'{mode}' is not one of this profile's power_modes"));
    }

    /// <summary>Levenshtein distance, for "did you mean" hints.</summary>
    private static int Distance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) previous[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (int j = 1; j <= b.Length; j++)
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (previous, current) = (current, previous);
        }
        return previous[b.Length];
    }
}
