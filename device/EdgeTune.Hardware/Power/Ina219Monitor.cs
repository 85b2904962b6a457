using System.Device.I2c;
using Iot.Device.Adc;

namespace EdgeTune.Hardware.Power;

/// <summary>One INA219 reading in SI units.</summary>
public readonly record struct PowerReading(double BusVolts, double ShuntVolts, double Amps, double Watts);

/// <summary>
/// Board power through an INA219 on I2C (dotnet/iot's <see cref="Ina219"/>), for boards without on-board
/// monitors (Jetson's own INA3221 rails are read from hwmon by EdgeTune.Profiles' BoardSensors). Calibration
/// follows the datasheet: current LSB = max current / 2^15, calibration = trunc(0.04096 / (LSB · R_shunt)).
/// </summary>
public sealed class Ina219Monitor : IDisposable
{
    private readonly Ina219 _ina;

    public Ina219Monitor(I2cDevice device, double shuntOhms = 0.1, double maxAmps = 3.2)
    {
        if (shuntOhms <= 0 || maxAmps <= 0) throw new ArgumentOutOfRangeException(nameof(shuntOhms), "shunt resistance and maximum current must be positive");
        _ina = new Ina219(device);
        CurrentLsb = maxAmps / 32768.0;
        Calibration = (ushort)Math.Min(0xFFFE, Math.Truncate(0.04096 / (CurrentLsb * shuntOhms)));
        _ina.SetCalibration(Calibration, (float)CurrentLsb);
    }

    public double CurrentLsb { get; }
    public ushort Calibration { get; }

    public PowerReading Read() => new(
        _ina.ReadBusVoltage().Volts,
        _ina.ReadShuntVoltage().Volts,
        _ina.ReadCurrent().Amperes,
        (double)_ina.ReadPower().Watts);

    public void Dispose() => _ina.Dispose();
}
