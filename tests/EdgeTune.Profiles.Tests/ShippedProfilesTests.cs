using EdgeTune.Profiles.Schema;

namespace EdgeTune.Profiles.Tests;

public class ShippedProfilesTests
{
    private static readonly ProfileLoader Loader = new(new ProfileCatalog([TestProfiles.ShippedProfiles]));

    private static DeviceProfile Load(string name) => Loader.Load(name);

    [Fact]
    public void Every_shipped_profile_validates()
    {
        var files = Loader.Catalog.List();
        Assert.Equal(
        [
            "jetson-agx-orin-64gb", "jetson-orin-nano-8gb", "jetson-orin-nano-8gb-super", "jetson-orin-nx-16gb",
            "jetson-xavier-nx", "raspberry-pi-5-8gb", "server-a100-80gb", "server-h100-sxm", "server-h200", "workstation-rtx-4090", "x86-64-generic",
        ], files.Select(Path.GetFileNameWithoutExtension).Order(StringComparer.Ordinal));
        foreach (var file in files)
        {
            var result = Loader.Validate(file);
            Assert.True(result.IsValid, string.Join('\n', result.Diagnostics));
        }
    }

    [Fact]
    public void Training_gpu_profiles_carry_the_cards_memory_bandwidth_and_throughput_and_are_never_detected_as_the_host()
    {
        // The datasheets' figures (the profiles link them): memory, bandwidth, FP32 and dense BF16.
        var h100 = Load("server-h100-sxm");
        Assert.Equal(80e9, h100.Gpu!.Memory!.Value);
        Assert.Equal(3.35e12, h100.Gpu.MemoryBandwidth!.Value, 3);
        Assert.Equal(67e12, h100.Compute["fp32_tflops"].Value, 3);
        Assert.Equal(989e12, h100.Compute["bf16_tflops"].Value, 3);
        Assert.Equal(141e9, Load("server-h200").Gpu!.Memory!.Value);
        Assert.Equal(4.8e12, Load("server-h200").Gpu!.MemoryBandwidth!.Value, 3);
        Assert.Equal(19.5e12, Load("server-a100-80gb").Compute["fp32_tflops"].Value, 3);
        Assert.Equal(312e12, Load("server-a100-80gb").Compute["bf16_tflops"].Value, 3);
        Assert.Equal(1008e9, Load("workstation-rtx-4090").Gpu!.MemoryBandwidth!.Value, 3);
        Assert.Equal(82.6e12, Load("workstation-rtx-4090").Compute["fp32_tflops"].Value, 3);

        // An x86-64 host without a device tree is still the generic profile, whatever GPU profiles ship.
        var all = Loader.Catalog.List().Select(Loader.Load).ToList();
        var emptyBoard = Directory.CreateTempSubdirectory("edgetune-no-board-");
        try
        {
            var detection = ProfileDetector.Detect(new Sensors.SystemRoot(emptyBoard.FullName), all, "x86_64");
            Assert.Equal("x86-64-generic", detection.Profile?.Name);
        }
        finally
        {
            emptyBoard.Delete(recursive: true);
        }
    }

    [Fact]
    public void Bandwidths_and_compute_capabilities_are_the_datasheet_figures()
    {
        // REFERENCE.md: Orin Nano 8GB 68 GB/s (102 GB/s in Super mode), Orin NX 16GB 102.4 GB/s, AGX Orin 64GB 204.8 GB/s.
        Assert.Equal(68e9, Load("jetson-orin-nano-8gb").Memory.Bandwidth.Value);
        Assert.Equal(102e9, Load("jetson-orin-nano-8gb-super").Memory.Bandwidth.Value);
        Assert.Equal(102.4e9, Load("jetson-orin-nx-16gb").Memory.Bandwidth.Value, 3);
        Assert.Equal(204.8e9, Load("jetson-agx-orin-64gb").Memory.Bandwidth.Value, 3);
        Assert.Equal(59.7e9, Load("jetson-xavier-nx").Memory.Bandwidth.Value, 3);
        Assert.Equal(17.07e9, Load("raspberry-pi-5-8gb").Memory.Bandwidth.Value, 3);
        foreach (var orin in new[] { "jetson-orin-nano-8gb", "jetson-orin-nano-8gb-super", "jetson-orin-nx-16gb", "jetson-agx-orin-64gb" })
            Assert.Equal("8.7", Load(orin).Gpu!.ComputeCapability!.Value);
        Assert.Equal("7.2", Load("jetson-xavier-nx").Gpu!.ComputeCapability!.Value);
        Assert.Null(Load("raspberry-pi-5-8gb").Gpu!.ComputeCapability);
    }

    [Fact]
    public void The_super_variant_changes_only_what_super_mode_changes()
    {
        var nano = Load("jetson-orin-nano-8gb");
        var super = Load("jetson-orin-nano-8gb-super");
        Assert.EndsWith("jetson-orin-nano-8gb.toml", Assert.Single(super.ExtendsChain));
        Assert.Equal(nano.Memory.Total, super.Memory.Total);
        Assert.Equal(nano.Cpu.Cores, super.Cpu.Cores);
        Assert.Equal(1.7e9, super.Cpu.MaxFrequency!.Value, 3);
        Assert.Equal(1.5e9, nano.Cpu.MaxFrequency!.Value, 3);
        Assert.Equal(["15W", "7W", "25W", "MAXN_SUPER"], super.PowerModes.Select(m => m.Name));
        Assert.Null(super.FindPowerMode("MAXN_SUPER")!.Watts);
        Assert.Equal(25, super.Budgets.MaxWatts!.Value);
        Assert.Equal("MAXN_SUPER", super.Identity.DetectPowerMode);
    }

    [Fact]
    public void Jetson_datasheet_figures_cite_a_link()
    {
        foreach (var name in new[] { "jetson-orin-nano-8gb", "jetson-orin-nano-8gb-super", "jetson-orin-nx-16gb", "jetson-agx-orin-64gb", "jetson-xavier-nx" })
        {
            var p = Load(name);
            foreach (var q in new[] { p.Memory.Total, p.Memory.Bandwidth, p.Cpu.Cores, p.Gpu!.CudaCores! })
            {
                Assert.Equal(SourceKind.Link, q.Provenance.Kind);
                Assert.StartsWith("https://", q.Provenance.Source);
            }
            Assert.Equal(SourceKind.Link, p.Gpu.ComputeCapability!.Provenance.Kind);
            Assert.All(p.PowerModes, m => Assert.Equal(SourceKind.Link, m.Provenance.Kind));
        }
    }

    [Fact]
    public void The_profiles_readme_documents_every_schema_key()
    {
        string readme = File.ReadAllText(Path.Combine(TestProfiles.ShippedProfiles, "README.md"));
        var missing = ProfileSchema.KeyPaths().Where(k => !readme.Contains($"`{k}`", StringComparison.Ordinal)).ToList();
        Assert.True(missing.Count == 0, "profiles/README.md does not document: " + string.Join(", ", missing));
        foreach (var unit in Enum.GetValues<Dimension>().Where(Units.HasUnits).SelectMany(Units.Names))
            Assert.Contains($"`{unit}`", readme);
    }
}
