using System.Text.RegularExpressions;
using EdgeTune.Core;
using EdgeTune.Formats.Gguf;

namespace EdgeTune.Models.Tokenizers;

/// <summary>
/// The GGUF tokenizer metadata llama.cpp needs, from a Hugging Face tokenizer folder, with the keys and types
/// convert_hf_to_gguf.py writes (llama.cpp checks the types exactly: ids UINT32, flags BOOL, token types INT32).
/// </summary>
public static partial class GgufVocabulary
{
    public static IReadOnlyList<KeyValuePair<string, GgufValue>> FromHuggingFace(string folder) =>
        FromTokenizer(HuggingFaceTokenizer.Load(folder));

    public static IReadOnlyList<KeyValuePair<string, GgufValue>> FromTokenizer(HuggingFaceTokenizer hf)
    {
        string file = Path.Combine(hf.Folder, "tokenizer.json");
        var keys = new List<KeyValuePair<string, GgufValue>>();
        void Add(string key, GgufValue value) => keys.Add(new(key, value));

        int n = hf.VocabularySize;
        var tokens = new string[n];
        var types = new int[n];
        var added = hf.AddedTokens.ToDictionary(a => a.Id);
        for (int id = 0; id < n; id++)
        {
            string piece = hf.Piece(id);
            tokens[id] = piece;
            types[id] = (int)TypeOf(hf, id, piece, added.GetValueOrDefault(id));
            // Ids that nothing uses still need an entry; convert_hf_to_gguf.py names them [PADn].
            if (piece.Length == 0) tokens[id] = $"[PAD{id}]";
        }

        if (hf.IsByteLevel)
        {
            string pre = (hf.SplitRegex is { } regex ? SplitPattern.LlamaCppName(regex) : null)
                ?? throw FileFormatException.AtKey(file, "pre_tokenizer", "this split regex has no llama.cpp pre-tokenizer we know (llama-bpe, qwen2, gpt2)");
            Add("tokenizer.ggml.model", GgufValue.String("gpt2"));
            Add("tokenizer.ggml.pre", GgufValue.String(pre));
            Add("tokenizer.ggml.tokens", GgufValue.Array(tokens));
            Add("tokenizer.ggml.token_type", GgufValue.Array(types));
            Add("tokenizer.ggml.merges", GgufValue.Array(hf.Merges.Select(m => $"{m.Left} {m.Right}").ToArray()));
        }
        else
        {
            if (hf.TokenId("<0x00>") is null) throw FileFormatException.AtKey(file, "model", "neither byte-level BPE nor SentencePiece BPE with <0xNN> byte tokens");
            Add("tokenizer.ggml.model", GgufValue.String("llama"));
            Add("tokenizer.ggml.tokens", GgufValue.Array(tokens));
            Add("tokenizer.ggml.scores", GgufValue.Array(Scores(hf)));
            Add("tokenizer.ggml.token_type", GgufValue.Array(types));
            Add("tokenizer.ggml.add_space_prefix", GgufValue.Bool(hf.AddsSpacePrefix));
        }

        void AddId(string key, int? id)
        {
            if (id is int value) Add(key, GgufValue.U32((uint)value));
        }
        AddId("tokenizer.ggml.bos_token_id", hf.BosId);
        AddId("tokenizer.ggml.eos_token_id", hf.EosId);
        AddId("tokenizer.ggml.unknown_token_id", hf.UnknownId);
        AddId("tokenizer.ggml.padding_token_id", hf.PadId);
        // Always written: llama.cpp otherwise guesses from the pre-tokenizer (it adds BOS for llama-bpe
        // even where the Hugging Face tokenizer does not).
        Add("tokenizer.ggml.add_bos_token", GgufValue.Bool(hf.AddsBos));
        Add("tokenizer.ggml.add_eos_token", GgufValue.Bool(hf.AddsEos));
        if (hf.ChatTemplate is { } template) Add("tokenizer.chat_template", GgufValue.String(template));
        return keys;
    }

    // As convert_hf_to_gguf.py: added tokens are control when special (or when they look like <|...|>),
    // user-defined otherwise; <0xNN> pieces of a SentencePiece vocabulary are bytes; unk is unknown.
    private static GgufTokenType TypeOf(HuggingFaceTokenizer hf, int id, string piece, AddedToken? added)
    {
        if (piece.Length == 0) return GgufTokenType.Unused;
        if (id == hf.UnknownId && !hf.IsByteLevel) return GgufTokenType.Unknown;
        if (added is not null)
            return added.Special || LooksSpecial(piece) ? GgufTokenType.Control : GgufTokenType.UserDefined;
        if (!hf.IsByteLevel && BytePiece().IsMatch(piece)) return GgufTokenType.Byte;
        return GgufTokenType.Normal;
    }

    private static bool LooksSpecial(string piece) =>
        piece is "<pad>" or "<mask>" or "<2mass>" or "[@BOS@]"
        || (piece.StartsWith("<|", StringComparison.Ordinal) && piece.EndsWith("|>", StringComparison.Ordinal))
        || (piece.StartsWith("<｜", StringComparison.Ordinal) && piece.EndsWith("｜>", StringComparison.Ordinal));

    [GeneratedRegex("^<0x[0-9A-Fa-f]{2}>$")]
    private static partial Regex BytePiece();

    /// <summary>
    /// SentencePiece scores for llama.cpp's merge loop, which merges the adjacent pair whose joined piece has the
    /// highest score. A piece made by merge rank r scores −r, so llama.cpp merges in the order the Hugging Face
    /// BPE does. (convert_hf_to_gguf.py's tokenizer.json path writes −1000 for every piece, which makes
    /// llama.cpp merge left to right and tokenize differently; tokenizer.model files carry real scores.)
    /// Pieces no merge makes (single characters, bytes, specials) score 0, as in SentencePiece models.
    /// </summary>
    private static float[] Scores(HuggingFaceTokenizer hf)
    {
        var scores = new float[hf.VocabularySize];
        var seen = new bool[hf.VocabularySize];
        for (int r = 0; r < hf.Merges.Count; r++)
        {
            var (left, right) = hf.Merges[r];
            if (hf.TokenId(left + right) is int id && !seen[id])
            {
                seen[id] = true;
                scores[id] = -r;
            }
        }
        return scores;
    }
}
