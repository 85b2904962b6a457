namespace EdgeTune.Data;

/// <summary>
/// Which input fields (JSON keys or CSV columns) hold which part of an example. The defaults cover Alpaca
/// ({instruction, input, output}), chat ({messages}) and {prompt, completion|response}; a mapping such as
/// "prompt=question,completion=answer" reads other names.
/// </summary>
public sealed record FieldMapping
{
    public string Messages { get; init; } = "messages";
    public string Instruction { get; init; } = "instruction";
    public string Input { get; init; } = "input";
    public string Output { get; init; } = "output";
    public string Prompt { get; init; } = "prompt";
    /// <summary>Answer field names tried in order for prompt-style rows.</summary>
    public IReadOnlyList<string> Completion { get; init; } = ["completion", "response"];
    public string System { get; init; } = "system";
    public string Label { get; init; } = "label";

    public static FieldMapping Default { get; } = new();

    /// <summary>Parses "target=source,…" (targets: messages, instruction, input, output, prompt, completion, response, system, label).</summary>
    public static FieldMapping Parse(string? spec)
    {
        var map = Default;
        if (string.IsNullOrWhiteSpace(spec)) return map;
        foreach (var pair in spec.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int eq = pair.IndexOf('=');
            if (eq <= 0 || eq == pair.Length - 1) throw new Core.EdgeTuneException($"--map: '{pair}' is not TARGET=FIELD (e.g. prompt=question,completion=answer)");
            string target = pair[..eq].Trim(), source = pair[(eq + 1)..].Trim();
            map = target switch
            {
                "messages" => map with { Messages = source },
                "instruction" => map with { Instruction = source },
                "input" => map with { Input = source },
                "output" => map with { Output = source },
                "prompt" => map with { Prompt = source },
                "completion" or "response" => map with { Completion = [source] },
                "system" => map with { System = source },
                "label" => map with { Label = source },
                _ => throw new Core.EdgeTuneException($"--map: unknown target '{target}' (messages, instruction, input, output, prompt, completion, system, label)"),
            };
        }
        return map;
    }
}
