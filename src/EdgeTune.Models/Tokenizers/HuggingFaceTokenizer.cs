using System.Globalization;
using System.Text;
using System.Text.Json;
using EdgeTune.Core;
using static EdgeTune.Models.Tokenizers.TokenizerJson;

namespace EdgeTune.Models.Tokenizers;

/// <summary>One entry of tokenizer.json's "added_tokens": matched in the raw text before the model runs.</summary>
public sealed record AddedToken(int Id, string Content, bool Special);

/// <summary>
/// A Hugging Face fast tokenizer (tokenizer.json) with a BPE model: byte-level BPE as in Llama 3 and Qwen, and
/// SentencePiece-style BPE with byte fallback as in Llama 2, Mistral and TinyLlama. Encoding follows the
/// tokenizers library's pipeline: added tokens are cut out of the raw text first, then each remaining piece
/// is normalized, pre-tokenized and merged, then the post-processor adds BOS/EOS. A component we do not
/// implement is an error naming its key, never a silent approximation.
/// </summary>
public sealed class HuggingFaceTokenizer : ITokenizer
{
    private readonly string[] _pieces;
    private readonly bool[] _special;
    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<(string, string), int> _ranks;
    private readonly List<AddedToken> _added;
    private readonly List<Func<string, string>> _normalizers = [];
    private readonly List<Func<List<string>, bool, List<string>>> _preTokenizers = [];
    private readonly List<Func<List<string>, List<string>>> _decoders = [];
    private readonly bool _ignoreMerges;
    private readonly bool _byteFallback;
    private readonly bool _fuseUnknown;
    private readonly int? _unknownId;
    private readonly List<int> _prefix = [];
    private readonly List<int> _suffix = [];

    private HuggingFaceTokenizer(string folder, JsonElement json, JsonElement? config)
    {
        Folder = folder;
        string file = Path.Combine(folder, "tokenizer.json");
        string configFile = Path.Combine(folder, "tokenizer_config.json");

        var model = Required(file, json, "model", "model");
        string type = OptionalString(file, model, "type", "model.type") ?? "BPE";
        if (type != "BPE") throw Bad(file, "model.type", $"'{type}' is not supported (BPE only: Llama, Mistral, Qwen, TinyLlama)");
        foreach (var affix in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
            if (OptionalString(file, model, affix, $"model.{affix}") is { Length: > 0 } value)
                throw Bad(file, $"model.{affix}", $"'{value}' is not supported");
        _ignoreMerges = OptionalBool(file, model, "ignore_merges", "model.ignore_merges", false);
        _byteFallback = OptionalBool(file, model, "byte_fallback", "model.byte_fallback", false);
        _fuseUnknown = OptionalBool(file, model, "fuse_unk", "model.fuse_unk", false);

        _vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        var vocab = Required(file, model, "vocab", "model.vocab");
        if (vocab.ValueKind != JsonValueKind.Object) throw Bad(file, "model.vocab", "must be an object of piece: id");
        foreach (var p in vocab.EnumerateObject())
            _vocab[p.Name] = p.Value.TryGetInt32(out int id) && id >= 0 ? id : throw Bad(file, $"model.vocab[\"{p.Name}\"]", $"id must be a non-negative integer, not {p.Value}");

        Merges = ReadMerges(file, model);
        _ranks = new Dictionary<(string, string), int>(Merges.Count);
        for (int r = 0; r < Merges.Count; r++) _ranks.TryAdd(Merges[r], r);

        _added = [];
        if (Child(json, "added_tokens") is { ValueKind: JsonValueKind.Array } added)
        {
            int i = 0;
            foreach (var t in added.EnumerateArray())
            {
                string key = $"added_tokens[{i++}]";
                _added.Add(new AddedToken(RequiredInt(file, t, "id", key + ".id"), RequiredString(file, t, "content", key + ".content"),
                    OptionalBool(file, t, "special", key + ".special", false)));
            }
        }

        int size = Math.Max(_vocab.Count == 0 ? 0 : _vocab.Values.Max() + 1, _added.Count == 0 ? 0 : _added.Max(a => a.Id) + 1);
        _pieces = new string[size];
        _special = new bool[size];
        foreach (var (piece, id) in _vocab) _pieces[id] = piece;
        foreach (var a in _added)
        {
            _pieces[a.Id] = a.Content;
            _special[a.Id] = a.Special;
            _vocab.TryAdd(a.Content, a.Id);
        }
        for (int id = 0; id < size; id++) _pieces[id] ??= "";

        string? unk = OptionalString(file, model, "unk_token", "model.unk_token");
        if (unk is not null) _unknownId = _vocab.TryGetValue(unk, out int u) ? u : throw Bad(file, "model.unk_token", $"'{unk}' is not in the vocabulary");

        if (Child(json, "normalizer") is { } normalizer) AddNormalizer(file, normalizer, "normalizer");
        if (Child(json, "pre_tokenizer") is { } pre) AddPreTokenizer(file, pre, "pre_tokenizer");
        if (Child(json, "decoder") is { } decoder) AddDecoder(file, decoder, "decoder");
        bool templated = Child(json, "post_processor") is { } post && AddPostProcessor(file, post, "post_processor");

        if (config is { } c)
        {
            BosToken = TokenContent(configFile, c, "bos_token");
            EosToken = TokenContent(configFile, c, "eos_token");
            UnknownToken = TokenContent(configFile, c, "unk_token");
            PadToken = TokenContent(configFile, c, "pad_token");
            ChatTemplate = ReadChatTemplate(configFile, c);
            // Without a TemplateProcessing post-processor, transformers' slow-tokenizer flags decide (LlamaTokenizer).
            if (!templated)
            {
                if (OptionalBool(configFile, c, "add_bos_token", "add_bos_token", false) && BosId is int bos) _prefix.Add(bos);
                if (OptionalBool(configFile, c, "add_eos_token", "add_eos_token", false) && EosId is int eos) _suffix.Add(eos);
            }
        }
        foreach (var (name, token) in new[] { ("bos_token", BosToken), ("eos_token", EosToken), ("unk_token", UnknownToken), ("pad_token", PadToken) })
            if (token is not null && !_vocab.ContainsKey(token)) throw Bad(configFile, name, $"'{token}' is not in the vocabulary of {file}");
        // Longest first, so that at one position the longest added token wins (tokenizers' leftmost-longest match).
        _added.Sort((a, b) => b.Content.Length.CompareTo(a.Content.Length));
    }

    /// <summary>Load tokenizer.json (required) and tokenizer_config.json (optional) from a Hugging Face folder.</summary>
    public static HuggingFaceTokenizer Load(string folder)
    {
        if (!Directory.Exists(folder)) throw new EdgeTuneException($"{folder}: no such folder");
        string file = Path.Combine(folder, "tokenizer.json");
        if (!File.Exists(file)) throw new EdgeTuneException($"{file}: no such file (a Hugging Face tokenizer folder holds tokenizer.json)");
        using var json = TokenizerJson.Load(file);
        string configFile = Path.Combine(folder, "tokenizer_config.json");
        using var config = File.Exists(configFile) ? TokenizerJson.Load(configFile) : null;
        return new HuggingFaceTokenizer(folder, json.RootElement, config?.RootElement);
    }

    public string Folder { get; }

    /// <summary>Merges in rank order (first merges first).</summary>
    public IReadOnlyList<(string Left, string Right)> Merges { get; }

    /// <summary>Byte-level BPE (GPT-2 alphabet, llama.cpp "gpt2") rather than SentencePiece-style BPE (llama.cpp "llama").</summary>
    public bool IsByteLevel { get; private set; }

    /// <summary>The pre-tokenizer's split regex (byte-level BPE), as written in tokenizer.json.</summary>
    public string? SplitRegex { get; private set; }

    /// <summary>True when a SentencePiece-style normalizer or pre-tokenizer puts "▁" before the text.</summary>
    public bool AddsSpacePrefix { get; private set; }

    public IReadOnlyList<AddedToken> AddedTokens => _added.OrderBy(a => a.Id).ToList();

    public string? BosToken { get; }
    public string? EosToken { get; }
    public string? UnknownToken { get; }
    public string? PadToken { get; }
    public string? ChatTemplate { get; }

    /// <summary>Whether encoding with special tokens adds BOS / EOS (the post-processor's template).</summary>
    public bool AddsBos => BosId is int b && _prefix.Contains(b);
    public bool AddsEos => EosId is int e && _suffix.Contains(e);

    public int VocabularySize => _pieces.Length;
    public int? BosId => Id(BosToken);
    public int? EosId => Id(EosToken);
    public int? UnknownId => _unknownId ?? Id(UnknownToken);
    public int? PadId => Id(PadToken);

    private int? Id(string? token) => token is not null && _vocab.TryGetValue(token, out int id) ? id : null;

    /// <summary>The id of a piece of the vocabulary (as stored), or null.</summary>
    public int? TokenId(string piece) => _vocab.TryGetValue(piece, out int id) ? id : null;

    public string Piece(int id) => (uint)id < (uint)_pieces.Length ? _pieces[id] : throw new ArgumentOutOfRangeException(nameof(id), id, $"vocabulary has {_pieces.Length} tokens");

    public bool IsSpecial(int id) => (uint)id < (uint)_special.Length && _special[id];

    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = true, bool parseSpecial = true)
    {
        var ids = new List<int>();
        if (addSpecialTokens) ids.AddRange(_prefix);
        int position = 0;
        while (position < text.Length)
        {
            var (at, token) = NextAddedToken(text, position, parseSpecial);
            if (at > position) EncodeSegment(text[position..at], position == 0, ids);
            if (token is null) break;
            ids.Add(token.Id);
            position = at + token.Content.Length;
        }
        if (addSpecialTokens) ids.AddRange(_suffix);
        return ids;
    }

    // Leftmost, then longest, added token at or after `from`. Special ones only when parsing special text
    // (tokenizers' split_special_tokens); the others (user-defined) always, as in tokenizers and llama.cpp.
    private (int At, AddedToken? Token) NextAddedToken(string text, int from, bool parseSpecial)
    {
        for (int i = from; i < text.Length; i++)
            foreach (var a in _added)
                if ((parseSpecial || !a.Special) && a.Content.Length > 0 && string.CompareOrdinal(text, i, a.Content, 0, a.Content.Length) == 0)
                    return (i, a);
        return (text.Length, null);
    }

    private void EncodeSegment(string segment, bool atStart, List<int> ids)
    {
        foreach (var normalize in _normalizers) segment = normalize(segment);
        var words = new List<string> { segment };
        foreach (var pre in _preTokenizers) words = pre(words, atStart);
        foreach (var word in words)
            if (word.Length > 0) EncodeWord(word, ids);
    }

    private void EncodeWord(string word, List<int> ids)
    {
        if (_ignoreMerges && _vocab.TryGetValue(word, out int whole))
        {
            ids.Add(whole);
            return;
        }
        bool lastUnknown = false;
        foreach (var symbol in PairMerger.Merge(word, (a, b) => _ranks.TryGetValue((a, b), out int r) ? r : null))
        {
            if (_vocab.TryGetValue(symbol, out int id)) { ids.Add(id); lastUnknown = false; continue; }
            if (_byteFallback && Encoding.UTF8.GetBytes(symbol).Select(b => TokenId($"<0x{b:X2}>")).ToList() is var bytes && bytes.All(b => b is not null))
            {
                ids.AddRange(bytes.Select(b => b!.Value));
                lastUnknown = false;
                continue;
            }
            if (_unknownId is not int unk) throw new EdgeTuneException($"{Folder}: '{symbol}' is not in the vocabulary and the model has no unk_token");
            if (!(_fuseUnknown && lastUnknown)) ids.Add(unk);
            lastUnknown = true;
        }
    }

    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        var tokens = ids.Where(id => !(skipSpecialTokens && IsSpecial(id))).Select(Piece).ToList();
        foreach (var decode in _decoders) tokens = decode(tokens);
        return string.Concat(tokens);
    }

    private static List<(string, string)> ReadMerges(string file, JsonElement model)
    {
        var merges = new List<(string, string)>();
        if (Child(model, "merges") is not { } list) return merges;
        int i = 0;
        foreach (var m in list.EnumerateArray())
        {
            // Older files write "a b"; newer ones ["a", "b"] (pieces may then contain spaces).
            if (m.ValueKind == JsonValueKind.String && m.GetString()!.Split(' ') is [var a, var b]) merges.Add((a, b));
            else if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2 && m[0].ValueKind == JsonValueKind.String && m[1].ValueKind == JsonValueKind.String)
                merges.Add((m[0].GetString()!, m[1].GetString()!));
            else throw Bad(file, $"model.merges[{i}]", $"must be \"a b\" or [\"a\", \"b\"], not {m}");
            i++;
        }
        return merges;
    }

    private static string? ReadChatTemplate(string file, JsonElement config) => Child(config, "chat_template") switch
    {
        null => null,
        { ValueKind: JsonValueKind.String } s => s.GetString(),
        // A list of named templates: the one named "default" is the chat template.
        { ValueKind: JsonValueKind.Array } list => list.EnumerateArray()
            .Where(t => OptionalString(file, t, "name", "chat_template[].name") == "default")
            .Select(t => RequiredString(file, t, "template", "chat_template[].template")).FirstOrDefault(),
        var other => throw Bad(file, "chat_template", $"must be a string or a list of named templates, not {other.Value.ValueKind}"),
    };

    private string TypeOf(string file, JsonElement e, string key) => RequiredString(file, e, "type", key + ".type");

    private void AddNormalizer(string file, JsonElement n, string key)
    {
        switch (TypeOf(file, n, key))
        {
            case "Sequence":
                int i = 0;
                foreach (var child in Required(file, n, "normalizers", key + ".normalizers").EnumerateArray())
                    AddNormalizer(file, child, $"{key}.normalizers[{i++}]");
                break;
            case "NFC": _normalizers.Add(s => s.Normalize(NormalizationForm.FormC)); break;
            case "NFKC": _normalizers.Add(s => s.Normalize(NormalizationForm.FormKC)); break;
            case "Prepend":
                string prepend = RequiredString(file, n, "prepend", key + ".prepend");
                AddsSpacePrefix |= prepend == "▁";
                _normalizers.Add(s => s.Length == 0 ? s : prepend + s);
                break;
            case "Replace":
                string from = ReplacePattern(file, n, key), to = RequiredString(file, n, "content", key + ".content");
                _normalizers.Add(s => s.Replace(from, to, StringComparison.Ordinal));
                break;
            case var other: throw Bad(file, key + ".type", $"normalizer '{other}' is not supported");
        }
    }

    private static string ReplacePattern(string file, JsonElement n, string key) =>
        OptionalString(file, Required(file, n, "pattern", key + ".pattern"), "String", key + ".pattern.String")
        ?? throw Bad(file, key + ".pattern", "only plain-string patterns are supported");

    private void AddPreTokenizer(string file, JsonElement p, string key)
    {
        switch (TypeOf(file, p, key))
        {
            case "Sequence":
                int i = 0;
                foreach (var child in Required(file, p, "pretokenizers", key + ".pretokenizers").EnumerateArray())
                    AddPreTokenizer(file, child, $"{key}.pretokenizers[{i++}]");
                break;
            case "Split":
                string? regex = OptionalString(file, Required(file, p, "pattern", key + ".pattern"), "Regex", key + ".pattern.Regex");
                if (regex is null) throw Bad(file, key + ".pattern", "only Regex patterns are supported");
                if (OptionalString(file, p, "behavior", key + ".behavior") is var behavior and not "Isolated")
                    throw Bad(file, key + ".behavior", $"'{behavior}' is not supported (Isolated only)");
                if (OptionalBool(file, p, "invert", key + ".invert", false)) throw Bad(file, key + ".invert", "inverted splits are not supported");
                SplitRegex = regex;
                var split = new SplitPattern(regex);
                _preTokenizers.Add((words, _) => words.SelectMany(split.Split).ToList());
                break;
            case "ByteLevel":
                IsByteLevel = true;
                bool prefixSpace = OptionalBool(file, p, "add_prefix_space", key + ".add_prefix_space", true);
                bool useRegex = OptionalBool(file, p, "use_regex", key + ".use_regex", true);
                if (useRegex) SplitRegex ??= SplitPattern.Gpt2;
                var gpt2 = useRegex ? new SplitPattern(SplitPattern.Gpt2) : null;
                _preTokenizers.Add((words, atStart) =>
                {
                    if (prefixSpace && words.Count > 0 && !words[0].StartsWith(' ')) words[0] = " " + words[0];
                    var pieces = gpt2 is null ? words : words.SelectMany(gpt2.Split).ToList();
                    return pieces.Select(ByteLevel.Encode).ToList();
                });
                break;
            case "Metaspace":
                string replacement = OptionalString(file, p, "replacement", key + ".replacement") ?? "▁";
                string scheme = OptionalString(file, p, "prepend_scheme", key + ".prepend_scheme")
                                ?? (OptionalBool(file, p, "add_prefix_space", key + ".add_prefix_space", true) ? "always" : "never");
                bool splitWords = OptionalBool(file, p, "split", key + ".split", true);
                AddsSpacePrefix |= scheme != "never";
                _preTokenizers.Add((words, atStart) => words.SelectMany(w =>
                {
                    w = w.Replace(" ", replacement, StringComparison.Ordinal);
                    if ((scheme == "always" || (scheme == "first" && atStart)) && !w.StartsWith(replacement, StringComparison.Ordinal)) w = replacement + w;
                    return splitWords ? SplitBefore(w, replacement) : [w];
                }).ToList());
                break;
            case var other: throw Bad(file, key + ".type", $"pre-tokenizer '{other}' is not supported");
        }
    }

    // Metaspace's split: each replacement character starts a new word (behaviour MergedWithNext).
    private static IEnumerable<string> SplitBefore(string text, string marker)
    {
        int start = 0;
        for (int i = text.IndexOf(marker, 1, StringComparison.Ordinal); i > 0; i = text.IndexOf(marker, i + 1, StringComparison.Ordinal))
        {
            yield return text[start..i];
            start = i;
        }
        yield return text[start..];
    }

    /// <summary>Adds the BOS/EOS template; true when it is a TemplateProcessing (which then decides BOS/EOS).</summary>
    private bool AddPostProcessor(string file, JsonElement p, string key)
    {
        switch (TypeOf(file, p, key))
        {
            case "ByteLevel": return false; // only adjusts offsets
            case "Sequence":
                bool any = false;
                int i = 0;
                foreach (var child in Required(file, p, "processors", key + ".processors").EnumerateArray())
                    any |= AddPostProcessor(file, child, $"{key}.processors[{i++}]");
                return any;
            case "TemplateProcessing":
                var specials = Required(file, p, "special_tokens", key + ".special_tokens");
                bool afterSequence = false;
                int j = 0;
                foreach (var item in Required(file, p, "single", key + ".single").EnumerateArray())
                {
                    string itemKey = $"{key}.single[{j++}]";
                    if (Child(item, "Sequence") is not null) { afterSequence = true; continue; }
                    var special = Required(file, item, "SpecialToken", itemKey + ".SpecialToken");
                    string name = RequiredString(file, special, "id", itemKey + ".SpecialToken.id");
                    var entry = Child(specials, name) ?? throw Bad(file, $"{key}.special_tokens", $"has no entry '{name}'");
                    foreach (var id in Required(file, entry, "ids", $"{key}.special_tokens.{name}.ids").EnumerateArray())
                        (afterSequence ? _suffix : _prefix).Add(id.GetInt32());
                }
                return true;
            case var other: throw Bad(file, key + ".type", $"post-processor '{other}' is not supported");
        }
    }

    private void AddDecoder(string file, JsonElement d, string key)
    {
        switch (TypeOf(file, d, key))
        {
            case "Sequence":
                int i = 0;
                foreach (var child in Required(file, d, "decoders", key + ".decoders").EnumerateArray())
                    AddDecoder(file, child, $"{key}.decoders[{i++}]");
                break;
            case "ByteLevel":
                _decoders.Add(tokens =>
                {
                    var bytes = new List<byte>();
                    foreach (var t in tokens) ByteLevel.AppendBytes(t, bytes);
                    return [Encoding.UTF8.GetString(bytes.ToArray())]; // invalid UTF-8 becomes U+FFFD, as from_utf8_lossy
                });
                break;
            case "Replace":
                string from = ReplacePattern(file, d, key), to = RequiredString(file, d, "content", key + ".content");
                _decoders.Add(tokens => tokens.Select(t => t.Replace(from, to, StringComparison.Ordinal)).ToList());
                break;
            case "ByteFallback": _decoders.Add(DecodeByteFallback); break;
            case "Fuse": _decoders.Add(tokens => [string.Concat(tokens)]); break;
            case "Strip":
                string content = RequiredString(file, d, "content", key + ".content");
                int start = RequiredInt(file, d, "start", key + ".start"), stop = RequiredInt(file, d, "stop", key + ".stop");
                _decoders.Add(tokens => tokens.Select(t => Strip(t, content, start, stop)).ToList());
                break;
            case "Metaspace":
                string replacement = OptionalString(file, d, "replacement", key + ".replacement") ?? "▁";
                string scheme = OptionalString(file, d, "prepend_scheme", key + ".prepend_scheme") ?? "always";
                _decoders.Add(tokens => tokens.Select((t, n) =>
                {
                    t = t.Replace(replacement, " ", StringComparison.Ordinal);
                    return n == 0 && scheme != "never" && t.StartsWith(' ') ? t[1..] : t;
                }).ToList());
                break;
            case var other: throw Bad(file, key + ".type", $"decoder '{other}' is not supported");
        }
    }

    // Runs of <0xNN> tokens become their UTF-8 text; an invalid run gives one U+FFFD per byte, as tokenizers does.
    private static List<string> DecodeByteFallback(List<string> tokens)
    {
        var result = new List<string>();
        var run = new List<byte>();
        void Flush()
        {
            if (run.Count == 0) return;
            var strict = new UTF8Encoding(false, throwOnInvalidBytes: true);
            try { result.Add(strict.GetString(run.ToArray())); }
            catch (DecoderFallbackException) { result.AddRange(run.Select(_ => "\uFFFD")); }
            run.Clear();
        }
        foreach (var t in tokens)
        {
            if (t.Length == 6 && t.StartsWith("<0x", StringComparison.Ordinal) && t.EndsWith('>')
                && byte.TryParse(t.AsSpan(3, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out byte b))
                run.Add(b);
            else { Flush(); result.Add(t); }
        }
        Flush();
        return result;
    }

    private static string Strip(string t, string content, int start, int stop)
    {
        int s = 0, e = t.Length;
        while (s < start && s < e && t.AsSpan(s).StartsWith(content)) s += content.Length;
        for (int k = 0; k < stop && e - content.Length >= s && t.AsSpan(0, e).EndsWith(content); k++) e -= content.Length;
        return t[s..e];
    }
}
