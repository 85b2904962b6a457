namespace EdgeTune.Models.Tokenizers;

/// <summary>
/// Text to token ids and back, exactly as Hugging Face's tokenizer.json and llama.cpp's GGUF vocabularies do.
/// (Contract shared by conversion, generation, the data pipeline and evaluation.)
/// </summary>
public interface ITokenizer
{
    int VocabularySize { get; }

    /// <summary>Beginning-of-sequence id, when the vocabulary has one.</summary>
    int? BosId { get; }

    /// <summary>End-of-sequence id (end of generation), when the vocabulary has one.</summary>
    int? EosId { get; }

    /// <summary>
    /// Ids of <paramref name="text"/>. <paramref name="addSpecialTokens"/> adds BOS/EOS as the tokenizer's
    /// post-processor (HF) or add_bos_token (GGUF) says; <paramref name="parseSpecial"/> turns special-token
    /// text inside <paramref name="text"/> (e.g. "&lt;|eot_id|&gt;") into its id rather than plain text.
    /// </summary>
    IReadOnlyList<int> Encode(string text, bool addSpecialTokens = true, bool parseSpecial = true);

    /// <summary>Text of <paramref name="ids"/>; special tokens are dropped when <paramref name="skipSpecialTokens"/>.</summary>
    string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false);

    /// <summary>The vocabulary entry (piece) of one id, as stored.</summary>
    string Piece(int id);

    /// <summary>True for control/special tokens (BOS, EOS, chat markers).</summary>
    bool IsSpecial(int id);
}
