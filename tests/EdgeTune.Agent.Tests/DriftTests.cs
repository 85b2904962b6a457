using System.Globalization;
using System.Text.RegularExpressions;
using EdgeTune.Core.Drift;
using EdgeTune.Inference;
using EdgeTune.Inference.LlamaCpp;
using EdgeTune.Testing;

namespace EdgeTune.Agent.Tests;

/// <summary>The agent's [drift] monitor against the training set's fingerprint, through the real tokenizer and HTTP.</summary>
public class DriftTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private static readonly string[] Products = ["router", "printer", "laptop", "camera", "phone", "monitor"];
    private static readonly string[] Problems = ["does not turn on", "arrived broken", "is slow", "keeps restarting", "lost its settings", "makes a noise"];

    /// <summary>In-distribution prompts: short English support tickets.</summary>
    private static string Ticket(Random rng) =>
        $"My {Products[rng.Next(Products.Length)]} {Problems[rng.Next(Problems.Length)]} since order {rng.Next(1000, 9999)}. Please help.";

    /// <summary>Another language and script: what the model was never tuned on.</summary>
    private static string Foreign(Random rng) =>
        $"Здравствуйте! Мой {new[] { "принтер", "ноутбук", "телефон" }[rng.Next(3)]} не работает уже {rng.Next(2, 30)} дней, заказ {rng.Next(1000, 9999)}. Что делать?";

    private static double Gauge(string metrics, string name) =>
        double.Parse(Regex.Match(metrics, $@"\n{name} (\S+)\n").Groups[1].Value, CultureInfo.InvariantCulture);

    [Fact]
    public async Task In_distribution_traffic_keeps_the_gauges_low_and_another_language_raises_the_warning()
    {
        // The fingerprint of 300 training tickets, tokenized by the model the agent serves (llama.cpp's tokenizer).
        using var build = new TempDir();
        string model = TinyAgentModel.Write(build.Path);
        DriftFingerprint fingerprint;
        using (var m = LlamaCppRuntime.Default.Open(new ModelOptions { Path = model, Threads = 1 }))
        {
            var rng = new Random(1);
            fingerprint = DriftFingerprint.Compute(Enumerable.Range(0, 300).Select(_ => ((IReadOnlyList<int>)m.Tokenize(Ticket(rng), addSpecial: false, parseSpecial: false), "the hardware team")), "train.jsonl");
        }
        Assert.Null(fingerprint.AnswerKeys); // free-text answers: no format check (the monitor's own tests cover it)

        var agent = new AgentFixture(8, null, extra: "\n[drift]\nfingerprint = \"fingerprint.json\"\nwindow = 100\nmin_samples = 30\n");
        fingerprint.Write(Path.Combine(agent.Folder, "fingerprint.json"));
        await agent.InitializeAsync();
        try
        {
            async Task Ask(string text) =>
                Assert.Equal(200, (await agent.Client.PostJson("/v1/chat/completions", new { messages = new[] { new { role = "user", content = text } }, max_tokens = 1, temperature = 0 })).Status);
            async Task<string> Metrics() => await agent.Client.GetStringAsync("/metrics");

            var live = new Random(2);
            for (int i = 0; i < 60; i++) await Ask(Ticket(live));
            string calm = await Metrics();
            Assert.Equal(60, Gauge(calm, "edgetune_drift_window_samples"));
            double calmPsi = Gauge(calm, "edgetune_drift_prompt_length_psi"), calmJs = Gauge(calm, "edgetune_drift_token_js");
            Assert.True(calmPsi < 0.1, $"prompt-length PSI {calmPsi} on in-distribution traffic");
            Assert.True(calmJs < 0.08, $"token JS {calmJs} on in-distribution traffic");
            Assert.Equal(0, Gauge(calm, "edgetune_drift_warning"));
            Assert.DoesNotContain("edgetune_drift_format_validity", calm, StringComparison.Ordinal);

            for (int i = 0; i < 100; i++) await Ask(Foreign(live)); // the window now holds only these
            string shifted = await Metrics();
            Assert.Equal(100, Gauge(shifted, "edgetune_drift_window_samples"));
            double js = Gauge(shifted, "edgetune_drift_token_js"), psi = Gauge(shifted, "edgetune_drift_prompt_length_psi");
            Assert.True(js > 0.5, $"token JS {js} on another language");
            Assert.True(psi > 0.25, $"prompt-length PSI {psi} on longer byte-level prompts");
            Assert.Equal(1, Gauge(shifted, "edgetune_drift_warning"));
            output.WriteLine($"in-distribution: PSI {calmPsi:0.0000}, JS {calmJs:0.0000}; another language: PSI {psi:0.0000}, JS {js:0.0000}");
        }
        finally
        {
            await agent.DisposeAsync();
        }
    }

    [Fact]
    public void A_broken_fingerprint_is_one_line_at_start_naming_the_key()
    {
        using var dir = new TempDir();
        string model = TinyAgentModel.Write(dir.Path);
        File.WriteAllText(Path.Combine(dir.Path, "fingerprint.json"), "{\"version\": 1, \"token_buckets\": 4, \"token_distribution\": [1]}");
        string config = TinyAgentModel.WriteConfig(dir.Path, model, extra: "\n[drift]\nfingerprint = \"fingerprint.json\"\n");
        var e = Assert.Throws<EdgeTune.Agent.Config.AgentConfigException>(() => EdgeTune.Agent.Config.AgentConfig.Load(config));
        Assert.Contains("drift.fingerprint", e.Message, StringComparison.Ordinal);
        Assert.Contains("token_distribution: 1 values for 4 buckets", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }
}
