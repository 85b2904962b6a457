using EdgeTune.Testing;

namespace EdgeTune.Profiles.Tests;

public class ExtendsTests
{
    private static string Variant(TempDir dir, string name, string parent, params string[] body) =>
        TestProfiles.WriteRaw(dir, name, string.Join('\n', new[] { "schema = 1", $"name = \"{name}\"", $"display_name = \"{name}\"", $"extends = \"{parent}\"" }.Concat(body)) + "\n");

    [Fact]
    public void A_variant_overrides_figures_merges_maps_and_inherits_the_rest()
    {
        using var dir = new TempDir();
        string basePath = TestProfiles.Write(dir, "base", TestProfiles.Append("", "[power_modes]", "15W = { value = 15, unit = \"W\", source = \"https://example.com/modes\" }"));
        string path = Variant(dir, "fast", "base",
            "",                                                                                                  // 5
            "[memory]",                                                                                          // 6
            "bandwidth = { value = 102, unit = \"GB/s\", source = \"https://example.com/super\" }",               // 7
            "",
            "[power_modes]",
            "MAXN_SUPER = { value = \"uncapped\", source = \"https://example.com/modes\" }");
        var result = TestProfiles.Loader(dir).Validate(path);
        Assert.True(result.IsValid, string.Join('\n', result.Diagnostics));
        var p = result.Profile!;
        Assert.Equal("fast", p.Name);
        Assert.Equal(102e9, p.Memory.Bandwidth.Value);
        Assert.Equal(path, p.Memory.Bandwidth.Provenance.Location.File);
        Assert.Equal(7, p.Memory.Bandwidth.Provenance.Location.Line);
        Assert.Equal(8e9, p.Memory.Total.Value);                       // inherited
        Assert.Equal(basePath, p.Memory.Total.Provenance.Location.File);
        Assert.Equal(["15W", "MAXN_SUPER"], p.PowerModes.Select(m => m.Name));
        Assert.Null(p.FindPowerMode("maxn super")!.Watts);              // uncapped; names compare loosely
        Assert.Equal(15, p.FindPowerMode("15W")!.Watts!.Value);
        Assert.Equal([basePath], p.ExtendsChain);
    }

    [Fact]
    public void A_variant_must_state_its_own_name_and_schema()
    {
        using var dir = new TempDir();
        TestProfiles.Write(dir, "base");
        string path = TestProfiles.WriteRaw(dir, "lazy", "extends = \"base\"\n");
        var problems = TestProfiles.Loader(dir).Validate(path).Diagnostics.Select(d => d.ToString()).ToList();
        Assert.Equal(
        [
            $"{path}:1:1: schema: required key is missing",
            $"{path}:1:1: name: required key is missing",
            $"{path}:1:1: display_name: required key is missing",
        ], problems);
    }

    [Fact]
    public void A_broken_extends_is_refused_at_the_extends_key()
    {
        using var dir = new TempDir();
        string path = Variant(dir, "orphan", "nope");
        var problem = Assert.Single(TestProfiles.Loader(dir).Validate(path).Diagnostics).ToString();
        Assert.Equal($"{path}:4:1: extends: no profile named 'nope' (looked for nope.toml beside this file and in {dir.Path})", problem);
    }

    [Fact]
    public void A_cyclic_extends_is_refused_where_the_cycle_closes()
    {
        using var dir = new TempDir();
        string a = Variant(dir, "a", "b");
        string b = Variant(dir, "b", "a");
        var problem = Assert.Single(TestProfiles.Loader(dir).Validate(a).Diagnostics).ToString();
        Assert.Equal($"{b}:4:1: extends: extends cycle: a -> b -> a", problem);

        string self = Variant(dir, "self", "self");
        problem = Assert.Single(TestProfiles.Loader(dir).Validate(self).Diagnostics).ToString();
        Assert.Equal($"{self}:4:1: extends: extends cycle: self -> self", problem);
    }

    [Fact]
    public void Problems_in_a_parent_are_reported_in_the_parent_file()
    {
        using var dir = new TempDir();
        string basePath = TestProfiles.Write(dir, "base", TestProfiles.Line(19, "bandwidth = { value = -1, unit = \"GB/s\", source = \"https://example.com/datasheet\" }"));
        string path = Variant(dir, "child", "base");
        var problem = Assert.Single(TestProfiles.Loader(dir).Validate(path).Diagnostics).ToString();
        Assert.Equal($"{basePath}:19:15: memory.bandwidth.value: must be greater than 0 GB/s, found -1 GB/s", problem);
    }

    [Fact]
    public void A_key_missing_from_the_whole_chain_is_reported()
    {
        using var dir = new TempDir();
        string basePath = TestProfiles.Write(dir, "base", TestProfiles.Remove(19));
        string path = Variant(dir, "child", "base");
        var problem = Assert.Single(TestProfiles.Loader(dir).Validate(path).Diagnostics).ToString();
        Assert.Equal($"{basePath}:16:2: memory.bandwidth: required key is missing", problem);

        // The variant supplies it: now both validate differently, the child fine.
        path = Variant(dir, "child", "base", "", "[memory]", "bandwidth = { value = 68, unit = \"GB/s\", source = \"https://example.com/datasheet\" }");
        Assert.True(TestProfiles.Loader(dir).Validate(path).IsValid);
    }
}
