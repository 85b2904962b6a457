using System.Device.Gpio;
using Iot.Device.Button;

namespace EdgeTune.Hardware.Buttons;

/// <summary>
/// A thumbs-up / thumbs-down button pair on two GPIO pins (pulled up, pressed = low), debounced by dotnet/iot's
/// <see cref="GpioButton"/>. A press reports +1 or -1; the agent turns it into feedback on its latest completion.
/// </summary>
public sealed class FeedbackButtons : IDisposable
{
    private readonly GpioButton _up;
    private readonly GpioButton _down;

    /// <param name="gpio">The controller (a real board's, or one over a fake <see cref="GpioDriver"/> in tests); not disposed here.</param>
    /// <param name="onRating">Called with +1 (up) or -1 (down) once per debounced press.</param>
    public FeedbackButtons(GpioController gpio, int upPin, int downPin, Action<int> onRating, TimeSpan debounce)
    {
        ArgumentNullException.ThrowIfNull(onRating);
        if (upPin == downPin) throw new ArgumentException($"the up and down buttons need two pins (both are {upPin})", nameof(downPin));
        _up = new GpioButton(upPin, isPullUp: true, hasExternalResistor: false, gpio, shouldDispose: false, debounceTime: debounce);
        _down = new GpioButton(downPin, isPullUp: true, hasExternalResistor: false, gpio, shouldDispose: false, debounceTime: debounce);
        _up.Press += (_, _) => onRating(+1);
        _down.Press += (_, _) => onRating(-1);
    }

    public void Dispose()
    {
        _up.Dispose();
        _down.Dispose();
    }
}
