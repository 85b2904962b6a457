using System.Device.Gpio;
using EdgeTune.Hardware.Buttons;
using EdgeTune.Hardware.Led;
using EdgeTune.Hardware.Power;

namespace EdgeTune.Hardware.Tests;

public sealed class HardwareTests
{
    [Fact]
    public void Button_presses_rate_up_and_down_once_each_despite_bounce()
    {
        var driver = new FakeGpioDriver();
        using var gpio = new GpioController(driver);
        var ratings = new List<int>();
        using var buttons = new FeedbackButtons(gpio, upPin: 5, downPin: 6, ratings.Add, TimeSpan.FromMilliseconds(50));

        // Thumbs up: press (low) and release (high), with contact bounce inside the debounce window.
        driver.Set(5, PinValue.Low);
        driver.Set(5, PinValue.High);
        driver.Set(5, PinValue.Low);
        Thread.Sleep(80);
        driver.Set(5, PinValue.High);
        Thread.Sleep(80);
        // Thumbs down.
        driver.Set(6, PinValue.Low);
        Thread.Sleep(80);
        driver.Set(6, PinValue.High);

        Assert.Equal([1, -1], ratings);
    }

    [Fact]
    public void Led_follows_the_state()
    {
        var driver = new FakeGpioDriver();
        using var gpio = new GpioController(driver);
        using var led = new StatusLed(gpio, 12);
        led.State = LedState.Ready;
        led.Update(TimeSpan.Zero);
        Assert.Equal(PinValue.High, driver.Value(12));
        led.Update(TimeSpan.FromSeconds(3));
        Assert.Equal(PinValue.High, driver.Value(12));

        led.State = LedState.Busy;
        var busy = Enumerable.Range(0, 8).Select(i => { led.Update(TimeSpan.FromMilliseconds(i * 125)); return driver.Value(12); }).ToList();
        Assert.Equal([PinValue.High, PinValue.High, PinValue.Low, PinValue.Low, PinValue.High, PinValue.High, PinValue.Low, PinValue.Low], busy);

        led.State = LedState.Error;
        led.Update(TimeSpan.FromMilliseconds(70));
        Assert.Equal(PinValue.Low, driver.Value(12));
        led.State = LedState.Off;
        led.Update(TimeSpan.FromMilliseconds(1000));
        Assert.Equal(PinValue.Low, driver.Value(12));
    }

    [Fact]
    public void Ina219_reads_the_register_map_in_SI_units()
    {
        var chip = new FakeIna219();
        using var monitor = new Ina219Monitor(chip, shuntOhms: 0.1, maxAmps: 3.2);
        // Datasheet calibration for 0.1 Ω and 3.2 A: LSB = 97.66 µA, CAL = trunc(0.04096 / (LSB · 0.1)) = 4194.
        Assert.Equal(4194, monitor.Calibration);
        Assert.Equal(4194, chip.Registers[5]);

        chip.Registers[2] = (ushort)((5000 / 4) << 3);   // bus voltage: 5.000 V in 4 mV steps, bits 15..3
        chip.Registers[1] = 1000;                          // shunt voltage: 10 mV in 10 µV steps
        chip.Registers[4] = 1024;                          // current register: 1024 · LSB = 0.1 A
        chip.Registers[3] = 256;                           // power register: 256 · 20 · LSB = 0.5 W
        var r = monitor.Read();
        Assert.Equal(5.0, r.BusVolts, 3);
        Assert.Equal(0.010, r.ShuntVolts, 6);
        Assert.Equal(0.1, r.Amps, 3);
        Assert.Equal(0.5, r.Watts, 3);
    }
}
