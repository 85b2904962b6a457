using System.Text.Json;
using System.Text.Json.Nodes;
using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Models.Architectures;
using EdgeTune.Models.Tokenizers;

namespace EdgeTune.Export.Onnx;

/// <summary>
/// The tokenizer files of an ONNX folder. ONNX Runtime GenAI reads a Hugging Face tokenizer.json and
/// tokenizer_config.json (chat template included): a Hugging Face source folder's files are copied; a GGUF's
/// vocabulary is written out as tokenizer.json the way transformers' converters express the same tokenizer
/// (byte-level BPE with its split regex and merges for "gpt2"; SentencePiece BPE with ▁ spaces, byte
/// fallback and merges ranked by the merged piece's score for "llama").
/// </summary>
internal sealed class TokenizerFiles
{
    private static readonly string[] HfFiles = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"];
    private readonly Func<string, IReadOnlyList<string>> _write;

    private TokenizerFiles(int? bos, IReadOnlyList<int> eos, Func<string, IReadOnlyList<string>> write)
    {
        BosTokenId = bos;
        EosTokenIds = eos;
        _write = write;
    }

    public int? BosTokenId { get; }
    public IReadOnlyList<int> EosTokenIds { get; }

    /// <summary>What the converted tokenizer will do differently from the source (one line each); empty when nothing.</summary>
    public IReadOnlyList<string> Warnings { get; private init; } = [];

    /// <summary>Writes the files into <paramref name="folder"/>; returns their names.</summary>
    public IReadOnlyList<string> WriteTo(string folder) => _write(folder);

    public static TokenizerFiles Prepare(string model, ModelConfig config)
    {
        if (Directory.Exists(model))
        {
            if (!File.Exists(Path.Combine(model, "tokenizer.json")))
                return new TokenizerFiles(config.BosTokenId, config.EosTokenIds, _ => []); // weights only: GenAI still runs token ids
            var hf = HuggingFaceTokenizer.Load(model); // checks tokenizer.json and tokenizer_config.json now
            var eos = config.EosTokenIds.Count > 0 ? config.EosTokenIds : hf.EosId is int e ? [e] : [];
            return new TokenizerFiles(hf.BosId ?? config.BosTokenId, eos, folder =>
            {
                var copied = new List<string>();
                foreach (var name in HfFiles.Where(f => File.Exists(Path.Combine(model, f))))
                {
                    File.Copy(Path.Combine(model, name), Path.Combine(folder, name));
                    copied.Add(name);
                }
                return copied;
            });
        }

        using var file = GgufFile.Open(model);
        var m = file.Metadata;
        if (!m.ContainsKey("tokenizer.ggml.tokens")) return new TokenizerFiles(config.BosTokenId, config.EosTokenIds, _ => []);
        var tokenizer = GgufTokenizer.FromMetadata(m, model); // checks the vocabulary now
        var (json, tokenizerConfig) = FromGguf(m, model, tokenizer, config);
        return new TokenizerFiles(tokenizer.BosId, EndOfGeneration(m, tokenizer), Write) { Warnings = SentencePieceGaps(m, model, tokenizer) };

        IReadOnlyList<string> Write(string folder)
        {
            var options = new JsonSerializerOptions { WriteIndented = false, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
            File.WriteAllText(Path.Combine(folder, "tokenizer.json"), json.ToJsonString(options));
            File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), tokenizerConfig.ToJsonString(new JsonSerializerOptions(options) { WriteIndented = true }));
            return ["tokenizer.json", "tokenizer_config.json"];
        }
    }

    /// <summary>
    /// Hugging Face BPE (tokenizer.json, so ONNX Runtime GenAI) turns a character that is not a piece into byte tokens
    /// before merging, while llama.cpp's SentencePiece tokenizer merges characters first: a piece holding a character
    /// the vocabulary lacks as a piece of its own is unreachable there, and text containing it tokenizes differently.
    /// SentencePiece models keep their alphabet, so real vocabularies pass; one line when this one does not.
    /// </summary>
    private static List<string> SentencePieceGaps(GgufMetadata m, string path, GgufTokenizer t)
    {
        if (m.GetString("tokenizer.ggml.model") != "llama") return [];
        var tokens = (string[])m["tokenizer.ggml.tokens"].Value;
        var pieces = new HashSet<string>(StringComparer.Ordinal);
        for (int id = 0; id < tokens.Length; id++) if (t.TokenType(id) is GgufTokenType.Normal or GgufTokenType.Undefined) pieces.Add(tokens[id]);
        var missing = new SortedSet<string>(StringComparer.Ordinal);
        int affected = 0;
        foreach (var piece in pieces)
        {
            bool gap = false;
            foreach (var rune in piece.EnumerateRunes())
                if (!pieces.Contains(rune.ToString())) { missing.Add(rune.ToString()); gap = true; }
            if (gap) affected++;
        }
        if (affected == 0) return [];
        return [$"{path}: {affected} of {pieces.Count} vocabulary pieces hold characters that are not pieces themselves ({string.Join(" ", missing.Take(8).Select(c => $"'{EdgeTune.Core.MessageText.Escape(c)}'"))}{(missing.Count > 8 ? " …" : "")}); " +
                "ONNX Runtime GenAI's tokenizer (Hugging Face BPE) byte-encodes those characters before merging, so text containing them tokenizes differently from llama.cpp"];
    }

    /// <summary>Control tokens llama.cpp ends generation at by their text (llama-vocab.cpp), besides EOS and EOT.</summary>
    private static readonly string[] EndOfGenerationTexts =
        ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>", "<｜end▁of▁sentence｜>"];

    /// <summary>
    /// The ids GenAI must stop at to end where llama.cpp ends: EOS, EOT (tokenizer.ggml.eot_token_id) and the control
    /// tokens llama.cpp treats as end of generation by their text (a ChatML model with EOS &lt;/s&gt; ends its turns
    /// with &lt;|im_end|&gt;, which GenAI would otherwise generate past).
    /// </summary>
    private static List<int> EndOfGeneration(GgufMetadata m, GgufTokenizer t)
    {
        var ids = new List<int>();
        if (t.EosId is int eos) ids.Add(eos);
        if (m.Get("tokenizer.ggml.eot_token_id") is { } eot && (int)eot.AsInt64() is int e && (uint)e < (uint)t.VocabularySize && !ids.Contains(e)) ids.Add(e);
        var tokens = (string[])m["tokenizer.ggml.tokens"].Value;
        for (int id = 0; id < tokens.Length; id++)
            if (t.TokenType(id) == GgufTokenType.Control && EndOfGenerationTexts.Contains(tokens[id]) && !ids.Contains(id)) ids.Add(id);
        return ids;
    }

    private static (JsonObject Tokenizer, JsonObject Config) FromGguf(GgufMetadata m, string path, GgufTokenizer t, ModelConfig config)
    {
        var tokens = (string[])m["tokenizer.ggml.tokens"].Value;
        string kind = m.GetString("tokenizer.ggml.model")!;
        bool spm = kind == "llama";
        var vocab = new JsonObject();
        var added = new JsonArray();
        for (int id = 0; id < tokens.Length; id++)
        {
            vocab.TryAdd(tokens[id], id);
            var type = t.TokenType(id);
            if (type is GgufTokenType.Control or GgufTokenType.UserDefined or GgufTokenType.Unknown)
                added.Add(new JsonObject
                {
                    ["id"] = id, ["content"] = tokens[id], ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
                    ["normalized"] = type == GgufTokenType.UserDefined && spm, ["special"] = type != GgufTokenType.UserDefined,
                });
        }

        JsonObject model;
        JsonNode? normalizer = null, preTokenizer = null, decoder, postProcessor = null;
        string? bos = t.BosId is int b ? tokens[b] : null, eos = t.EosId is int e ? tokens[e] : null;
        bool addBos = m.Get("tokenizer.ggml.add_bos_token")?.Value as bool? ?? spm;
        if (spm)
        {
            var scores = (float[]?)m.Get("tokenizer.ggml.scores")?.Value ?? new float[tokens.Length];
            model = Bpe(vocab, SentencePieceMerges(tokens, scores, t), byteFallback: true, unk: tokens.Select((s, i) => (s, i)).FirstOrDefault(p => t.TokenType(p.i) == GgufTokenType.Unknown).s, ignoreMerges: false);
            bool prefix = m.Get("tokenizer.ggml.add_space_prefix")?.Value as bool? ?? true;
            var steps = new JsonArray();
            if (prefix) steps.Add(new JsonObject { ["type"] = "Prepend", ["prepend"] = "▁" });
            steps.Add(new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = " " }, ["content"] = "▁" });
            normalizer = new JsonObject { ["type"] = "Sequence", ["normalizers"] = steps };
            var decoders = new JsonArray
            {
                new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = "▁" }, ["content"] = " " },
                new JsonObject { ["type"] = "ByteFallback" },
                new JsonObject { ["type"] = "Fuse" },
            };
            if (prefix) decoders.Add(new JsonObject { ["type"] = "Strip", ["content"] = " ", ["start"] = 1, ["stop"] = 0 });
            decoder = new JsonObject { ["type"] = "Sequence", ["decoders"] = decoders };
        }
        else
        {
            string pre = m.GetString("tokenizer.ggml.pre") ?? "default";
            string regex = SplitPattern.ForLlamaCppName(pre) ?? throw FileFormatException.AtKey(path, "tokenizer.ggml.pre", $"pre-tokenizer '{pre}' has no split regex we know");
            var merges = (string[])m["tokenizer.ggml.merges"].Value;
            model = Bpe(vocab, new JsonArray(merges.Select(x => (JsonNode)x).ToArray()), byteFallback: false, unk: null, ignoreMerges: pre is "llama-bpe" or "llama3" or "llama-v3");
            preTokenizer = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray
                {
                    new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = regex }, ["behavior"] = "Isolated", ["invert"] = false },
                    new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = false },
                },
            };
            decoder = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = true, ["use_regex"] = true };
        }
        if (addBos && bos is not null)
            postProcessor = new JsonObject
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new JsonArray(new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = bos, ["type_id"] = 0 } },
                                           new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } }),
                ["pair"] = new JsonArray(new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = bos, ["type_id"] = 0 } },
                                         new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } },
                                         new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = bos, ["type_id"] = 1 } },
                                         new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "B", ["type_id"] = 1 } }),
                ["special_tokens"] = new JsonObject { [bos] = new JsonObject { ["id"] = bos, ["ids"] = new JsonArray(t.BosId!.Value), ["tokens"] = new JsonArray(bos) } },
            };

        var tokenizer = new JsonObject
        {
            ["version"] = "1.0", ["truncation"] = null, ["padding"] = null, ["added_tokens"] = added,
            ["normalizer"] = normalizer, ["pre_tokenizer"] = preTokenizer, ["post_processor"] = postProcessor, ["decoder"] = decoder, ["model"] = model,
        };
        var tokenizerConfig = new JsonObject
        {
            ["add_bos_token"] = addBos,
            ["add_eos_token"] = false,
            ["bos_token"] = bos,
            ["eos_token"] = eos,
            ["clean_up_tokenization_spaces"] = false,
            ["model_max_length"] = config.ContextLength,
            ["tokenizer_class"] = spm ? "LlamaTokenizer" : m.GetString("tokenizer.ggml.pre") == "qwen2" ? "Qwen2Tokenizer" : "PreTrainedTokenizerFast",
        };
        if (spm) { tokenizerConfig["legacy"] = false; tokenizerConfig["unk_token"] = model["unk_token"]?.DeepClone(); }
        if (m.GetString("tokenizer.chat_template") is { } template) tokenizerConfig["chat_template"] = template;
        return (tokenizer, tokenizerConfig);
    }

    private static JsonObject Bpe(JsonObject vocab, JsonArray merges, bool byteFallback, string? unk, bool ignoreMerges) => new()
    {
        ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = unk, ["continuing_subword_prefix"] = null, ["end_of_word_suffix"] = null,
        ["fuse_unk"] = byteFallback, ["byte_fallback"] = byteFallback, ["ignore_merges"] = ignoreMerges, ["vocab"] = vocab, ["merges"] = merges,
    };

    /// <summary>
    /// SentencePiece BPE merges as transformers' SentencePieceExtractor derives them: every split of a normal
    /// piece into two pieces that are both in the vocabulary, ranked by the merged piece's score (highest
    /// first), so merging by rank picks the pair whose joined piece scores highest, as SentencePiece does.
    /// </summary>
    private static JsonArray SentencePieceMerges(string[] tokens, float[] scores, GgufTokenizer t)
    {
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < tokens.Length; i++)
            if (t.TokenType(i) is GgufTokenType.Normal or GgufTokenType.Undefined) ids.TryAdd(tokens[i], i);
        var merges = new List<(float Score, int Merged, int Left, int Right, string Text)>();
        foreach (var (piece, id) in ids)
            for (int split = 1; split < piece.Length; split++)
            {
                if (char.IsLowSurrogate(piece[split])) continue;
                if (ids.TryGetValue(piece[..split], out int left) && ids.TryGetValue(piece[split..], out int right))
                    merges.Add((scores[id], id, left, right, $"{piece[..split]} {piece[split..]}"));
            }
        return new JsonArray(merges.OrderByDescending(x => x.Score).ThenBy(x => x.Merged).ThenBy(x => x.Left).ThenBy(x => x.Right)
            .Select(x => (JsonNode)x.Text).ToArray());
    }
}
