namespace EdgeTune.Data;

/// <summary>
/// MinHash signatures over word 3-shingles and an LSH index (32 bands of 4 rows) that finds pairs whose
/// estimated Jaccard similarity is at least <see cref="Threshold"/>. At J = 0.7 a pair shares a band with
/// probability 1-(1-0.7⁴)³² ≈ 0.9998; at J = 0.3, ≈ 0.23, and those candidates are then rejected by the
/// estimate (128 hashes: standard error ≤ 0.045). Memory per example: its signature (256 bytes) and 32
/// bucket entries, never its text.
/// </summary>
public sealed class NearDuplicateIndex
{
    public const int Hashes = 128, Bands = 32, Rows = Hashes / Bands, ShingleWords = 3;
    public const double Threshold = 0.7;

    private readonly List<ushort[]> _signatures = [];
    // Buckets as linked lists through one array (head per band key, next per (id, band)): a List per bucket
    // would cost an object per entry, which on millions of rows is gigabytes.
    private readonly Dictionary<ulong, int> _heads = [];
    private readonly List<int> _next = [];

    public int Count => _signatures.Count;

    public static ushort[] Signature(string text)
    {
        // Each word is hashed once; a shingle's hash combines its words' hashes (no shingle strings).
        var words = Normaliser.Words(text);
        var wordHashes = new ulong[Math.Max(words.Count, 1)];
        for (int i = 0; i < words.Count; i++) wordHashes[i] = TextHash.Fnv(words[i]);
        var min = new uint[Hashes];
        Array.Fill(min, uint.MaxValue);
        int shingles = Math.Max(1, words.Count - ShingleWords + 1);
        for (int s = 0; s < shingles; s++)
        {
            ulong h = 0;
            for (int w = s; w < Math.Min(s + ShingleWords, words.Count); w++) h = TextHash.Mix(h ^ wordHashes[w]);
            // The i-th hash function is multiply-shift with its own odd multiplier and offset: a multiply and an
            // add per function (h is already well mixed), several times faster than mixing each from scratch.
            for (int i = 0; i < Hashes; i++)
            {
                uint v = (uint)((h * Multipliers[i] + Salts[i]) >> 32);
                if (v < min[i]) min[i] = v;
            }
        }
        // The minimum is taken over 32 bits; 16 of them are kept, enough to tell equal minima from unequal ones
        // (a false match per hash has probability 2⁻¹⁶) at half the memory per example.
        var sig = new ushort[Hashes];
        for (int i = 0; i < Hashes; i++) sig[i] = (ushort)(min[i] >> 16);
        return sig;
    }

    private static readonly ulong[] Salts = Enumerable.Range(0, Hashes).Select(i => TextHash.Mix((ulong)i * 0x9E3779B97F4A7C15UL)).ToArray();
    private static readonly ulong[] Multipliers = Enumerable.Range(0, Hashes).Select(i => TextHash.Mix(~(ulong)i) | 1).ToArray();

    public static double Similarity(ushort[] a, ushort[] b)
    {
        int same = 0;
        for (int i = 0; i < Hashes; i++) if (a[i] == b[i]) same++;
        return same / (double)Hashes;
    }

    /// <summary>Adds a signature; returns its id and the ids of earlier near-duplicates, most similar first.</summary>
    public (int Id, List<int> Matches) Add(ushort[] signature)
    {
        int id = _signatures.Count;
        var candidates = new HashSet<int>();
        for (int band = 0; band < Bands; band++)
        {
            ulong key = (ulong)band;
            for (int r = 0; r < Rows; r++) key = TextHash.Mix(key ^ signature[band * Rows + r]);
            int slot = id * Bands + band;
            if (_heads.TryGetValue(key, out int head))
                for (int s = head; s >= 0; s = _next[s]) candidates.Add(s / Bands);
            _next.Add(_heads.TryGetValue(key, out int h) ? h : -1);
            _heads[key] = slot;
        }
        _signatures.Add(signature);
        var matches = candidates
            .Select(c => (c, s: Similarity(signature, _signatures[c])))
            .Where(x => x.s >= Threshold)
            .OrderByDescending(x => x.s).ThenBy(x => x.c)
            .Select(x => x.c).ToList();
        return (id, matches);
    }
}
