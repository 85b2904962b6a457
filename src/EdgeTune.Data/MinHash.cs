using System.Runtime.InteropServices;

namespace EdgeTune.Data;

/// <summary>
/// MinHash signatures over word 3-shingles and an LSH index (32 bands of 4 rows) that finds pairs whose
/// estimated Jaccard similarity is at least <see cref="Threshold"/>. At J = 0.7 a pair shares a band with
/// probability 1-(1-0.7⁴)³² ≈ 0.9998; at J = 0.3, ≈ 0.23, and those candidates are then rejected by the
/// estimate (128 hashes: standard error ≤ 0.045).
/// Memory per example, never its text: its signature (256 bytes, in pooled chunks, no object per example) and
/// one 4-byte id in each band's table (open addressing, at most half full: 8 to 16 bytes per band). A band's
/// key is its four 16-bit signature entries, exactly 64 bits, so tables store ids only and compare keys by
/// reading the stored signature: no key is stored twice.
/// </summary>
public sealed class NearDuplicateIndex
{
    public const int Hashes = 128, Bands = 32, Rows = Hashes / Bands, ShingleWords = 3;
    public const double Threshold = 0.7;

    private const int ChunkShift = 12, ChunkSize = 1 << ChunkShift; // 4,096 signatures (1 MiB) per chunk
    private readonly List<ushort[]> _chunks = [];
    private readonly int[][] _tables = new int[Bands][];
    private int _count;

    public NearDuplicateIndex()
    {
        for (int b = 0; b < Bands; b++) _tables[b] = NewTable(64);
    }

    public int Count => _count;

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

    public static double Similarity(ReadOnlySpan<ushort> a, ReadOnlySpan<ushort> b)
    {
        int same = 0;
        for (int i = 0; i < Hashes; i++) if (a[i] == b[i]) same++;
        return same / (double)Hashes;
    }

    /// <summary>The stored signature of an example.</summary>
    public ReadOnlySpan<ushort> SignatureOf(int id) => _chunks[id >> ChunkShift].AsSpan((id & (ChunkSize - 1)) * Hashes, Hashes);

    /// <summary>Adds a signature; returns its id and the ids of earlier near-duplicates, most similar first.</summary>
    public (int Id, List<int> Matches) Add(ushort[] signature)
    {
        if (signature.Length != Hashes) throw new ArgumentException($"a signature has {Hashes} entries", nameof(signature));
        int id = _count;
        if ((id & (ChunkSize - 1)) == 0) _chunks.Add(new ushort[ChunkSize * Hashes]);
        signature.CopyTo(_chunks[id >> ChunkShift].AsSpan((id & (ChunkSize - 1)) * Hashes, Hashes));
        _count++;

        HashSet<int>? candidates = null;
        for (int band = 0; band < Bands; band++)
        {
            if (2 * _count > _tables[band].Length) Grow(band);
            var table = _tables[band];
            ulong key = BandKey(signature, band);
            int mask = table.Length - 1;
            int slot = (int)(Spread(key, band) & (ulong)mask);
            // Linear probing without deletions: every id with this key lies between the home slot and the first empty one.
            while (table[slot] >= 0)
            {
                int other = table[slot];
                if (BandKey(SignatureOf(other), band) == key) (candidates ??= []).Add(other);
                slot = (slot + 1) & mask;
            }
            table[slot] = id;
        }
        if (candidates is null) return (id, []);
        var matches = candidates
            .Select(c => (c, s: Similarity(signature, SignatureOf(c))))
            .Where(x => x.s >= Threshold)
            .OrderByDescending(x => x.s).ThenBy(x => x.c)
            .Select(x => x.c).ToList();
        return (id, matches);
    }

    private static ulong BandKey(ReadOnlySpan<ushort> signature, int band) =>
        MemoryMarshal.Read<ulong>(MemoryMarshal.AsBytes(signature.Slice(band * Rows, Rows)));

    private static ulong Spread(ulong key, int band) => TextHash.Mix(key ^ ((ulong)band << 58));

    private static int[] NewTable(int capacity)
    {
        var t = new int[capacity];
        Array.Fill(t, -1);
        return t;
    }

    /// <summary>Doubles one band's table (one band at a time, so the transient copy is a thirty-second of the index).</summary>
    private void Grow(int band)
    {
        var old = _tables[band];
        var table = NewTable(old.Length * 2);
        int mask = table.Length - 1;
        foreach (int id in old)
        {
            if (id < 0) continue;
            int slot = (int)(Spread(BandKey(SignatureOf(id), band), band) & (ulong)mask);
            while (table[slot] >= 0) slot = (slot + 1) & mask;
            table[slot] = id;
        }
        _tables[band] = table;
    }
}
