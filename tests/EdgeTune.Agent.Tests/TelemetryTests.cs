using System.Text;

namespace EdgeTune.Agent.Tests;

public sealed class TelemetryTests
{
    private static void Write(string root, string path, string text)
    {
        string full = Path.Combine(root, path.TrimStart('/'));
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        File.WriteAllText(full, text);
    }

    [Fact]
    public async Task Metrics_carry_power_temperature_and_gpu_gauges_from_a_fake_sysfs_tree()
    {
        var agent = new AgentFixture(8, null, extra: "[telemetry]\nsysfs_root = \"board\"\npower_rails = [\"VDD_IN\"]");
        string root = Path.Combine(agent.Folder, "board");
        // An INA3221 whose hwmon number is arbitrary, found through its i2c name.
        Write(root, "/sys/bus/i2c/devices/1-0040/name", "ina3221\n");
        string hwmon = "/sys/bus/i2c/devices/1-0040/hwmon/hwmon7";
        Write(root, hwmon + "/in1_label", "VDD_IN\n");
        Write(root, hwmon + "/in1_input", "5000\n");
        Write(root, hwmon + "/curr1_input", "1500\n");
        Write(root, hwmon + "/in2_label", "VDD_CPU_GPU_CV\n");
        Write(root, hwmon + "/in2_input", "5000\n");
        Write(root, hwmon + "/curr2_input", "400\n");
        Write(root, "/sys/devices/virtual/thermal/thermal_zone0/type", "cpu-thermal\n");
        Write(root, "/sys/devices/virtual/thermal/thermal_zone0/temp", "48500\n");
        Write(root, "/sys/devices/virtual/thermal/thermal_zone1/type", "gpu-thermal\n");
        Write(root, "/sys/devices/virtual/thermal/thermal_zone1/temp", "-256000\n");   // offline: left out
        string gpu = Path.Combine(root, "sys/class/devfreq/17000000.gpu");
        Directory.CreateDirectory(Path.Combine(gpu, "device/of_node"));
        File.WriteAllBytes(Path.Combine(gpu, "device/of_node/name"), Encoding.ASCII.GetBytes("ga10b\0"));
        File.WriteAllText(Path.Combine(gpu, "device/load"), "375\n");
        await agent.InitializeAsync();
        try
        {
            using var response = await agent.Client.GetAsync("/metrics");
            string text = await response.Content.ReadAsStringAsync();
            Assert.Contains("edgetune_rail_power_watts{rail=\"VDD_IN\"} 7.5\n", text, StringComparison.Ordinal);
            Assert.Contains("edgetune_board_power_watts 7.5\n", text, StringComparison.Ordinal);
            Assert.Contains("edgetune_temperature_celsius{zone=\"cpu-thermal\"} 48.5\n", text, StringComparison.Ordinal);
            Assert.DoesNotContain("gpu-thermal", text, StringComparison.Ordinal);
            Assert.Contains("edgetune_gpu_load_percent 37.5\n", text, StringComparison.Ordinal);
            Assert.Contains("edgetune_throttling 0\n", text, StringComparison.Ordinal);
        }
        finally
        {
            await agent.DisposeAsync();
        }
    }
}
