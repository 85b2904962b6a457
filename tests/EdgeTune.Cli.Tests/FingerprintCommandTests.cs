using System.Text.Json;
using EdgeTune.Agent.Bundles;
using EdgeTune.Bundles;
using EdgeTune.Core.Drift;
using EdgeTune.Testing;

namespace EdgeTune.Cli.Tests;

/// <summary>`data fingerprint` writes what the device compares against; `bundle create --drift-fingerprint` ships it with the model.</summary>
public class FingerprintCommandTests
{
    [Fact]
    public void Fingerprint_of_a_training_split_travels_in_the_bundle_and_the_slot_serves_with_it()
    {
        using var inputs = new BundleInputs();
        string data = inputs.Dir.File("train.jsonl");
        File.WriteAllLines(data, Enumerable.Range(0, 40).Select(i =>
            JsonSerializer.Serialize(new { prompt = $"ticket {i}: my printer is broken", response = $"{{\"team\": \"hardware\", \"priority\": {i % 3}}}" })));
        File.AppendAllText(data, "not json\n");
        string fp = inputs.Dir.File("fingerprint.json");
        var r = CliRunner.Run("data", "fingerprint", data, "--model", inputs.Model, "--out", fp);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("40 examples", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("answers are JSON objects with priority, team", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("1 unreadable rows left out", r.Stderr, StringComparison.Ordinal);
        var written = DriftFingerprint.Read(fp);
        Assert.Equal(40, written.Examples);
        Assert.Equal(1, written.PromptLengths.Sum(), 9);
        Assert.Equal(1, written.TokenDistribution.Sum(), 9);

        string bundle = inputs.Dir.File("b.etb");
        var created = CliRunner.Run("bundle", "create", "--model", inputs.Model, "--config", inputs.Author, "--profile", "x86-64-generic", "--version", "1.0.0",
            "--key", inputs.Key, "--out", bundle, "--drift-fingerprint", fp, "--run", "20261203-041502-7f3a", "--registry", inputs.Dir.File("empty-registry"));
        Assert.True(created.ExitCode == 0, created.Stderr);
        // The bundle names the run it came from (lineage from the device back to the registry).
        Assert.Contains("run          20261203-041502-7f3a", CliRunner.Run("bundle", "inspect", bundle).Stdout, StringComparison.Ordinal);
        string slot = inputs.Dir.File("slot");
        using (var reader = BundleReader.Open(bundle)) reader.ExtractTo(slot);
        Assert.Equal(File.ReadAllText(fp), File.ReadAllText(Path.Combine(slot, SlotConfig.DriftFingerprintPath)));
        var device = EdgeTune.Agent.Config.AgentConfig.Load(inputs.Author, checkFiles: false);
        Assert.Null(device.Drift.Fingerprint);
        Assert.Equal(Path.Combine(slot, SlotConfig.DriftFingerprintPath), SlotConfig.Apply(device, slot).Drift.Fingerprint);

        // A broken fingerprint is refused on the workstation, not on the device.
        File.WriteAllText(fp, "{}");
        var refused = CliRunner.Run("bundle", "create", "--model", inputs.Model, "--config", inputs.Author, "--profile", "x86-64-generic", "--version", "1.0.1",
            "--out", inputs.Dir.File("c.etb"), "--drift-fingerprint", fp);
        Assert.Equal(1, refused.ExitCode);
        Assert.Single(refused.Stderr.Trim().Split('\n'));
        Assert.False(File.Exists(inputs.Dir.File("c.etb")));
        Assert.Equal(1, CliRunner.Run("data", "fingerprint", inputs.Dir.File("none.jsonl"), "--model", inputs.Model, "--out", fp).ExitCode);
    }
}
