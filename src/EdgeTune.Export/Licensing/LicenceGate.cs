using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Models.Conversion;

namespace EdgeTune.Export.Licensing;

public enum LicenceVerdict { Allow, AllowWithObligations, Refuse }

/// <summary>
/// The gate's decision: the licence as the model states it (<see cref="Stated"/>, read from <see cref="StatedIn"/>),
/// the table's entry when known, the declared use, and what follows. <see cref="AcceptedBy"/> is the --accept-licence
/// text that let an unknown licence through; it is written to the model card.
/// </summary>
public sealed record LicenceDecision(
    string? Stated,
    string? StatedIn,
    LicenceTerms? Terms,
    DeclaredUse Use,
    LicenceVerdict Verdict,
    IReadOnlyList<string> Obligations,
    string Reason,
    string? AcceptedBy);

/// <summary>Reads the base model's licence and decides whether the declared use may ship it.</summary>
public static class LicenceGate
{
    public static DeclaredUse ParseUse(string use) => use.ToLowerInvariant() switch
    {
        "commercial" => DeclaredUse.Commercial,
        "internal" => DeclaredUse.Internal,
        "research" => DeclaredUse.Research,
        _ => throw new EdgeTuneException($"use '{use}': choose commercial, internal or research"),
    };

    /// <summary>
    /// The licence a model states: GGUF <c>general.license</c> (else <c>general.license.name</c>); for a Hugging Face
    /// folder the README front matter's <c>license:</c> (when it is "other", <c>license_name:</c>), else a LICENSE file's
    /// text, else config.json's "license". Returns the text and where it was found, or nulls.
    /// </summary>
    public static (string? Stated, string? Where, LicenceTerms? FromText) Read(string model)
    {
        if (File.Exists(model))
        {
            using var file = GgufFile.Open(model);
            foreach (var key in new[] { "general.license", "general.license.name" })
                if (file.Metadata.GetString(key) is { Length: > 0 } v && !v.Equals("other", StringComparison.OrdinalIgnoreCase))
                    return (v, $"{model}: {key}", null);
            return (null, null, null);
        }
        if (!Directory.Exists(model)) throw new EdgeTuneException($"{model}: no such file or folder");
        string readme = Path.Combine(model, "README.md");
        var card = ModelCard.Read(model);
        if (card.License is { } license)
        {
            if (!license.Equals("other", StringComparison.OrdinalIgnoreCase)) return (license, $"{readme}: license", null);
            if (FrontMatter(readme, "license_name") is { } name) return (name, $"{readme}: license_name", null);
        }
        foreach (var f in Directory.EnumerateFiles(model).Where(f => Path.GetFileName(f).StartsWith("LICENSE", StringComparison.OrdinalIgnoreCase)).Order(StringComparer.Ordinal))
        {
            string text = File.ReadAllText(f);
            var terms = LicenceTable.FromText(text);
            string first = text.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.Length > 0) ?? "";
            return (terms?.Id ?? first, $"{f}: text", terms);
        }
        string config = Path.Combine(model, "config.json");
        if (File.Exists(config))
        {
            using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(config));
            if (doc.RootElement.ValueKind == System.Text.Json.JsonValueKind.Object && doc.RootElement.TryGetProperty("license", out var l) && l.ValueKind == System.Text.Json.JsonValueKind.String)
                return (l.GetString(), $"{config}: license", null);
        }
        return (null, null, null);
    }

    private static string? FrontMatter(string readme, string key)
    {
        if (!File.Exists(readme)) return null;
        var lines = File.ReadLines(readme).Take(200).ToList();
        if (lines.Count == 0 || lines[0].Trim() != "---") return null;
        foreach (var line in lines.Skip(1).TakeWhile(l => l.Trim() != "---"))
            if (line.StartsWith(key + ":", StringComparison.Ordinal))
                return line[(key.Length + 1)..].Trim().Trim('"', '\'') is { Length: > 0 } v ? v : null;
        return null;
    }

    /// <summary>Decides; a refusal throws with one line naming where the licence was read, the licence and the clause.</summary>
    public static LicenceDecision Check(string model, DeclaredUse use, string? acceptLicence)
    {
        var (stated, where, fromText) = Read(model);
        var terms = fromText ?? (stated is null ? null : LicenceTable.Find(stated));
        string useName = use.ToString().ToLowerInvariant();
        if (terms is null)
        {
            string what = stated is null ? $"{model}: states no licence (GGUF general.license, or the model card's license:)" : $"{where}: licence '{stated}' is not one EdgeTune knows";
            if (acceptLicence is { Length: > 0 } accepted)
                return new LicenceDecision(stated, where, null, use, LicenceVerdict.AllowWithObligations,
                    [$"licence accepted by the user: \"{accepted}\""], $"{what}; accepted with --accept-licence", accepted);
            if (use == DeclaredUse.Commercial)
                throw new EdgeTuneException($"{what}; commercial use is refused without a known licence: read the model's terms and pass --accept-licence \"WHO accepts WHAT\" to record the decision, or declare --use internal or research");
            return new LicenceDecision(stated, where, null, use, LicenceVerdict.AllowWithObligations,
                ["the licence is unknown: read the model's terms before sharing the model"], $"{what}; {useName} use allowed, the terms are yours to check", null);
        }
        if (terms.Refuses(use) is { } clause)
            throw new EdgeTuneException($"{where}: licence '{stated}' ({terms.Name}) does not allow {useName} use: {clause} ({terms.Source})");
        var verdict = terms.Obligations.Count == 0 ? LicenceVerdict.Allow : LicenceVerdict.AllowWithObligations;
        return new LicenceDecision(stated, where, terms, use, verdict, terms.Obligations,
            $"{terms.Name} allows {useName} use" + (terms.Obligations.Count == 0 ? "" : " with obligations") + $" ({terms.Source})", acceptLicence);
    }
}
