using System.Device.Gpio;
using System.Device.I2c;

namespace EdgeTune.Hardware.Tests;

/// <summary>The tests drive the product's simulated chip.</summary>
internal sealed class FakeGpioDriver : EdgeTune.Hardware.Simulation.SimulatedGpioDriver;

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
