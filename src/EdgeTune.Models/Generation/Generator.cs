using EdgeTune.Models.Reference;
using EdgeTune.Models.Tokenizers;

namespace EdgeTune.Models.Generation;

/// <summary>Why generation ended.</summary>
public enum StopReason
{
    /// <summary>The model produced an end-of-generation token.</summary>
    Eos,
    /// <summary>The requested number of tokens was generated.</summary>
    Length,
    /// <summary>The sequence filled the model's context length.</summary>
    Context,
}

public sealed record GenerationResult(IReadOnlyList<int> PromptIds, IReadOnlyList<int> GeneratedIds, string Text, StopReason StopReason);

/// <summary>
/// Autoregressive generation on the reference model: one full forward per token (no KV cache yet), text
/// decoded incrementally so that a UTF-8 character split over several tokens is emitted only when whole.
/// </summary>
public static class Generator
{
    /// <summary>End-of-turn markers of common chat formats, which end generation when the vocabulary has them as special tokens.</summary>
    private static readonly string[] ChatEndTokens = ["<|eot_id|>", "<|im_end|>", "<|eom_id|>", "<|end|>", "<end_of_turn>"];

    /// <summary>The ids that end generation: the tokenizer's EOS, the model config's EOS ids, and the chat end tokens present.</summary>
    public static HashSet<int> EndIds(ITokenizer tokenizer, IEnumerable<int> configEos)
    {
        var ids = new HashSet<int>(configEos.Where(id => id >= 0 && id < tokenizer.VocabularySize));
        if (tokenizer.EosId is int eos) ids.Add(eos);
        foreach (var marker in ChatEndTokens)
            if (tokenizer.Encode(marker, addSpecialTokens: false, parseSpecial: true) is [int id] && tokenizer.IsSpecial(id)) ids.Add(id);
        return ids;
    }

    /// <summary>
    /// Generate up to <paramref name="maxTokens"/> tokens after <paramref name="promptIds"/>. The end token, when
    /// produced, is the last of the generated ids but not part of the text. <paramref name="onText"/> receives text
    /// as soon as it is complete.
    /// </summary>
    public static GenerationResult Run(ReferenceModel model, ITokenizer tokenizer, IReadOnlyList<int> promptIds, Sampler sampler,
        int maxTokens, ISet<int> endIds, Action<string>? onText = null, CancellationToken cancellationToken = default)
    {
        if (promptIds.Count == 0) throw new ArgumentException("the prompt has no tokens", nameof(promptIds));
        var sequence = promptIds.ToList();
        var generated = new List<int>();
        var decoder = new IncrementalDecoder(tokenizer);
        var stop = StopReason.Length;
        while (generated.Count < maxTokens)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (sequence.Count >= model.Config.ContextLength) { stop = StopReason.Context; break; }
            int id = sampler.Next(model.LastLogits(sequence.ToArray()));
            generated.Add(id);
            sequence.Add(id);
            if (endIds.Contains(id)) { stop = StopReason.Eos; break; }
            if (decoder.Add(id) is { Length: > 0 } piece) onText?.Invoke(piece);
        }
        if (decoder.Flush() is { Length: > 0 } rest) onText?.Invoke(rest);
        return new GenerationResult(promptIds.ToList(), generated, decoder.Text, stop);
    }

    /// <summary>
    /// Decodes the whole generated sequence each time (pieces can depend on their neighbours, e.g. SentencePiece's
    /// leading space) and hands out only the new text, holding it back while it ends in an incomplete character.
    /// </summary>
    private sealed class IncrementalDecoder(ITokenizer tokenizer)
    {
        private readonly List<int> _ids = [];
        private int _emitted;

        public string Text { get; private set; } = "";

        public string Add(int id)
        {
            _ids.Add(id);
            Text = tokenizer.Decode(_ids);
            return Text.EndsWith('\uFFFD') ? "" : Emit();
        }

        public string Flush() => Emit();

        private string Emit()
        {
            if (Text.Length < _emitted) return ""; // cannot happen for a prefix-stable decode; never re-emit
            string piece = Text[_emitted..];
            _emitted = Text.Length;
            return piece;
        }
    }
}
