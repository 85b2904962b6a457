using System.Globalization;
using System.Text;
using EdgeTune.Agent.Config;
using EdgeTune.Profiles.Toml;

namespace EdgeTune.Agent.Bundles;

/// <summary>
/// A bundle's agent.toml: the [model] section of the author's configuration, with the model and adapter paths
/// rewritten to where the bundle puts them (relative to the slot), and [retrieval] when the bundle ships a knowledge
/// index (the model and its index travel together: the index is counted in that model's tokens). Everything else
/// (server, token, trust, field log) belongs to the device's own configuration and is never taken from a bundle.
/// </summary>
public static class SlotConfig
{
    public const string FileName = "agent.toml";

    /// <summary>Where a bundle carries the training set's drift fingerprint (`bundle create --drift-fingerprint`).</summary>
    public const string DriftFingerprintPath = "drift/fingerprint.json";

    /// <summary>Keys a bundle does not carry: paths of the author's machine, or a native library of another board.</summary>
    private static readonly string[] NotCarried = ["path", "adapters", "native_library"];

    /// <summary>The slot configuration text for <paramref name="authorConfig"/>'s [model] settings.</summary>
    public static string FromAuthorConfig(string authorConfig, string modelPath, IReadOnlyList<string> adapterPaths, string? knowledgeIndexPath = null)
    {
        if (!File.Exists(authorConfig)) throw new AgentConfigException($"{authorConfig}: no such configuration file");
        var diagnostics = new List<ProfileDiagnostic>();
        var root = TomlDocument.Parse(File.ReadAllText(authorConfig), authorConfig, diagnostics);
        if (diagnostics.Count > 0) throw new AgentConfigException(diagnostics[0].ToString());
        if (root["model"] is not TomlTableNode model) throw new AgentConfigException($"{authorConfig}:1:1: model: missing [model] section");
        var text = new StringBuilder($"# Written by 'edgetune bundle create' from {Path.GetFileName(authorConfig)}: the [model] settings of this bundle.\n[model]\n");
        text.Append(CultureInfo.InvariantCulture, $"path = {Quote(modelPath)}\n");
        text.Append(CultureInfo.InvariantCulture, $"adapters = [{string.Join(", ", adapterPaths.Select(Quote))}]\n");
        foreach (var (key, node) in model.Items)
        {
            if (NotCarried.Contains(key)) continue;
            string value = node switch
            {
                TomlValueNode { Value: string s } => Quote(s),
                TomlValueNode { Value: bool b } => b ? "true" : "false",
                TomlValueNode { Value: long or double } v => v.Text,
                _ => throw new AgentConfigException($"{node.Location}: model.{key}: {node.Describe()} cannot travel in a bundle"),
            };
            text.Append(CultureInfo.InvariantCulture, $"{key} = {value}\n");
        }
        if (knowledgeIndexPath is not null)
        {
            text.Append(CultureInfo.InvariantCulture, $"[retrieval]\nindex = {Quote(knowledgeIndexPath)}\n");
            // The author's retrieval sizes travel with the index; its path does not.
            if (root["retrieval"] is TomlTableNode retrieval)
                foreach (var (key, node) in retrieval.Items)
                    if (key != "index" && node is TomlValueNode { Value: long } number) text.Append(CultureInfo.InvariantCulture, $"{key} = {number.Text}\n");
        }
        return text.ToString();
    }

    /// <summary>
    /// The device configuration serving the slot's model: [model] from the slot, [retrieval] from the slot when it ships
    /// an index (else the device's own), the rest from the device.
    /// </summary>
    public static AgentConfig Apply(AgentConfig device, string slotFolder)
    {
        var slot = AgentConfig.Load(Path.Combine(slotFolder, FileName), checkFiles: true, requireToken: false);
        // The training set's fingerprint belongs to the model: one in the bundle replaces the device's.
        string fingerprint = Path.Combine(slotFolder, DriftFingerprintPath);
        return device with
        {
            Model = slot.Model,
            Retrieval = slot.Retrieval ?? device.Retrieval,
            Drift = File.Exists(fingerprint) ? device.Drift with { Fingerprint = fingerprint } : device.Drift,
        };
    }

    private static string Quote(string s)
    {
        var b = new StringBuilder("\"");
        foreach (char c in s)
            b.Append(c switch { '"' => "\\\"", '\\' => "\\\\", '\n' => "\\n", '\t' => "\\t", '\r' => "\\r", < ' ' => $"\\u{(int)c:x4}", _ => c.ToString() });
        return b.Append('"').ToString();
    }
}
