using System.Text;
using EdgeTune.Core;
using EdgeTune.Formats.Gguf;

namespace EdgeTune.Models.Tokenizers;

/// <summary>
/// Tokenizes as llama.cpp does from a GGUF vocabulary (src/llama-vocab.cpp): special and user-defined tokens are
/// cut out of the text first (longest token first, over the whole text), then "gpt2" vocabularies split with the
/// pre-tokenizer's regex and merge byte-level pieces by merge rank, and "llama" (SentencePiece) vocabularies
/// put "▁" for spaces (and before the text) and merge the pair whose joined piece scores highest, falling back
/// to &lt;0xNN&gt; byte tokens.
/// </summary>
public sealed class GgufTokenizer : ITokenizer
{
    private readonly string[] _tokens;
    private readonly GgufTokenType[] _types;
    private readonly float[] _scores;
    private readonly Dictionary<string, int> _ids = new(StringComparer.Ordinal);
    private readonly Dictionary<(string, string), int> _ranks = [];
    private readonly SplitPattern? _split;
    private readonly bool _byteLevel;
    private readonly bool _ignoreMerges;
    private readonly bool _addSpacePrefix;
    private readonly bool _addBos;
    private readonly bool _addEos;
    private readonly List<int> _specialBySize; // control, user-defined and unknown tokens, longest first

    private GgufTokenizer(GgufMetadata m, string path)
    {
        string model = m.GetString("tokenizer.ggml.model") ?? throw FileFormatException.AtKey(path, "tokenizer.ggml.model", "is missing (no vocabulary)");
        _tokens = ArrayOf<string>(m, path, "tokenizer.ggml.tokens") ?? throw FileFormatException.AtKey(path, "tokenizer.ggml.tokens", "is missing");
        int n = _tokens.Length;
        var types = ArrayOf<int>(m, path, "tokenizer.ggml.token_type");
        _types = types is null ? Enumerable.Repeat(GgufTokenType.Normal, n).ToArray() : types.Select(t => (GgufTokenType)t).ToArray();
        _scores = ArrayOf<float>(m, path, "tokenizer.ggml.scores") ?? new float[n];
        if (_types.Length != n) throw FileFormatException.AtKey(path, "tokenizer.ggml.token_type", $"has {_types.Length} entries for {n} tokens");
        if (_scores.Length != n) throw FileFormatException.AtKey(path, "tokenizer.ggml.scores", $"has {_scores.Length} entries for {n} tokens");
        for (int id = 0; id < n; id++) _ids.TryAdd(_tokens[id], id);

        BosId = Id(m, path, "tokenizer.ggml.bos_token_id", n);
        EosId = Id(m, path, "tokenizer.ggml.eos_token_id", n);
        switch (model)
        {
            case "gpt2":
                _byteLevel = true;
                string pre = m.GetString("tokenizer.ggml.pre") ?? "default";
                _split = new SplitPattern(SplitPattern.ForLlamaCppName(pre)
                    ?? throw FileFormatException.AtKey(path, "tokenizer.ggml.pre", $"pre-tokenizer '{pre}' is not supported (llama-bpe, qwen2, gpt2)"));
                // llama.cpp skips the merges for words already in the vocabulary with the Llama 3 pre-tokenizer only.
                _ignoreMerges = pre is "llama-bpe" or "llama3" or "llama-v3";
                var merges = ArrayOf<string>(m, path, "tokenizer.ggml.merges") ?? throw FileFormatException.AtKey(path, "tokenizer.ggml.merges", "is missing (required for gpt2)");
                for (int r = 0; r < merges.Length; r++)
                {
                    int space = merges[r].IndexOf(' ', 1);
                    if (space < 0) throw FileFormatException.AtKey(path, $"tokenizer.ggml.merges[{r}]", $"'{merges[r]}' is not \"left right\"");
                    _ranks.TryAdd((merges[r][..space], merges[r][(space + 1)..]), r);
                }
                _addBos = Flag(m, path, "tokenizer.ggml.add_bos_token", false);
                break;
            case "llama":
                _addSpacePrefix = Flag(m, path, "tokenizer.ggml.add_space_prefix", true);
                _addBos = Flag(m, path, "tokenizer.ggml.add_bos_token", true);
                break;
            default:
                throw FileFormatException.AtKey(path, "tokenizer.ggml.model", $"'{model}' is not supported (gpt2, llama)");
        }
        _addEos = Flag(m, path, "tokenizer.ggml.add_eos_token", false);
        _specialBySize = Enumerable.Range(0, n)
            .Where(id => _types[id] is GgufTokenType.Control or GgufTokenType.UserDefined or GgufTokenType.Unknown && _tokens[id].Length > 0)
            .OrderByDescending(id => _tokens[id].Length).ToList();
    }

    /// <summary>The tokenizer of a GGUF file's metadata; <paramref name="path"/> names the file in errors.</summary>
    public static GgufTokenizer FromMetadata(GgufMetadata metadata, string path) => new(metadata, path);

    public int VocabularySize => _tokens.Length;
    public int? BosId { get; }
    public int? EosId { get; }

    public string Piece(int id) => (uint)id < (uint)_tokens.Length ? _tokens[id] : throw new ArgumentOutOfRangeException(nameof(id), id, $"vocabulary has {_tokens.Length} tokens");

    public bool IsSpecial(int id) => (uint)id < (uint)_types.Length && _types[id] is GgufTokenType.Control or GgufTokenType.Unknown;

    public GgufTokenType TokenType(int id) => _types[id];

    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = true, bool parseSpecial = true)
    {
        var ids = new List<int>();
        if (addSpecialTokens && _addBos && BosId is int bos) ids.Add(bos);
        bool previousSpecial = true; // SentencePiece: a space goes before the text and after each special token
        foreach (var (fragment, token) in Partition(text, parseSpecial))
        {
            if (fragment.Length == 0) continue;
            if (token is int id)
            {
                ids.Add(id);
                previousSpecial = true;
                continue;
            }
            if (_byteLevel)
                foreach (var word in _split!.Split(fragment)) EncodeBpeWord(ByteLevel.Encode(word), ids);
            else
                EncodeSentencePiece(((_addSpacePrefix && previousSpecial ? " " : "") + fragment).Replace(" ", "▁", StringComparison.Ordinal), ids);
            previousSpecial = false;
        }
        if (addSpecialTokens && _addEos && EosId is int eos) ids.Add(eos);
        return ids;
    }

    // llama.cpp's tokenizer_st_partition: for each special token, longest first, cut every occurrence out of the
    // text fragments left so far. Control and unknown tokens only when parsing special text; user-defined always.
    private List<(string Text, int? Token)> Partition(string text, bool parseSpecial)
    {
        var fragments = new List<(string Text, int? Token)> { (text, null) };
        foreach (int id in _specialBySize)
        {
            if (!parseSpecial && _types[id] != GgufTokenType.UserDefined) continue;
            string special = _tokens[id];
            if (!text.Contains(special, StringComparison.Ordinal)) continue;
            var next = new List<(string, int?)>(fragments.Count + 2);
            foreach (var f in fragments)
            {
                if (f.Token is not null) { next.Add(f); continue; }
                int start = 0;
                for (int at = f.Text.IndexOf(special, StringComparison.Ordinal); at >= 0; at = f.Text.IndexOf(special, start, StringComparison.Ordinal))
                {
                    if (at > start) next.Add((f.Text[start..at], null));
                    next.Add((special, id));
                    start = at + special.Length;
                }
                if (start < f.Text.Length) next.Add((f.Text[start..], null));
            }
            fragments = next;
        }
        return fragments;
    }

    private void EncodeBpeWord(string word, List<int> ids)
    {
        if (_ignoreMerges && _ids.TryGetValue(word, out int whole))
        {
            ids.Add(whole);
            return;
        }
        foreach (var symbol in PairMerger.Merge(word, (a, b) => _ranks.TryGetValue((a, b), out int r) ? r : null))
        {
            if (_ids.TryGetValue(symbol, out int id)) ids.Add(id);
            else // a piece the vocabulary lacks: one token per byte, each byte as its byte-level character
                foreach (char c in symbol)
                    if (_ids.TryGetValue(c.ToString(), out int b)) ids.Add(b);
        }
    }

    private void EncodeSentencePiece(string text, List<int> ids)
    {
        // Highest score first; llama.cpp's priority queue breaks ties by the leftmost pair, as PairMerger does.
        foreach (var symbol in PairMerger.Merge(text, (a, b) => _ids.TryGetValue(a + b, out int id) ? -(double)_scores[id] : null))
        {
            if (_ids.TryGetValue(symbol, out int id)) ids.Add(id);
            else
                foreach (byte b in Encoding.UTF8.GetBytes(symbol))
                    ids.Add(_ids.TryGetValue($"<0x{b:X2}>", out int byteId) ? byteId : UnknownOrThrow(symbol));
        }
    }

    private int UnknownOrThrow(string symbol) =>
        System.Array.IndexOf(_types, GgufTokenType.Unknown) is int unk and >= 0 ? unk : throw new EdgeTuneException($"'{symbol}' has no token and the vocabulary no byte tokens");

    /// <summary>Text of the ids as llama.cpp's detokenizer gives it (control tokens shown unless skipped).</summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        var bytes = new List<byte>();
        bool first = true;
        foreach (int id in ids)
        {
            string piece = Piece(id);
            switch (_types[id])
            {
                case GgufTokenType.Control or GgufTokenType.Unknown or GgufTokenType.Unused:
                    if (!skipSpecialTokens) bytes.AddRange(Encoding.UTF8.GetBytes(piece));
                    continue;
                case GgufTokenType.Byte:
                    bytes.Add(Convert.ToByte(piece[3..5], 16));
                    break;
                case GgufTokenType.UserDefined:
                    bytes.AddRange(Encoding.UTF8.GetBytes(piece));
                    break;
                default:
                    if (_byteLevel) ByteLevel.AppendBytes(piece, bytes);
                    else
                    {
                        string text = piece.Replace("▁", " ", StringComparison.Ordinal);
                        // The space SentencePiece put before the text is not part of it.
                        if (first && _addSpacePrefix && text.StartsWith(' ')) text = text[1..];
                        bytes.AddRange(Encoding.UTF8.GetBytes(text));
                    }
                    break;
            }
            first = false;
        }
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    private static T[]? ArrayOf<T>(GgufMetadata m, string path, string key)
    {
        if (!m.TryGet(key, out var v)) return null;
        return v.Value as T[] ?? throw FileFormatException.AtKey(path, key, $"is {v.Describe()}, not an array of {typeof(T).Name}");
    }

    private static int? Id(GgufMetadata m, string path, string key, int n)
    {
        if (!m.TryGet(key, out var v)) return null;
        long id = v.IsArray || v.Value is string or float or double or bool ? throw FileFormatException.AtKey(path, key, $"is {v.Describe()}, not an integer") : v.AsInt64();
        return id >= 0 && id < n ? (int)id : throw FileFormatException.AtKey(path, key, $"{id} is outside the vocabulary of {n} tokens");
    }

    private static bool Flag(GgufMetadata m, string path, string key, bool fallback) =>
        !m.TryGet(key, out var v) ? fallback
        : v.Value is bool b ? b : throw FileFormatException.AtKey(path, key, $"is {v.Describe()}, not BOOL");
}
