using System.Text.Json;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Testing;

namespace EdgeTune.Cli.Tests;

public class ProfilesCommandTests
{
    private static readonly string Shipped = Path.Combine(AppContext.BaseDirectory, "profiles");

    /// <summary>A copy of a shipped profile with one text replaced; returns the path and the 1-based line and column of the replacement.</summary>
    private static (string Path, int Line, int Column) Broken(TempDir dir, string profile, string find, string replace, string? asName = null)
    {
        string text = File.ReadAllText(Path.Combine(Shipped, profile + ".toml"));
        int at = text.IndexOf(find, StringComparison.Ordinal);
        Assert.True(at >= 0, $"'{find}' not in {profile}.toml");
        text = text[..at] + replace + text[(at + find.Length)..];
        string name = asName ?? profile;
        if (asName is not null) text = text.Replace($"name = \"{profile}\"", $"name = \"{asName}\"", StringComparison.Ordinal);
        string path = dir.File(name + ".toml");
        File.WriteAllText(path, text);
        int line = text[..at].Count(c => c == '\n') + 1;
        int column = at - (text.LastIndexOf('\n', Math.Max(0, at - 1)) + 1) + 1;
        return (path, line, column);
    }

    [Fact]
    public void Every_shipped_profile_validates()
    {
        var r = CliRunner.Run("profiles", "validate");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("", r.Stderr);
        Assert.Contains("11 profiles valid", r.Stdout);
        foreach (var name in new[] { "jetson-orin-nano-8gb", "jetson-orin-nano-8gb-super", "jetson-orin-nx-16gb", "jetson-agx-orin-64gb", "jetson-xavier-nx", "raspberry-pi-5-8gb", "x86-64-generic",
                     "workstation-rtx-4090", "server-a100-80gb", "server-h100-sxm", "server-h200" })
            Assert.Contains($"({name})", r.Stdout);

        var json = CliRunner.Run("profiles", "validate", Shipped, "--json");
        Assert.Equal(0, json.ExitCode);
        using var doc = JsonDocument.Parse(json.Stdout);
        Assert.Equal(11, doc.RootElement.GetArrayLength());
        Assert.All(doc.RootElement.EnumerateArray(), e => Assert.True(e.GetProperty("valid").GetBoolean()));
    }

    public static TheoryData<string, string, string, string, string> MalformedCases => new()
    {
        // profile, text to find, replacement, offset of the reported column within the replacement's key, expected "key: message"
        { "x86-64-generic", "bandwidth = { value = 51.2,", "bandwidth = { value = \"fast\",", "value", "memory.bandwidth.value: expected a number, found the string \"fast\"" },
        { "x86-64-generic", "bandwidth = { value = 51.2,", "bandwith = { value = 51.2,", "bandwith", "memory.bandwith: unknown key; did you mean 'bandwidth'?" },
        { "x86-64-generic", "bandwidth = { value = 51.2,", "bandwidth = { value = -51.2,", "value", "memory.bandwidth.value: must be greater than 0 GB/s, found -51.2 GB/s" },
        { "x86-64-generic", "unit = \"GB/s\"", "unit = \"GB\"", "unit", "memory.bandwidth.unit: 'GB' is a memory size unit; a bandwidth is written in MB/s, GB/s, TB/s, MiB/s, GiB/s" },
        { "raspberry-pi-5-8gb", "cores = { value = 4,", "cores = { value = 4.5,", "value", "cpu.cores.value: is a count and must be a whole number, found the float 4.5" },
    };

    [Theory]
    [MemberData(nameof(MalformedCases))]
    public void Each_malformed_profile_gives_its_file_line_and_column(string profile, string find, string replace, string keyAt, string expected)
    {
        using var dir = new TempDir();
        var (path, line, column) = Broken(dir, profile, find, replace);
        column += replace.IndexOf(keyAt, StringComparison.Ordinal);
        var r = CliRunner.Run("profiles", "validate", path);
        Assert.Equal(1, r.ExitCode);
        Assert.Equal($"{path}:{line}:{column}: {expected}", r.Stderr.TrimEnd());
        Assert.Contains("1 of 1 profile invalid (1 problem)", r.Stdout);
    }

    [Fact]
    public void A_missing_required_key_is_reported_at_its_table()
    {
        using var dir = new TempDir();
        var (path, _, _) = Broken(dir, "x86-64-generic", "bandwidth = { value = 51.2, unit = \"GB/s\", source = \"derived: two 64-bit DDR4-3200 channels, 2 x 8 bytes x 3200e6 transfers/s = 51.2 GB/s\" }", "");
        int memoryLine = File.ReadAllLines(path).ToList().IndexOf("[memory]") + 1;
        var r = CliRunner.Run("profiles", "validate", path);
        Assert.Equal(1, r.ExitCode);
        Assert.Equal($"{path}:{memoryLine}:2: memory.bandwidth: required key is missing", r.Stderr.TrimEnd());
    }

    [Fact]
    public void Broken_and_cyclic_extends_are_refused_at_the_extends_key()
    {
        using var dir = new TempDir();
        var (orphan, line, column) = Broken(dir, "jetson-orin-nano-8gb-super", "extends = \"jetson-orin-nano-8gb\"", "extends = \"jetson-orin-nano-9gb\"");
        var r = CliRunner.Run("profiles", "validate", orphan);
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith($"{orphan}:{line}:{column}: extends: no profile named 'jetson-orin-nano-9gb' (looked for jetson-orin-nano-9gb.toml beside this file and in ", r.Stderr);

        // base extends super, super extends base: a cycle, reported where it closes.
        using var cycle = new TempDir();
        var (basePath, baseLine, _) = Broken(cycle, "jetson-orin-nano-8gb", "[identity]", "extends = \"jetson-orin-nano-8gb-super\"\n\n[identity]");
        File.Copy(Path.Combine(Shipped, "jetson-orin-nano-8gb-super.toml"), cycle.File("jetson-orin-nano-8gb-super.toml"));
        r = CliRunner.Run("profiles", "validate", basePath);
        Assert.Equal(1, r.ExitCode);
        int superExtendsLine = File.ReadAllLines(cycle.File("jetson-orin-nano-8gb-super.toml")).ToList().FindIndex(l => l.StartsWith("extends", StringComparison.Ordinal)) + 1;
        Assert.Equal($"{cycle.File("jetson-orin-nano-8gb-super.toml")}:{superExtendsLine}:1: extends: extends cycle: jetson-orin-nano-8gb -> jetson-orin-nano-8gb-super -> jetson-orin-nano-8gb", r.Stderr.TrimEnd());
        Assert.True(baseLine > 0);
    }

    [Fact]
    public void Show_lists_merged_values_with_source_and_origin()
    {
        var r = CliRunner.Run("profiles", "show", "jetson-orin-nano-8gb-super");
        Assert.Equal(0, r.ExitCode);
        var bandwidth = r.Stdout.Split('\n').Single(l => l.TrimStart().StartsWith("memory.bandwidth ", StringComparison.Ordinal));
        Assert.Contains("102 GB/s", bandwidth);
        Assert.Contains("https://developer.nvidia.com/blog/nvidia-jetson-orin-nano-developer-kit-gets-a-super-boost/", bandwidth);
        Assert.Contains("(jetson-orin-nano-8gb-super.toml:", bandwidth);
        var total = r.Stdout.Split('\n').Single(l => l.TrimStart().StartsWith("memory.total ", StringComparison.Ordinal));
        Assert.Contains("(jetson-orin-nano-8gb.toml:", total);       // inherited from the base profile
        Assert.Contains("power_modes.MAXN_SUPER", r.Stdout);
        Assert.Contains("1 figure is an estimate", r.Stdout);

        var json = CliRunner.Run("profiles", "show", "jetson-orin-nano-8gb-super", "--json");
        Assert.Equal(0, json.ExitCode);
        using var doc = JsonDocument.Parse(json.Stdout);
        var bw = doc.RootElement.GetProperty("memory").GetProperty("bandwidth");
        Assert.Equal(102e9, bw.GetProperty("canonical").GetDouble());
        Assert.Equal("B/s", bw.GetProperty("canonical_unit").GetString());
        Assert.Equal("uncapped", doc.RootElement.GetProperty("power_modes").GetProperty("MAXN_SUPER").GetProperty("value").GetString());
    }

    [Fact]
    public void Show_auto_recognises_a_board_from_its_files()
    {
        using var board = new TempDir();
        void Write(string path, string text)
        {
            string full = Path.Combine(board.Path, path.TrimStart('/'));
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            File.WriteAllText(full, text);
        }
        Write("/proc/device-tree/compatible", "nvidia,p3768-0000+p3767-0005\0nvidia,p3767-0005\0nvidia,tegra234\0");
        Write("/etc/nvpmodel.conf", "< POWER_MODEL ID=0 NAME=15W >\n< POWER_MODEL ID=1 NAME=25W >\n< POWER_MODEL ID=2 NAME=MAXN_SUPER >\n< POWER_MODEL ID=3 NAME=7W >\n< PM_CONFIG DEFAULT=2 >\n");
        var r = CliRunner.Run("profiles", "show", "auto", "--board-root", board.Path);
        Assert.Equal(0, r.ExitCode);
        Assert.StartsWith("jetson-orin-nano-8gb-super: ", r.Stdout);
        Assert.Contains("detected: /proc/device-tree/compatible matches nvidia,p3767-0005 and nvpmodel.conf defines MAXN_SUPER", r.Stdout);

        // This machine: x86-64 without a device tree.
        var host = CliRunner.Run("profiles", "show", "auto");
        Assert.Equal(0, host.ExitCode);
        Assert.StartsWith("x86-64-generic: ", host.Stdout);
    }

    [Fact]
    public void List_names_every_profile()
    {
        var r = CliRunner.Run("profiles", "list");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("jetson-orin-nano-8gb-super", r.Stdout);
        Assert.Contains("(extends jetson-orin-nano-8gb)", r.Stdout);
        Assert.Contains("204.8 GB/s", r.Stdout);
    }

    [Fact]
    public void Fit_gives_exact_file_bytes_and_a_recommendation()
    {
        using var dir = new TempDir();
        string model = dir.File("tiny.gguf");
        TinyLlama.WriteGguf(model, new TinyLlamaConfig());
        long tensorBytes, dataSection;
        using (var gguf = GgufFile.Open(model))
        {
            tensorBytes = gguf.Tensors.Sum(t => t.ByteLength);
            dataSection = gguf.FileSize - gguf.DataOffset;
        }

        var r = CliRunner.Run("profiles", "fit", "--profile", "jetson-orin-nano-8gb", "--model", model, "--context", "1024", "--json");
        Assert.Equal(0, r.ExitCode);
        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        var file = root.GetProperty("types")[0];
        Assert.True(file.GetProperty("is_file").GetBoolean());
        Assert.Equal("F32", file.GetProperty("type").GetString());
        Assert.Equal(tensorBytes, file.GetProperty("weight_bytes").GetInt64());
        Assert.Equal(dataSection, file.GetProperty("weight_bytes").GetInt64());
        Assert.Equal(1_048_576, file.GetProperty("kv_cache_bytes").GetInt64());          // 2 layers x 2 x 2 KV heads x 64 x 1024 x 2 bytes
        Assert.Equal(6_061_056, file.GetProperty("bytes_per_token").GetInt64());
        Assert.Equal(68e9 / 6_061_056, file.GetProperty("decode_bound_tokens_per_s").GetDouble(), 6);
        Assert.Equal("F16", root.GetProperty("recommended").GetString());
        Assert.Equal(17, root.GetProperty("types").GetArrayLength());                  // the file (F32) and llama-quantize's 16 other types

        var text = CliRunner.Run("profiles", "fit", "--profile", "jetson-orin-nano-8gb", "--model", model);
        Assert.Equal(0, text.ExitCode);
        Assert.Contains("F32 (file)", text.Stdout);
        Assert.Contains("<- recommended", text.Stdout);
        Assert.Contains("context 128: KV cache", text.Stdout);                           // the model's trained context, shorter than 4096
        Assert.Contains("recommended: F16:", text.Stdout);
    }

    [Fact]
    public void Bad_input_exits_1_with_one_line_and_bad_usage_exits_2()
    {
        using var dir = new TempDir();
        string model = dir.File("tiny.gguf");
        TinyLlama.WriteGguf(model, new TinyLlamaConfig { Layers = 1 });

        var missing = CliRunner.Run("profiles", "fit", "--profile", "x86-64-generic", "--model", dir.File("nope.gguf"));
        Assert.Equal(1, missing.ExitCode);
        Assert.Equal($"edgetune: {dir.File("nope.gguf")}: no such file", missing.Stderr.TrimEnd());

        var unknown = CliRunner.Run("profiles", "fit", "--profile", "jetson-nano-9000", "--model", model);
        Assert.Equal(1, unknown.ExitCode);
        Assert.StartsWith("edgetune: no profile named 'jetson-nano-9000' (looked for jetson-nano-9000.toml in ", unknown.Stderr);
        Assert.Single(unknown.Stderr.TrimEnd().Split('\n'));

        var (bad, line, column) = Broken(dir, "x86-64-generic", "bandwidth = { value = 51.2,", "bandwidth = { value = -1,");
        var invalid = CliRunner.RunProcess("profiles", "fit", "--profile", bad, "--model", model);
        Assert.Equal(1, invalid.ExitCode);
        Assert.Equal($"edgetune: {bad}:{line}:{column + 14}: memory.bandwidth.value: must be greater than 0 GB/s, found -1 GB/s", invalid.Stderr.TrimEnd());
        Assert.Equal("", invalid.Stdout);

        string notGguf = dir.File("notes.gguf");
        File.WriteAllText(notGguf, "not a model");
        var garbage = CliRunner.Run("profiles", "fit", "--profile", "x86-64-generic", "--model", notGguf);
        Assert.Equal(1, garbage.ExitCode);
        Assert.StartsWith($"edgetune: {notGguf}: ", garbage.Stderr);

        Assert.Equal(2, CliRunner.Run("profiles", "fit", "--profile", "x86-64-generic").ExitCode);
        Assert.Equal(2, CliRunner.Run("profiles", "fit", "--profile", "x86-64-generic", "--model", model, "--kv-type", "q3").ExitCode);
        Assert.Equal(2, CliRunner.Run("profiles", "fit", "--profile", "x86-64-generic", "--model", model, "--context", "0").ExitCode);
        Assert.Equal(2, CliRunner.Run("profiles", "frobnicate").ExitCode);
        Assert.Equal(1, CliRunner.Run("profiles", "validate", dir.File("none.toml")).ExitCode);
        foreach (var verb in new[] { "validate", "fit", "show", "list" })
            Assert.Equal(0, CliRunner.Run("profiles", verb, "--help").ExitCode);
    }
}
