using System.Device.Gpio;

namespace EdgeTune.Hardware.Led;

public enum LedState { Off, Ready, Busy, Error }

/// <summary>
/// A status LED on one GPIO pin: ready = steady on, busy = 2 Hz blink, error = 8 Hz blink, off = off.
/// <see cref="Update"/> is called with the current time by whoever drives it (a timer in the agent, the test's
/// clock in tests), so the pattern is a pure function of state and time.
/// </summary>
public sealed class StatusLed : IDisposable
{
    private readonly GpioController _gpio;
    private readonly int _pin;
    private PinValue _value = PinValue.Low;

    public StatusLed(GpioController gpio, int pin)
    {
        _gpio = gpio;
        _pin = pin;
        _gpio.OpenPin(pin, PinMode.Output, PinValue.Low);
    }

    public LedState State { get; set; }

    public static PinValue Pattern(LedState state, TimeSpan now) => state switch
    {
        LedState.Ready => PinValue.High,
        LedState.Busy => (long)(now.TotalMilliseconds / 250) % 2 == 0 ? PinValue.High : PinValue.Low,
        LedState.Error => (long)(now.TotalMilliseconds / 62.5) % 2 == 0 ? PinValue.High : PinValue.Low,
        _ => PinValue.Low,
    };

    /// <summary>Writes the pattern's value for <paramref name="now"/> (only when it changes).</summary>
    public void Update(TimeSpan now)
    {
        var value = Pattern(State, now);
        if (value == _value) return;
        _gpio.Write(_pin, value);
        _value = value;
    }

    public void Dispose()
    {
        if (_gpio.IsPinOpen(_pin))
        {
            _gpio.Write(_pin, PinValue.Low);
            _gpio.ClosePin(_pin);
        }
    }
}
