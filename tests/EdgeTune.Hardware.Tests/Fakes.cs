using System.Device.Gpio;
using System.Device.I2c;

namespace EdgeTune.Hardware.Tests;

/// <summary>A GPIO chip in memory: pin values, modes and edge callbacks; the test sets input levels.</summary>
internal sealed class FakeGpioDriver : GpioDriver
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

/// <summary>An INA219 register map behind a fake I2C device: a write of one byte selects a register, three bytes write it (big-endian).</summary>
internal sealed class FakeIna219 : I2cDevice
{
    private byte _pointer;

    public ushort[] Registers { get; } = new ushort[6];

    public override I2cConnectionSettings ConnectionSettings { get; } = new(1, 0x40);

    public override byte ReadByte() => throw new NotSupportedException();
    public override void WriteByte(byte value) => _pointer = value;

    public override void Read(Span<byte> buffer)
    {
        ushort v = Registers[_pointer];
        buffer[0] = (byte)(v >> 8);
        if (buffer.Length > 1) buffer[1] = (byte)v;
    }

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        _pointer = buffer[0];
        if (buffer.Length >= 3) Registers[_pointer] = (ushort)(buffer[1] << 8 | buffer[2]);
    }

    public override void WriteRead(ReadOnlySpan<byte> writeBuffer, Span<byte> readBuffer)
    {
        Write(writeBuffer);
        Read(readBuffer);
    }
}
