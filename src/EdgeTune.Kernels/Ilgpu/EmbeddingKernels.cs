using ILGPU;
using ILGPU.Runtime;

namespace EdgeTune.Kernels.Ilgpu;

// Embedding.  forward   tokens: (N)  table: (V,C)  output: (N,C)     output[i] = table[tokens[i]]
//             backward  dOutput: (N,C)  dTable: (V,C)                dTable[tokens[i]] += dOutput[i]
// The backward is deterministic without float atomics: the host groups positions by token (stable, so in
// position order), and one thread per (distinct token, channel) adds that token's rows in order, which gives
// the reference's sequential sums bit for bit.
public sealed partial class IlgpuBackend
{
    private Action<Index2D, ArrayView<int>, ArrayView<float>, ArrayView<float>, int>? _embeddingForward;
    private Action<Index2D, ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int>? _embeddingBackward;

    public void EmbeddingForward(ReadOnlySpan<int> tokens, DeviceBuffer table, DeviceBuffer output, int c)
    {
        var tv = View(table, nameof(table));
        var ov = View(output, nameof(output));
        Reference.CheckEmbedding(tokens, tv.Length, ov.Length, c, nameof(table), nameof(output));
        if (tokens.IsEmpty) return;
        var ids = UploadInts(tokens);
        _embeddingForward ??= _accelerator.LoadAutoGroupedStreamKernel<Index2D, ArrayView<int>, ArrayView<float>, ArrayView<float>, int>(EmbeddingForwardKernel);
        _embeddingForward(new Index2D(c, tokens.Length), ids, tv, ov, c);
    }

    public void EmbeddingBackward(ReadOnlySpan<int> tokens, DeviceBuffer dOutput, DeviceBuffer dTable, int c)
    {
        var dov = View(dOutput, nameof(dOutput));
        var dtv = View(dTable, nameof(dTable));
        Reference.CheckEmbedding(tokens, dtv.Length, dov.Length, c, nameof(dTable), nameof(dOutput));
        if (tokens.IsEmpty) return;

        // [distinct tokens (U)] [starts (U + 1)] [positions (N), grouped by token, ascending within a token]
        int n = tokens.Length;
        var order = new int[n];
        for (int i = 0; i < n; i++) order[i] = i;
        var keys = tokens.ToArray();
        Array.Sort(keys, order); // introsort is unstable: restore position order within each token below
        var distinct = new List<int>();
        var starts = new List<int>();
        for (int i = 0; i < n; i++)
            if (i == 0 || keys[i] != keys[i - 1])
            {
                distinct.Add(keys[i]);
                starts.Add(i);
            }
        starts.Add(n);
        for (int u = 0; u < distinct.Count; u++) Array.Sort(order, starts[u], starts[u + 1] - starts[u]);
        int unique = distinct.Count;
        var packed = new int[unique + unique + 1 + n];
        distinct.CopyTo(packed, 0);
        starts.CopyTo(packed, unique);
        order.CopyTo(packed, 2 * unique + 1);

        var ints = UploadInts(packed);
        _embeddingBackward ??= _accelerator.LoadAutoGroupedStreamKernel<Index2D, ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int>(EmbeddingBackwardKernel);
        _embeddingBackward(new Index2D(c, unique), ints, dov, dtv, c, unique);
    }

    // index = (channel, position)
    private static void EmbeddingForwardKernel(Index2D index, ArrayView<int> tokens, ArrayView<float> table, ArrayView<float> output, int c)
    {
        int channel = index.X, position = index.Y;
        output[(long)position * c + channel] = table[(long)tokens[position] * c + channel];
    }

    // index = (channel, distinct token u);  packed = [tokens (U)] [starts (U+1)] [positions (N)]
    private static void EmbeddingBackwardKernel(Index2D index, ArrayView<int> packed, ArrayView<float> dOutput, ArrayView<float> dTable, int c, int unique)
    {
        int channel = index.X, u = index.Y;
        long at = (long)packed[u] * c + channel;
        int start = packed[unique + u], end = packed[unique + u + 1];
        int positions = 2 * unique + 1;
        float sum = dTable[at];
        for (int p = start; p < end; p++) sum += dOutput[(long)packed[positions + p] * c + channel];
        dTable[at] = sum;
    }
}
