using System.Text;
using EdgeTune.Profiles.Sensors;
using EdgeTune.Testing;

namespace EdgeTune.Profiles.Tests;

/// <summary>A Jetson's /sys, /proc and /etc as a folder tree, built file by file.</summary>
internal sealed class FakeBoard : IDisposable
{
    private readonly TempDir _dir = new();

    public SystemRoot Root => new(_dir.Path);

    public FakeBoard File(string absolute, string content)
    {
        string path = Path.Combine(_dir.Path, absolute.TrimStart('/'));
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        System.IO.File.WriteAllText(path, content);
        return this;
    }

    public FakeBoard Bytes(string absolute, byte[] content)
    {
        string path = Path.Combine(_dir.Path, absolute.TrimStart('/'));
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        System.IO.File.WriteAllBytes(path, content);
        return this;
    }

    /// <summary>An INA3221 at i2c 1-0040 whose hwmon folder is hwmonN (the number is not stable on a real board).</summary>
    public FakeBoard Ina3221(int hwmon, params (string Label, int MilliVolts, int MilliAmps)[] channels)
    {
        File("/sys/bus/i2c/devices/1-0040/name", "ina3221\n");
        string dir = $"/sys/bus/i2c/devices/1-0040/hwmon/hwmon{hwmon}";
        File(dir + "/name", "ina3221\n");
        for (int i = 0; i < channels.Length; i++)
        {
            File($"{dir}/in{i + 1}_label", channels[i].Label + "\n");
            File($"{dir}/in{i + 1}_input", channels[i].MilliVolts + "\n");
            File($"{dir}/curr{i + 1}_input", channels[i].MilliAmps + "\n");
        }
        return this;
    }

    public FakeBoard Power(int hwmon, int channel, int milliVolts, int milliAmps)
    {
        string dir = $"/sys/bus/i2c/devices/1-0040/hwmon/hwmon{hwmon}";
        File($"{dir}/in{channel}_input", milliVolts + "\n");
        File($"{dir}/curr{channel}_input", milliAmps + "\n");
        return this;
    }

    public FakeBoard ThermalZone(int index, string type, int milliC, int? passiveTripMilliC = null)
    {
        string dir = $"/sys/devices/virtual/thermal/thermal_zone{index}";
        File(dir + "/type", type + "\n");
        File(dir + "/temp", milliC + "\n");
        File(dir + "/trip_point_0_type", "critical\n");
        File(dir + "/trip_point_0_temp", "105000\n");
        if (passiveTripMilliC is { } trip)
        {
            File(dir + "/trip_point_1_type", "passive\n");
            File(dir + "/trip_point_1_temp", trip + "\n");
        }
        return this;
    }

    public FakeBoard CoolingDevice(int index, string type, int state)
    {
        File($"/sys/devices/virtual/thermal/cooling_device{index}/type", type + "\n");
        File($"/sys/devices/virtual/thermal/cooling_device{index}/cur_state", state + "\n");
        return this;
    }

    public FakeBoard Gpu(string node, string ofName, int loadPerMille, long frequency = 624750000, long maxFrequency = 624750000)
    {
        string dir = $"/sys/class/devfreq/{node}";
        Bytes(dir + "/device/of_node/name", Encoding.ASCII.GetBytes(ofName + "\0"));
        File(dir + "/device/load", loadPerMille + "\n");
        File(dir + "/cur_freq", frequency + "\n");
        File(dir + "/max_freq", maxFrequency + "\n");
        return this;
    }

    public FakeBoard DeviceTree(string model, params string[] compatible)
    {
        Bytes("/proc/device-tree/compatible", Encoding.ASCII.GetBytes(string.Concat(compatible.Select(c => c + "\0"))));
        Bytes("/proc/device-tree/model", Encoding.ASCII.GetBytes(model + "\0"));
        return this;
    }

    public FakeBoard NvpModel(int? active, params (int Id, string Name)[] modes)
    {
        var conf = new StringBuilder("# nvpmodel configuration\n");
        foreach (var (id, name) in modes)
        {
            conf.Append($"< POWER_MODEL ID={id} NAME={name} >\n");
            conf.Append("CPU_ONLINE CORE_0 1\n");
        }
        conf.Append("< PM_CONFIG DEFAULT=0 >\n");
        File("/etc/nvpmodel.conf", conf.ToString());
        if (active is { } a) File("/var/lib/nvpmodel/status", $"pmode:{a:0000} fmode:quiet\n");
        return this;
    }

    /// <summary>An Orin Nano devkit (JetPack 6.2, Super firmware) at rest.</summary>
    public static FakeBoard OrinNanoSuper(int activeMode = 2) => new FakeBoard()
        .DeviceTree("NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super", "nvidia,p3768-0000+p3767-0005-super", "nvidia,p3767-0005", "nvidia,tegra234")
        .NvpModel(activeMode, (0, "15W"), (1, "25W"), (2, "MAXN_SUPER"), (3, "7W"))
        .Ina3221(3, ("VDD_IN", 5000, 1200), ("VDD_CPU_GPU_CV", 5000, 400), ("VDD_SOC", 5000, 300))
        .ThermalZone(0, "cpu-thermal", 45500, 99000)
        .ThermalZone(1, "gpu-thermal", 44000, 99000)
        .ThermalZone(2, "soc0-thermal", -256000)
        .ThermalZone(8, "tj-thermal", 46250, 99000)
        .CoolingDevice(0, "pwm-fan", 3)
        .Gpu("17000000.gpu", "gpu", 734);

    public void Dispose() => _dir.Dispose();
}
