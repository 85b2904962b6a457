using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Models.Chat;
using EdgeTune.Models.Tokenizers;

namespace EdgeTune.Data.Templating;

/// <summary>What to do with an example longer than the limit. Neither cuts the answer.</summary>
public enum TruncationPolicy
{
    /// <summary>Leave the example out, with an over-length finding.</summary>
    Drop,
    /// <summary>Cut the prompt from the left (after BOS), with a finding saying so; dropped when the answer alone does not fit.</summary>
    TruncatePromptLeft,
}

public sealed record TemplateOptions
{
    /// <summary>Train on system and user tokens too (off: responses only).</summary>
    public bool TrainOnInputs { get; init; }
    public int MaxTokens { get; init; } = 4096;
    public TruncationPolicy Truncation { get; init; } = TruncationPolicy.Drop;
}

/// <summary>
/// An example ready for training: the templated text, its ids, and the loss mask (<see cref="Trained"/>[i]
/// says whether the model learns to predict token i). <see cref="CutTokens"/> tokens were cut from the prompt.
/// </summary>
public sealed record TemplatedExample(string Text, int[] Ids, bool[] Trained, int CutTokens);

/// <summary>
/// Renders examples with the model's chat template (llama.cpp's engine: the text the device will see) and
/// builds the loss mask. Assistant spans are found by rendering prefixes: the conversation up to an assistant
/// turn with the generation prompt gives where the answer starts, the conversation through that turn gives
/// where it ends; token positions come from the common prefix with the whole conversation's tokens, so a
/// tokenizer that merges across the boundary cannot shift the mask. The span keeps the end-of-turn token
/// (<c>&lt;|eot_id|&gt;</c>, <c>&lt;|im_end|&gt;</c>) so the model learns to stop, and drops what the template
/// puts after it (ChatML's newline), which belongs to the next turn.
/// </summary>
public sealed class Templater(ChatTemplate template, ITokenizer tokenizer, TemplateOptions? options = null)
{
    public TemplateOptions Options { get; } = options ?? new TemplateOptions();
    public ChatTemplate Template => template;
    public ITokenizer Tokenizer => tokenizer;

    /// <summary>Loads the chat template and tokenizer of a Hugging Face folder or a GGUF file, and its context length when stated.</summary>
    public static (ChatTemplate Template, ITokenizer Tokenizer, int? Context) LoadModel(string path)
    {
        if (Directory.Exists(path))
        {
            int? context = null;
            string config = Path.Combine(path, "config.json");
            if (File.Exists(config))
            {
                using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(config));
                if (doc.RootElement.TryGetProperty("max_position_embeddings", out var n) && n.TryGetInt32(out int v)) context = v;
            }
            return (ChatTemplate.FromHuggingFace(path), HuggingFaceTokenizer.Load(path), context);
        }
        if (!File.Exists(path)) throw new EdgeTuneException($"{path}: no such file or folder (--model takes a .gguf file or a Hugging Face folder)");
        using var file = GgufFile.Open(path);
        int? ctx = null;
        if (file.Metadata.TryGet("general.architecture", out var arch) && file.Metadata.TryGet($"{arch.AsString()}.context_length", out var c))
            ctx = (int)Math.Min(int.MaxValue, c.AsInt64());
        return (ChatTemplate.FromGguf(file.Metadata, path), GgufTokenizer.FromMetadata(file.Metadata, path), ctx);
    }

    /// <summary>Tokens of the whole templated example (what the length check counts).</summary>
    public int CountTokens(DatasetExample example) => Encode(template.Apply(example.Messages, false)).Length;

    /// <summary>The templated example and its mask, or null and a finding when it was left out. A cut prompt also gives a finding.</summary>
    public (TemplatedExample? Example, DataFinding? Finding) Render(DatasetExample example)
    {
        var messages = example.Messages;
        string text = template.Apply(messages, false);
        int[] ids = Encode(text);
        var trained = new bool[ids.Length];
        int firstAnswer = ids.Length;
        for (int k = 0; k < messages.Count; k++)
        {
            if (messages[k].Role != "assistant") continue;
            int start = k == 0 ? Bos(ids) : CommonPrefix(ids, Encode(template.Apply(messages.Take(k).ToList(), true)));
            int end = k == messages.Count - 1 ? ids.Length : CommonPrefix(ids, Encode(template.Apply(messages.Take(k + 1).ToList(), false)));
            int last = end - 1;
            while (last >= start && !tokenizer.IsSpecial(ids[last])) last--;
            if (last < start) last = end - 1; // a template without an end-of-turn token: the whole span
            for (int i = start; i <= last; i++) trained[i] = true;
            firstAnswer = Math.Min(firstAnswer, start);
            if (k == messages.Count - 1) firstAnswer = start;
        }
        if (Options.TrainOnInputs) Array.Fill(trained, true, Bos(ids), ids.Length - Bos(ids));

        if (ids.Length <= Options.MaxTokens) return (new(text, ids, trained, 0), null);
        int excess = ids.Length - Options.MaxTokens;
        int bos = Bos(ids);
        if (Options.Truncation == TruncationPolicy.Drop || bos + excess > firstAnswer)
        {
            string why = Options.Truncation == TruncationPolicy.Drop ? "dropped (truncation: drop)" : "dropped: the last answer alone does not fit";
            return (null, new("over-length", Severity.Warning, example.File, example.Line, $"{ids.Length} tokens once templated, over the limit of {Options.MaxTokens}; {why}"));
        }
        int[] keptIds = [.. ids[..bos], .. ids[(bos + excess)..]];
        bool[] keptMask = [.. trained[..bos], .. trained[(bos + excess)..]];
        return (new(text, keptIds, keptMask, excess),
            new("over-length", Severity.Info, example.File, example.Line, $"{ids.Length} tokens once templated; the prompt was cut by {excess} tokens from the left"));
    }

    private int[] Encode(string text)
    {
        var ids = tokenizer.Encode(text, addSpecialTokens: true, parseSpecial: true).ToArray();
        // A template that writes BOS itself plus a tokenizer that adds one would give two.
        if (ids.Length >= 2 && tokenizer.BosId is int b && ids[0] == b && ids[1] == b) ids = ids[1..];
        return ids;
    }

    private int Bos(int[] ids) => ids.Length > 0 && tokenizer.BosId is int b && ids[0] == b ? 1 : 0;

    private static int CommonPrefix(int[] a, int[] b)
    {
        int n = Math.Min(a.Length, b.Length), i = 0;
        while (i < n && a[i] == b[i]) i++;
        return i;
    }
}
