namespace EdgeTune.Profiles.Tests;

public class DetectorTests
{
    private static IReadOnlyList<DeviceProfile> Shipped()
    {
        var loader = new ProfileLoader(new ProfileCatalog([TestProfiles.ShippedProfiles]));
        return loader.Catalog.List().Select(loader.Load).ToList();
    }

    [Fact]
    public void An_orin_nano_with_super_firmware_is_the_super_profile()
    {
        using var board = FakeBoard.OrinNanoSuper();
        var d = ProfileDetector.Detect(board.Root, Shipped(), "aarch64");
        Assert.Equal("jetson-orin-nano-8gb-super", d.Profile?.Name);
        Assert.Equal("/proc/device-tree/compatible matches nvidia,p3767-0005 and nvpmodel.conf defines MAXN_SUPER", d.Reason);
    }

    [Fact]
    public void An_orin_nano_without_super_modes_is_the_base_profile()
    {
        using var board = new FakeBoard()
            .DeviceTree("NVIDIA Jetson Orin Nano Developer Kit", "nvidia,p3768-0000+p3767-0005", "nvidia,p3767-0005", "nvidia,tegra234")
            .NvpModel(0, (0, "15W"), (1, "7W"));
        var d = ProfileDetector.Detect(board.Root, Shipped(), "aarch64");
        Assert.Equal("jetson-orin-nano-8gb", d.Profile?.Name);
        Assert.Equal("15W", d.NvpModel?.ActiveName);
    }

    [Fact]
    public void Other_boards_are_told_apart_by_their_module_ids()
    {
        using var nx = new FakeBoard().DeviceTree("NVIDIA Orin NX Developer Kit", "nvidia,p3768-0000+p3767-0000", "nvidia,tegra234");
        Assert.Equal("jetson-orin-nx-16gb", ProfileDetector.Detect(nx.Root, Shipped(), "aarch64").Profile?.Name);
        using var agx = new FakeBoard().DeviceTree("Jetson AGX Orin Developer Kit", "nvidia,p3737-0000+p3701-0005", "nvidia,p3701-0005", "nvidia,tegra234");
        Assert.Equal("jetson-agx-orin-64gb", ProfileDetector.Detect(agx.Root, Shipped(), "aarch64").Profile?.Name);
        using var pi = new FakeBoard().DeviceTree("Raspberry Pi 5 Model B Rev 1.0", "raspberrypi,5-model-b", "brcm,bcm2712");
        Assert.Equal("raspberry-pi-5-8gb", ProfileDetector.Detect(pi.Root, Shipped(), "aarch64").Profile?.Name);
        using var xavier = new FakeBoard().DeviceTree("NVIDIA Jetson Xavier NX Developer Kit", "nvidia,p3449-0000+p3668-0001", "nvidia,jetson-xavier-nx", "nvidia,tegra194");
        Assert.Equal("jetson-xavier-nx", ProfileDetector.Detect(xavier.Root, Shipped(), "aarch64").Profile?.Name);
    }

    [Fact]
    public void An_x86_machine_gets_the_generic_profile_and_an_unknown_arm_board_none()
    {
        using var pc = new FakeBoard();
        var d = ProfileDetector.Detect(pc.Root, Shipped(), "x86_64");
        Assert.Equal("x86-64-generic", d.Profile?.Name);
        Assert.Equal("no device tree; x86-64-generic is the generic x86_64 profile", d.Reason);

        using var unknown = new FakeBoard().DeviceTree("Some SBC", "acme,sbc-1", "acme,soc");
        var none = ProfileDetector.Detect(unknown.Root, Shipped(), "aarch64");
        Assert.Null(none.Profile);
        Assert.Equal("no aarch64 profile lists this board's device tree (acme,sbc-1, acme,soc)", none.Reason);
    }
}
