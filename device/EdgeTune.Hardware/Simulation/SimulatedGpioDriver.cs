using System.Device.Gpio;

namespace EdgeTune.Hardware.Simulation;

/// <summary>
/// A GPIO chip in memory: pin values, modes and edge callbacks. It stands in for the board where there are no
/// pins (a workstation, the demo, tests): <see cref="Set"/> drives an input as a wire would and
/// <see cref="Press"/> presses a pull-up button (low, then high again), raising the edges the bindings listen to.
/// </summary>
public class SimulatedGpioDriver : GpioDriver
{
    private readonly Dictionary<int, PinValue> _values = [];
    private readonly Dictionary<int, PinMode> _modes = [];
    private readonly Dictionary<int, List<(PinEventTypes Types, PinChangeEventHandler Handler)>> _callbacks = [];

    public List<(int Pin, PinValue Value)> Writes { get; } = [];

    protected override int PinCount => 64;
    protected override void OpenPin(int pinNumber) => _values.TryAdd(pinNumber, PinValue.High);
    protected override void ClosePin(int pinNumber) => _values.Remove(pinNumber);

    protected override void SetPinMode(int pinNumber, PinMode mode)
    {
        _modes[pinNumber] = mode;
        if (mode == PinMode.InputPullUp) _values[pinNumber] = PinValue.High;
    }

    protected override PinMode GetPinMode(int pinNumber) => _modes.GetValueOrDefault(pinNumber, PinMode.Input);
    protected override bool IsPinModeSupported(int pinNumber, PinMode mode) => true;
    protected override PinValue Read(int pinNumber) => _values.GetValueOrDefault(pinNumber, PinValue.Low);

    protected override void Write(int pinNumber, PinValue value)
    {
        _values[pinNumber] = value;
        Writes.Add((pinNumber, value));
    }

    protected override WaitForEventResult WaitForEvent(int pinNumber, PinEventTypes eventTypes, CancellationToken cancellationToken) =>
        throw new NotSupportedException();

    protected override void AddCallbackForPinValueChangedEvent(int pinNumber, PinEventTypes eventTypes, PinChangeEventHandler callback)
    {
        if (!_callbacks.TryGetValue(pinNumber, out var list)) _callbacks[pinNumber] = list = [];
        list.Add((eventTypes, callback));
    }

    protected override void RemoveCallbackForPinValueChangedEvent(int pinNumber, PinChangeEventHandler callback)
    {
        if (_callbacks.TryGetValue(pinNumber, out var list)) list.RemoveAll(c => c.Handler == callback);
    }

    /// <summary>A press and release of a button wired to ground with the pin pulled up.</summary>
    public void Press(int pin, TimeSpan? hold = null)
    {
        Set(pin, PinValue.Low);
        Thread.Sleep(hold ?? TimeSpan.FromMilliseconds(80));
        Set(pin, PinValue.High);
    }

    public PinValue Value(int pin) => _values.GetValueOrDefault(pin, PinValue.Low);

    /// <summary>Drives an input pin to a level, raising the edge callbacks as the chip would.</summary>
    public void Set(int pin, PinValue value)
    {
        var old = _values.GetValueOrDefault(pin, PinValue.High);
        _values[pin] = value;
        if (old == value) return;
        var edge = value == PinValue.High ? PinEventTypes.Rising : PinEventTypes.Falling;
        foreach (var (types, handler) in _callbacks.GetValueOrDefault(pin, []).ToList())
            if ((types & edge) != 0) handler(this, new PinValueChangedEventArgs(edge, pin));
    }
}
