namespace EdgeTune.Formats.Synthetic;

/// <summary>
/// Pieces for a small SentencePiece-style ("llama") vocabulary fitted to a corpus. llama.cpp's SPM tokenizer
/// starts from characters and merges adjacent symbols only into strings the vocabulary holds, so a word becomes one
/// token only when every prefix on the way is a piece too: for each frequent word this adds the prefix chain of
/// "▁word" (after a space) and of "word" (after punctuation, as in JSON), plus frequent punctuation pairs.
/// </summary>
public static class WordPieces
{
    public static List<string> FromCorpus(IEnumerable<string> texts, int maxPieces, IEnumerable<string>? existing = null)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        var pairs = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var text in texts)
        {
            int start = -1;
            for (int i = 0; i <= text.Length; i++)
            {
                bool letter = i < text.Length && (char.IsLetterOrDigit(text[i]) || text[i] == '\'');
                if (letter && start < 0) start = i;
                if (!letter && start >= 0)
                {
                    string word = text[start..i];
                    bool afterSpace = start == 0 || text[start - 1] == ' ';
                    string key = afterSpace ? "▁" + word : word;
                    counts[key] = counts.GetValueOrDefault(key) + 1;
                    start = -1;
                }
                if (i + 1 < text.Length && !char.IsLetterOrDigit(text[i]) && !char.IsLetterOrDigit(text[i + 1]) && text[i] != ' ')
                {
                    string pair = text.Substring(i, 2).Replace(' ', '▁');
                    pairs[pair] = pairs.GetValueOrDefault(pair) + 1;
                }
            }
        }
        var pieces = new List<string>();
        var seen = new HashSet<string>(existing ?? [], StringComparer.Ordinal);
        void Add(string piece)
        {
            if (pieces.Count < maxPieces && seen.Add(piece)) pieces.Add(piece);
        }
        // Every character of a piece is a piece too, as in SentencePiece's own vocabularies (its alphabet is always
        // in the model): converters to Hugging Face BPE (tokenizer.json, ONNX Runtime GenAI) merge only pairs of
        // pieces, so a piece reachable only through a byte-fallback character would tokenize differently there.
        foreach (var ch in counts.Keys.Concat(pairs.Keys).SelectMany(k => k.EnumerateRunes()).Select(r => r.ToString()).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal))
            Add(ch);
        foreach (var (pair, _) in pairs.Where(p => p.Value >= 3).OrderByDescending(p => p.Value).ThenBy(p => p.Key, StringComparer.Ordinal).Take(maxPieces / 20))
            Add(pair);
        foreach (var (word, _) in counts.Where(c => c.Value >= 2).OrderByDescending(c => c.Value).ThenBy(c => c.Key, StringComparer.Ordinal))
        {
            if (pieces.Count >= maxPieces) break;
            int first = word.StartsWith('▁') ? 2 : 1;
            if (word.Length - first + 1 + pieces.Count > maxPieces) continue;
            for (int len = first; len <= word.Length; len++) Add(word[..len]);
        }
        return pieces;
    }
}
