using EdgeTune.Profiles.Toml;
using EdgeTune.Testing;

namespace EdgeTune.Profiles.Tests;

public class ProfileValidationTests
{
    private static IReadOnlyList<string> Problems(TempDir dir, string path) =>
        TestProfiles.Loader(dir).Validate(path).Diagnostics.Select(d => d.ToString()).ToList();

    private static string Only(TempDir dir, string path)
    {
        var problems = Problems(dir, path);
        Assert.True(problems.Count == 1, "expected one problem, got:\n" + string.Join('\n', problems));
        return problems[0];
    }

    [Fact]
    public void The_minimal_profile_is_valid_and_reads_into_canonical_units()
    {
        using var dir = new TempDir();
        string path = TestProfiles.Write(dir, "board");
        var result = TestProfiles.Loader(dir).Validate(path);
        Assert.Empty(result.Diagnostics);
        var p = result.Profile!;
        Assert.Equal("board", p.Name);
        Assert.Equal(68e9, p.Memory.Bandwidth.Value);
        Assert.Equal(8e9, p.Memory.Total.Value);
        Assert.Equal(6, p.Cpu.Cores.Value);
        Assert.Equal("armv8.2-a", p.Cpu.Isa.Value);
        Assert.Equal(SourceKind.Estimate, p.Memory.UsableForModel.Provenance.Kind);
        Assert.Equal(new SourceLocation(path, 19, 1), p.Memory.Bandwidth.Provenance.Location);
        Assert.Contains("llama_cpp_cpu", p.Runtimes);
    }

    [Fact]
    public void Wrong_type_names_the_place()
    {
        using var dir = new TempDir();
        string path = TestProfiles.Write(dir, "board", TestProfiles.Line(13, "cores = { value = \"six\", source = \"https://example.com/datasheet\" }"));
        Assert.Equal($"{path}:13:11: cpu.cores.value: expected a number, found the string \"six\"", Only(dir, path));

        path = TestProfiles.Write(dir, "board", TestProfiles.Line(22, "llama_cpp_cpu = \"yes\""));
        Assert.Equal($"{path}:22:1: runtimes.llama_cpp_cpu: expected true or false, found the string \"yes\"", Only(dir, path));

        path = TestProfiles.Write(dir, "board", TestProfiles.Line(19, "bandwidth = 68"));
        Assert.StartsWith($"{path}:19:1: memory.bandwidth: expected a figure with its source, {{ value = …, unit = \"MB/s\", source = \"https://…\" }}; found the integer 68", Only(dir, path));

        path = TestProfiles.Write(dir, "board", TestProfiles.Line(13, "cores = { value = 6.5, source = \"https://example.com/datasheet\" }"));
        Assert.Equal($"{path}:13:11: cpu.cores.value: is a count and must be a whole number, found the float 6.5", Only(dir, path));
    }

    [Fact]
    public void Unknown_keys_are_flagged_with_a_suggestion()
    {
        using var dir = new TempDir();
        string path = TestProfiles.Write(dir, "board", TestProfiles.Line(19, "bandwith = { value = 68, unit = \"GB/s\", source = \"https://example.com/datasheet\" }"));
        Assert.Equal($"{path}:19:1: memory.bandwith: unknown key; did you mean 'bandwidth'?", Only(dir, path));

        path = TestProfiles.Write(dir, "board", TestProfiles.Append("", "[wifi]", "bands = 2"));
        Assert.StartsWith($"{path}:24:2: wifi: unknown key; expected one of schema, name, display_name", Only(dir, path));

        path = TestProfiles.Write(dir, "board", TestProfiles.Line(17, "total = { value = 8, unit = \"GB\", source = \"https://example.com/datasheet\", sauce = \"x\" }"));
        Assert.Equal($"{path}:17:77: memory.total.sauce: unknown key; did you mean 'source'?", Only(dir, path));
    }

    [Fact]
    public void Missing_required_keys_are_reported_where_their_table_is()
    {
        using var dir = new TempDir();
        string path = TestProfiles.Write(dir, "board", TestProfiles.Remove(19));
        Assert.Equal($"{path}:16:2: memory.bandwidth: required key is missing", Only(dir, path));

        path = TestProfiles.Write(dir, "board", TestProfiles.Remove(21, 22));
        Assert.Equal($"{path}:1:1: runtimes: required table [runtimes] is missing", Only(dir, path));

        path = TestProfiles.Write(dir, "board", TestProfiles.Line(17, "total = { value = 8, unit = \"GB\" }"));
        Assert.Equal($"{path}:17:1: memory.total.source: required key is missing; every figure names its source", Only(dir, path));

        path = TestProfiles.Write(dir, "board", TestProfiles.Line(17, "total = { value = 8, source = \"https://example.com/datasheet\" }"));
        Assert.StartsWith($"{path}:17:1: memory.total.unit: required key is missing; a memory size is written in B, KB, MB, GB", Only(dir, path));
    }

    [Fact]
    public void Ranges_and_units_are_checked_in_the_written_unit()
    {
        using var dir = new TempDir();
        string path = TestProfiles.Write(dir, "board", TestProfiles.Line(19, "bandwidth = { value = -68, unit = \"GB/s\", source = \"https://example.com/datasheet\" }"));
        Assert.Equal($"{path}:19:15: memory.bandwidth.value: must be greater than 0 GB/s, found -68 GB/s", Only(dir, path));

        path = TestProfiles.Write(dir, "board", TestProfiles.Line(19, "bandwidth = { value = 68, unit = \"GB\", source = \"https://example.com/datasheet\" }"));
        Assert.Equal($"{path}:19:27: memory.bandwidth.unit: 'GB' is a memory size unit; a bandwidth is written in MB/s, GB/s, TB/s, MiB/s, GiB/s", Only(dir, path));

        path = TestProfiles.Write(dir, "board", TestProfiles.Line(19, "bandwidth = { value = 68, unit = \"GB/sec\", source = \"https://example.com/datasheet\" }"));
        Assert.StartsWith($"{path}:19:27: memory.bandwidth.unit: unknown unit 'GB/sec'", Only(dir, path));

        path = TestProfiles.Write(dir, "board", TestProfiles.Line(13, "cores = { value = 0, source = \"https://example.com/datasheet\" }"));
        Assert.Equal($"{path}:13:11: cpu.cores.value: must be at least 1, found 0", Only(dir, path));

        path = TestProfiles.Write(dir, "board", TestProfiles.Line(13, "cores = { value = 6, unit = \"cores\", source = \"https://example.com/datasheet\" }"));
        Assert.Equal($"{path}:13:22: cpu.cores.unit: is a count and takes no unit", Only(dir, path));

        path = TestProfiles.Write(dir, "board", TestProfiles.Line(1, "schema = 2"));
        Assert.Equal($"{path}:1:1: schema: must be 1, found 2", Only(dir, path));

        // 8 GiB is more than 8 GB: usable memory larger than the total is refused.
        path = TestProfiles.Write(dir, "board", TestProfiles.Line(18, "usable_for_model = { value = 8, unit = \"GiB\", source = \"estimate: all of it\" }"));
        Assert.Equal($"{path}:18:1: memory.usable_for_model: 8.59 GB is more than memory.total (8 GB)", Only(dir, path));
    }

    [Fact]
    public void Sources_must_be_a_link_measured_with_a_date_or_an_explanation()
    {
        using var dir = new TempDir();
        string path = TestProfiles.Write(dir, "board", TestProfiles.Line(19, "bandwidth = { value = 68, unit = \"GB/s\", source = \"the internet\" }"));
        Assert.Equal($"{path}:19:42: memory.bandwidth.source: must be a link (https://…), \"measured\" with a date, or start with \"derived:\", \"estimate:\" or \"policy:\" and say how", Only(dir, path));

        path = TestProfiles.Write(dir, "board", TestProfiles.Line(19, "bandwidth = { value = 61.3, unit = \"GB/s\", source = \"measured\" }"));
        Assert.Equal($"{path}:19:44: memory.bandwidth.date: a measured figure needs the date it was measured (date = 2025-01-31)", Only(dir, path));

        path = TestProfiles.Write(dir, "board", TestProfiles.Line(19, "bandwidth = { value = 61.3, unit = \"GB/s\", source = \"measured\", date = 2025-03-14 }"));
        var result = TestProfiles.Loader(dir).Validate(path);
        Assert.True(result.IsValid, string.Join('\n', result.Diagnostics));
        Assert.Equal(new DateOnly(2025, 3, 14), result.Profile!.Memory.Bandwidth.Provenance.Date);
        Assert.Equal(SourceKind.Measured, result.Profile.Memory.Bandwidth.Provenance.Kind);

        path = TestProfiles.Write(dir, "board", TestProfiles.Line(19, "bandwidth = { value = 61.3, unit = \"GB/s\", source = \"measured\", date = \"March\" }"));
        Assert.Equal($"{path}:19:65: memory.bandwidth.date: expected a date such as 2025-01-31, found the string \"March\"", Only(dir, path));
    }

    [Fact]
    public void Syntax_errors_and_duplicate_keys_name_line_and_column()
    {
        using var dir = new TempDir();
        string path = TestProfiles.Write(dir, "board", TestProfiles.Line(12, "model = "));
        Assert.Equal($"{path}:12:9: syntax: Unexpected token end-of-line found while expecting a value", Only(dir, path));

        // TOML forbids defining a key twice; Tomlyn's model reader would keep the last one silently.
        path = TestProfiles.Write(dir, "board", TestProfiles.Line(7, "vendor = \"Again\""));
        Assert.Equal($"{path}:7:1: syntax: The key `identity.vendor` is already defined at (6,1) with `vendor = \"Test\"` and cannot be redefined", Only(dir, path));

        path = TestProfiles.Write(dir, "board", TestProfiles.Append("", "[memory]", "type = \"LPDDR5\""));
        Assert.StartsWith($"{path}:24:1: syntax: The key `memory` is already defined at (16,1)", Only(dir, path));
    }

    [Fact]
    public void The_name_must_match_the_file()
    {
        using var dir = new TempDir();
        string path = TestProfiles.WriteRaw(dir, "other", TestProfiles.Text("board"));
        Assert.Equal($"{path}:2:1: name: 'board' does not match the file name 'other.toml' (extends finds profiles by file name)", Only(dir, path));
    }

    [Fact]
    public void Cross_checks_name_the_offending_value()
    {
        using var dir = new TempDir();
        string path = TestProfiles.Write(dir, "board", TestProfiles.Append("llama_cpp_cuda = true"));
        Assert.Equal($"{path}:23:1: runtimes.llama_cpp_cuda: needs a CUDA GPU: set gpu.compute_capability", Only(dir, path));

        path = TestProfiles.Write(dir, "board", TestProfiles.Line(22, "llama_cpp_cpu = false"));
        Assert.StartsWith($"{path}:21:2: runtimes: no runtime is enabled", Only(dir, path));

        path = TestProfiles.Write(dir, "board", TestProfiles.Append("", "[budgets]", "max_model_memory = { value = 7, unit = \"GB\", source = \"policy: most of it\" }"));
        Assert.Equal($"{path}:25:1: budgets.max_model_memory: 7 GB is more than memory.usable_for_model (6 GB)", Only(dir, path));

        path = TestProfiles.Write(dir, "board", TestProfiles.Append("", "[sensors]", "power = \"ina3221\""));
        Assert.Equal($"{path}:25:1: sensors.power_rails: an INA3221 power monitor needs the rail labels to add up (power_rails = [\"VDD_IN\"])", Only(dir, path));
    }

    [Fact]
    public void Several_problems_are_all_reported_and_the_exception_names_the_first()
    {
        using var dir = new TempDir();
        string path = TestProfiles.Write(dir, "board", l => TestProfiles.Line(13, "cores = { value = -1, source = \"nowhere\" }")(l).Select(x => x.Replace("GB/s", "W", StringComparison.Ordinal)));
        var problems = Problems(dir, path);
        Assert.Equal(3, problems.Count);
        var e = Assert.Throws<ProfileException>(() => TestProfiles.Loader(dir).Load(path));
        Assert.StartsWith($"{path}:13:11: cpu.cores.value: must be at least 1, found -1 (and 2 more", e.Message);
        Assert.Equal(3, e.Diagnostics.Count);
    }
}
