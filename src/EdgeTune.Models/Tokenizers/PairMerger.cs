namespace EdgeTune.Models.Tokenizers;

/// <summary>
/// The merge loop shared by BPE (Hugging Face; llama.cpp's gpt2 vocabularies) and SentencePiece BPE (llama.cpp's
/// llama vocabularies): start from one symbol per code point, repeatedly merge the adjacent pair of best
/// priority (lowest value; leftmost on ties) until no pair may merge. Symbols form a linked list and candidate
/// pairs sit in a priority queue, so a long word costs O(n log n), as in both upstream implementations.
/// </summary>
internal static class PairMerger
{
    /// <summary>
    /// <paramref name="priority"/> returns the priority of merging two adjacent symbols, or null when they may
    /// not merge. Returns the final symbols in order.
    /// </summary>
    public static List<string> Merge(string word, Func<string, string, double?> priority)
    {
        var text = new List<string>();
        for (int i = 0; i < word.Length; i += char.IsSurrogatePair(word, i) ? 2 : 1)
            text.Add(word.Substring(i, char.IsSurrogatePair(word, i) ? 2 : 1));
        int n = text.Count;
        if (n < 2) return text;

        var next = new int[n];
        var prev = new int[n];
        for (int i = 0; i < n; i++) { next[i] = i + 1 < n ? i + 1 : -1; prev[i] = i - 1; }

        var queue = new PriorityQueue<(int Left, int Right, string A, string B), (double, int)>();
        void Push(int left, int right)
        {
            if (left < 0 || right < 0) return;
            if (priority(text[left], text[right]) is double p) queue.Enqueue((left, right, text[left], text[right]), (p, left));
        }
        for (int i = 0; i + 1 < n; i++) Push(i, i + 1);

        while (queue.TryDequeue(out var pair, out _))
        {
            // Stale when either side has merged since the pair was queued.
            if (next[pair.Left] != pair.Right || !ReferenceEquals(text[pair.Left], pair.A) || !ReferenceEquals(text[pair.Right], pair.B)) continue;
            text[pair.Left] = pair.A + pair.B;
            text[pair.Right] = null!;
            next[pair.Left] = next[pair.Right];
            if (next[pair.Left] >= 0) prev[next[pair.Left]] = pair.Left;
            next[pair.Right] = -1;
            Push(prev[pair.Left], pair.Left);
            Push(pair.Left, next[pair.Left]);
        }

        var result = new List<string>();
        for (int i = 0; i >= 0; i = next[i]) result.Add(text[i]);
        return result;
    }
}
