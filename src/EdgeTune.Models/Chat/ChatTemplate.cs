using System.Text;
using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Models.Tokenizers;
using LLama;
using LLama.Native;

namespace EdgeTune.Models.Chat;

/// <summary>One turn of a conversation ("system", "user", "assistant").</summary>
public sealed record ChatMessage(string Role, string Content);

/// <summary>
/// A model's chat template, rendered by llama.cpp's own template engine (llama_chat_apply_template through
/// LLamaSharp's LLamaTemplate), so training data is formatted exactly as the device will format prompts.
/// llama.cpp does not run Jinja: it recognises known templates by their markers; any other template is an error.
/// </summary>
public sealed class ChatTemplate
{
    private ChatTemplate(string source, string origin)
    {
        Source = source;
        Origin = origin;
    }

    /// <summary>The template text (Jinja as the model ships it).</summary>
    public string Source { get; }

    /// <summary>Where the template came from (file and key), for error messages.</summary>
    public string Origin { get; }

    public static ChatTemplate FromText(string source, string origin = "chat template") => new(source, origin);

    /// <summary>chat_template of a Hugging Face folder's tokenizer_config.json.</summary>
    public static ChatTemplate FromHuggingFace(string folder)
    {
        string file = Path.Combine(folder, "tokenizer_config.json");
        if (!File.Exists(file)) throw new EdgeTuneException($"{file}: no such file (the chat template lives there)");
        var template = HuggingFaceTokenizer.Load(folder).ChatTemplate ?? throw FileFormatException.AtKey(file, "chat_template", "is missing");
        return new(template, $"{file}: key 'chat_template'");
    }

    /// <summary>tokenizer.chat_template of GGUF metadata; <paramref name="path"/> names the file in errors.</summary>
    public static ChatTemplate FromGguf(GgufMetadata metadata, string path = "GGUF metadata")
    {
        if (!metadata.TryGet("tokenizer.chat_template", out var value)) throw FileFormatException.AtKey(path, "tokenizer.chat_template", "is missing");
        if (value.Type != GgufValueType.String) throw FileFormatException.AtKey(path, "tokenizer.chat_template", $"is {value.Describe()}, not STRING");
        return new(value.AsString(), $"{path}: key 'tokenizer.chat_template'");
    }

    /// <summary>The conversation as text, ending with the assistant's header when <paramref name="addGenerationPrompt"/>.</summary>
    public string Apply(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        NativeApi.llama_empty_call(); // registers LLamaSharp's native-library resolver before the first native call
        var template = new LLamaTemplate(Source) { AddAssistant = addGenerationPrompt };
        foreach (var m in messages) template.Add(m.Role, m.Content);
        try
        {
            return Encoding.UTF8.GetString(template.Apply());
        }
        catch (Exception e) when (e is not EdgeTuneException)
        {
            throw new EdgeTuneException($"{Origin}: llama.cpp cannot apply this chat template (it knows templates such as llama3, chatml, " +
                                        $"llama2, mistral, gemma, phi3 by their markers; this one begins \"{Preview(Source)}\")", e);
        }
    }

    /// <summary>
    /// The text a template writes after an assistant's answer to end the turn (<c>&lt;|im_end|&gt;</c>,
    /// <c>&lt;|eot_id|&gt;</c>, <c>&lt;/s&gt;</c>, ...), found by rendering a conversation through
    /// <paramref name="render"/> (messages, add-generation-prompt → text); null when the template writes none.
    /// </summary>
    public static string? EndOfTurnMarker(Func<IReadOnlyList<ChatMessage>, bool, string> render)
    {
        const string Answer = "EDGETUNE_ANSWER_SENTINEL";
        string text = render([new ChatMessage("user", "ping"), new ChatMessage("assistant", Answer)], false);
        int at = text.LastIndexOf(Answer, StringComparison.Ordinal);
        if (at < 0) return null;
        // The marker is the first word after the answer: "<|im_end|>\n" and " </s>" both end at white space.
        string rest = text[(at + Answer.Length)..].TrimStart();
        int end = 0;
        while (end < rest.Length && !char.IsWhiteSpace(rest[end])) end++;
        return end == 0 ? null : rest[..end];
    }

    /// <summary>This template's end-of-turn marker (see <see cref="EndOfTurnMarker(Func{IReadOnlyList{ChatMessage}, bool, string})"/>).</summary>
    public string? EndOfTurnMarker() => EndOfTurnMarker(Apply);

    /// <summary>
    /// A one-line warning when this template's end-of-turn marker is not a single special token of
    /// <paramref name="tokenizer"/>: a model tuned on it learns to write the marker as ordinary text and never
    /// emits an end token, so other runtimes generate to their token limit. Null when all is well.
    /// </summary>
    public string? EndOfTurnWarning(ITokenizer tokenizer)
    {
        if (EndOfTurnMarker() is not { } marker) return null;
        var ids = tokenizer.Encode(marker, addSpecialTokens: false, parseSpecial: true);
        if (ids is [int id] && tokenizer.IsSpecial(id)) return null;
        return $"{Origin}: the chat template ends a turn with \"{marker}\", which the vocabulary has only as text ({ids.Count} ordinary tokens), " +
               "so a tuned model writes it as text and never emits an end-of-turn token; EdgeTune's runtimes stop at that text and cut it, " +
               "other runtimes run to their token limit. Fix: add the markers as special tokens ([model] add_tokens = [" +
               string.Join(", ", Markers().Select(t => $"\"{t}\"")) + "] in the recipe: the embeddings grow, the new rows are trained and the run's base.gguf " +
               "has them as end-of-generation tokens for llama.cpp), a base model whose vocabulary has them, or a chat template written with the vocabulary's own end token";
    }

    /// <summary>
    /// The template's markers to add as special tokens: every &lt;|…|&gt; it writes around a conversation, and the
    /// end-of-turn marker (so a Llama 2 style "&lt;/s&gt;" is named too).
    /// </summary>
    public IReadOnlyList<string> Markers()
    {
        string text = Apply([new ChatMessage("system", "s"), new ChatMessage("user", "u"), new ChatMessage("assistant", "a")], false);
        var markers = System.Text.RegularExpressions.Regex.Matches(text, @"<\|[^\s<>|]+\|>").Select(m => m.Value).ToList();
        if (EndOfTurnMarker() is { } end) markers.Add(end);
        return markers.Distinct(StringComparer.Ordinal).ToList();
    }

    private static string Preview(string s) => (s.Length > 40 ? s[..40] + "..." : s).ReplaceLineEndings(" ");
}
