using System.Device.Gpio;
using EdgeTune.Formats.FieldData;
using EdgeTune.Hardware.Tests;

namespace EdgeTune.Agent.Tests;

public sealed class GpioTests
{
    [Fact]
    public async Task Button_press_rates_the_last_completion_and_the_LED_follows_health()
    {
        var driver = new FakeGpioDriver();
        using var loading = new ManualResetEventSlim(false);
        var agent = new AgentFixture(8, c => { loading.Wait(); return EdgeTune.Agent.Serving.ModelHost.Open(c.Model); },
            extra: "[gpio]\nenabled = true\nfeedback_up_pin = 5\nfeedback_down_pin = 6\nstatus_led_pin = 12\ndebounce_ms = 10",
            gpio: () => new GpioController(driver));
        var start = agent.InitializeAsync();
        try
        {
            // Loading: the LED blinks (busy), so it is seen both on and off.
            var seen = new HashSet<PinValue>();
            for (int i = 0; i < 80 && seen.Count < 2; i++) { await Task.Delay(25); lock (driver) seen.Add(driver.Value(12)); }
            Assert.Equal(2, seen.Count);
            loading.Set();
            await start;
            await Task.Delay(150);
            Assert.Equal(PinValue.High, driver.Value(12)); // ready: steady on
            for (int i = 0; i < 6; i++) { await Task.Delay(20); Assert.Equal(PinValue.High, driver.Value(12)); }

            var (_, first) = await agent.Client.PostJson("/v1/completions", new { model = "tiny", prompt = "one", max_tokens = 2 });
            var (_, second) = await agent.Client.PostJson("/v1/completions", new { model = "tiny", prompt = "two", max_tokens = 2 });
            string lastId = second.GetProperty("id").GetString()!;

            driver.Set(6, PinValue.Low);   // thumbs down
            await Task.Delay(40);
            driver.Set(6, PinValue.High);

            using var export = await agent.Client.GetAsync("/v1/field-data?after=0");
            var examples = (await export.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => FieldExample.FromJsonLine(l)!).ToList();
            Assert.Null(examples.Single(e => e.Metadata.Id == first.GetProperty("id").GetString()).Metadata.Feedback);
            var rated = examples.Single(e => e.Metadata.Id == lastId).Metadata.Feedback;
            Assert.NotNull(rated);
            Assert.Equal(-1, rated.Rating);
        }
        finally
        {
            loading.Set();
            try { await start; } catch (TimeoutException) { }
            await agent.DisposeAsync();
        }
    }
}
