using System.Device.Gpio;
using EdgeTune.Agent.Api;
using EdgeTune.Agent.Config;
using EdgeTune.Agent.FieldLog;
using EdgeTune.Hardware.Buttons;
using EdgeTune.Hardware.Led;

namespace EdgeTune.Agent.Serving;

/// <summary>
/// The board's buttons and LED: a thumbs-up/down press becomes feedback (rating +1/-1) on the most recent logged
/// completion; the LED shows ready (model loaded, idle), busy (loading or generating) or error (load failed).
/// </summary>
internal sealed class GpioService(AgentConfig config, Func<GpioController> controllerFactory, ModelHost host, RequestQueue queue,
    CompletionEndpoints completions, FieldLogStore? fieldLog, ILogger<GpioService> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var gpio = controllerFactory();
        FeedbackButtons? buttons = null;
        StatusLed? led = null;
        try
        {
            if (config.Gpio.FeedbackUpPin is { } up && config.Gpio.FeedbackDownPin is { } down)
                buttons = new FeedbackButtons(gpio, up, down, Rate, TimeSpan.FromMilliseconds(config.Gpio.DebounceMs));
            if (config.Gpio.StatusLedPin is { } pin) led = new StatusLed(gpio, pin);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (!stoppingToken.IsCancellationRequested)
            {
                if (led is not null)
                {
                    led.State = host.LoadError is not null ? LedState.Error : !host.Ready || queue.Busy ? LedState.Busy : LedState.Ready;
                    led.Update(clock.Elapsed);
                }
                await Task.Delay(25, stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) { }
        finally
        {
            buttons?.Dispose();
            led?.Dispose();
            gpio.Dispose();
        }
    }

    private void Rate(int rating)
    {
        string? id = completions.LastLoggedId;
        if (fieldLog is null || id is null)
        {
            logger.LogWarning("feedback button pressed but there is no logged completion to rate");
            return;
        }
        fieldLog.AddFeedback(id, rating, null, "gpio button");
        completions.Drift?.Feedback(id, rating);
        if (logger.IsEnabled(LogLevel.Information)) logger.LogInformation("button feedback {Rating} on {Id}", rating, id);
    }
}
