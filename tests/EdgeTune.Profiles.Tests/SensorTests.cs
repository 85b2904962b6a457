using EdgeTune.Profiles.Sensors;

namespace EdgeTune.Profiles.Tests;

public class SensorTests
{
    private static readonly SensorSpec OrinSensors = new("ina3221", ["VDD_IN"], ["cpu-thermal", "gpu-thermal", "soc0-thermal", "tj-thermal"], ["ga10b", "gpu"], null);

    [Fact]
    public void Ina3221_rails_are_found_through_i2c_and_read_as_volts_times_amps()
    {
        using var board = FakeBoard.OrinNanoSuper();
        var sensors = BoardSensors.Discover(board.Root, OrinSensors);
        Assert.Equal(["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"], sensors.AllRails.Select(r => r.Label));
        Assert.Equal(["VDD_IN"], sensors.PowerRails.Select(r => r.Label));
        var reading = sensors.Read(0);
        Assert.Equal(6.0, reading.PowerWatts!.Value, 12);        // 5000 mV x 1200 mA
        Assert.Equal(6.0, reading.RailWatts["VDD_IN"], 12);

        // Summing several rails, as AGX Orin needs.
        var both = BoardSensors.Discover(board.Root, OrinSensors with { PowerRails = ["VDD_CPU_GPU_CV", "VDD_SOC"] });
        Assert.Equal(3.5, both.Read(0).PowerWatts!.Value, 12);  // 2.0 W + 1.5 W
    }

    [Fact]
    public void Temperatures_skip_offline_zones_and_keep_passive_trip_points()
    {
        using var board = FakeBoard.OrinNanoSuper();
        var sensors = BoardSensors.Discover(board.Root, OrinSensors);
        Assert.Equal(["cpu-thermal", "gpu-thermal", "soc0-thermal", "tj-thermal"], sensors.ThermalZones.Select(z => z.Type));
        Assert.Equal(99.0, sensors.ThermalZones[0].PassiveTripC);
        var reading = sensors.Read(0);
        Assert.Equal(45.5, reading.TemperaturesC["cpu-thermal"]);
        Assert.Equal(46.25, reading.TemperaturesC["tj-thermal"]);
        Assert.False(reading.TemperaturesC.ContainsKey("soc0-thermal")); // -256 °C: the zone is offline
        Assert.Empty(reading.Throttling);                                 // the fan spinning is not throttling
        Assert.Equal(73.4, reading.GpuLoadPercent!.Value, 12);
    }

    [Fact]
    public void Throttling_is_a_zone_past_its_passive_trip_or_an_engaged_cooling_device()
    {
        using var board = FakeBoard.OrinNanoSuper().ThermalZone(0, "cpu-thermal", 99500, 99000).CoolingDevice(1, "cpu-balanced", 2);
        var reading = BoardSensors.Discover(board.Root, OrinSensors).Read(0);
        Assert.Equal(["cpu-thermal at 99.5 °C (limit 99 °C)", "cooling device cpu-balanced engaged (state 2)"], reading.Throttling);

        // Without passive trip points the profile's throttle temperature is the limit.
        using var pi = new FakeBoard().ThermalZone(0, "cpu-thermal", 81000);
        var piSensors = BoardSensors.Discover(pi.Root, new SensorSpec("none", [], ["cpu-thermal"], [], new Quantity(80, Schema.Dimension.Temperature, 80, "C", new Provenance("https://example.com", null, null, default))));
        Assert.Equal(["cpu-thermal at 81 °C (limit 80 °C)"], piSensors.Read(0).Throttling);
    }

    [Fact]
    public void Absent_sensors_are_reported_with_the_reason()
    {
        using var empty = new FakeBoard();
        var sensors = BoardSensors.Discover(empty.Root, OrinSensors);
        Assert.False(sensors.HasPower);
        Assert.False(sensors.HasTemperatures);
        Assert.Null(sensors.Gpu);
        Assert.Equal(
        [
            "power: no ina3221 under /sys/bus/i2c/devices (or /sys/class/hwmon)",
            "temperatures: none of cpu-thermal, gpu-thermal, soc0-thermal, tj-thermal under /sys/devices/virtual/thermal",
            "gpu load: no devfreq node named ga10b or gpu under /sys/class/devfreq",
        ], sensors.Absent);
        var reading = sensors.Read(0);
        Assert.Null(reading.PowerWatts);
        Assert.Empty(reading.TemperaturesC);

        using var board = FakeBoard.OrinNanoSuper();
        var wrongRail = BoardSensors.Discover(board.Root, OrinSensors with { PowerRails = ["VDD_GPU_SOC"] });
        Assert.False(wrongRail.HasPower);
        Assert.Equal("power: rails VDD_GPU_SOC not found (the board has VDD_IN, VDD_CPU_GPU_CV, VDD_SOC)", wrongRail.Absent[0]);
    }

    [Fact]
    public void Nvpmodel_ids_are_read_from_the_board()
    {
        using var board = FakeBoard.OrinNanoSuper(activeMode: 1);
        var nvp = NvpModel.Read(board.Root)!;
        Assert.Equal("25W", nvp.ActiveName);
        Assert.Equal(4, nvp.Modes.Count);
        Assert.True(nvp.Defines("maxn_super"));

        // Without a saved status nvpmodel applies the configured default.
        using var fresh = new FakeBoard().NvpModel(null, (0, "15W"), (1, "7W"));
        Assert.Equal("15W", NvpModel.Read(fresh.Root)!.ActiveName);
        using var none = new FakeBoard();
        Assert.Null(NvpModel.Read(none.Root));
    }

    [Fact]
    public void Device_tree_ids_match_joined_and_suffixed_compatible_entries()
    {
        using var board = FakeBoard.OrinNanoSuper();
        var tree = DeviceTree.Read(board.Root);
        Assert.Equal(["nvidia,p3768-0000+p3767-0005-super", "nvidia,p3767-0005", "nvidia,tegra234"], tree.Compatible);
        Assert.Equal("NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super", tree.Model);
        Assert.True(tree.Matches("nvidia,p3767-0005"));
        Assert.True(tree.Matches("nvidia,p3768-0000"));
        Assert.False(tree.Matches("nvidia,p3767-0000"));  // Orin NX 16GB
        Assert.False(tree.Matches("nvidia,p3767-000"));
        Assert.False(tree.Matches("raspberrypi,p3767-0005"));
    }

    [Fact]
    public void Energy_is_integrated_over_interpolated_power()
    {
        // Readings at t = 0, 10, 20 ticks (10 ticks per second): 4 W, 6 W, 6 W.
        var readings = new[] { (0L, 4.0), (10L, 6.0), (20L, 6.0) }
            .Select(p => new SensorReading(p.Item1, p.Item2, new Dictionary<string, double> { ["VDD_IN"] = p.Item2 }, new Dictionary<string, double>(), null, null, null, []))
            .ToList();
        var trace = new SensorTrace(readings, [], timestampFrequency: 10);
        Assert.Equal(5.0, trace.Joules(0, 10)!.Value, 12);   // 1 s ramping 4 -> 6 W
        Assert.Equal(2.75, trace.Joules(5, 10)!.Value, 12);  // 0.5 s from 5 W to 6 W
        Assert.Equal(11.0, trace.Joules(0, 20)!.Value, 12);  // 5 J + 6 J
        Assert.Equal(12.0, trace.Joules(20, 40)!.Value, 12); // held flat after the last reading
        Assert.Equal(8.0, trace.Joules(-20, 0)!.Value, 12);  // and before the first
        Assert.Equal(5.5, trace.AverageWatts([(0, 20)])!.Value, 12);
        Assert.Equal((5.0 + 12.0) / 3.0, trace.AverageWatts([(0, 10), (20, 40)])!.Value, 12);
        Assert.Null(new SensorTrace([], [], 10).Joules(0, 10));
    }

    [Fact]
    public void The_sampler_reads_at_start_and_stop_and_in_between()
    {
        using var board = FakeBoard.OrinNanoSuper();
        var sensors = BoardSensors.Discover(board.Root, OrinSensors);
        using var sampler = new SensorSampler(sensors, TimeProvider.System, TimeSpan.FromMilliseconds(5));
        sampler.Start();
        // Until the loop has read once on its own (a liveness bound, not a timing assertion: a loaded machine may
        // take longer than the 5 ms interval).
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (sampler.Count < 2 && DateTime.UtcNow < deadline) Thread.Sleep(5);
        var trace = sampler.Stop();
        Assert.True(trace.Readings.Count >= 3, $"{trace.Readings.Count} readings");
        Assert.All(trace.Readings, r => Assert.Equal(6.0, r.PowerWatts!.Value, 12));
        Assert.True(trace.Readings.Zip(trace.Readings.Skip(1)).All(p => p.First.Timestamp <= p.Second.Timestamp));
        Assert.All(trace.Memory, m => Assert.True(m.ProcessResidentBytes > 0));
        Assert.Equal(6.0, trace.AverageWatts([(trace.Readings[0].Timestamp, trace.Readings[^1].Timestamp)])!.Value, 9);
    }
}
