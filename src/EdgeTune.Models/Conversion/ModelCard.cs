namespace EdgeTune.Models.Conversion;

/// <summary>What a checkpoint folder's README.md front matter (the Hugging Face model card's YAML) states.</summary>
public sealed record ModelCard(string? Name, string? License)
{
    /// <summary>
    /// Reads the scalar keys "license" and "model_name" between the leading "---" lines. Only the flat scalar
    /// form is understood (no YAML library for two keys); anything else is left unstated rather than guessed.
    /// </summary>
    public static ModelCard Read(string folder)
    {
        string path = Path.Combine(folder, "README.md");
        if (!File.Exists(path)) return new ModelCard(null, null);
        var lines = File.ReadLines(path).Take(200).ToList();
        if (lines.Count == 0 || lines[0].Trim() != "---") return new ModelCard(null, null);
        string? name = null, license = null;
        foreach (var line in lines.Skip(1).TakeWhile(l => l.Trim() != "---"))
        {
            int colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0 || char.IsWhiteSpace(line[0])) continue;
            string key = line[..colon].Trim(), value = line[(colon + 1)..].Trim().Trim('"', '\'');
            if (value.Length == 0) continue;
            if (key == "license") license = value;
            else if (key == "model_name") name = value;
        }
        return new ModelCard(name, license);
    }
}
