using System.Numerics.Tensors;

namespace EdgeTune.Kernels.Cpu;

// tokens: (N)  table: (V,C)  output: (N,C)   forward: rows copied, parallel over token chunks
// dOutput: (N,C)  dTable: (V,C)              backward: dTable[tokens[i]] += dOutput[i]; threads own column
//                                            slices of dTable, so repeated tokens add up in token order, race-free
public sealed unsafe partial class CpuBackend
{
    private const int EmbeddingTokens = 64, EmbeddingColumns = 256;

    public void EmbeddingForward(ReadOnlySpan<int> tokens, DeviceBuffer table, DeviceBuffer output, int c)
    {
        Reference.CheckEmbedding(tokens, table.Length, output.Length, c, nameof(table), nameof(output));
        float* pt = Of(table, nameof(table)).Pointer, po = Of(output, nameof(output)).Pointer;
        int[] ids = tokens.ToArray();
        ForChunks(ids.Length, EmbeddingTokens, (start, count) =>
        {
            for (long i = start; i < start + count; i++)
                new ReadOnlySpan<float>(pt + (long)ids[i] * c, c).CopyTo(new Span<float>(po + i * c, c));
        });
    }

    public void EmbeddingBackward(ReadOnlySpan<int> tokens, DeviceBuffer dOutput, DeviceBuffer dTable, int c)
    {
        Reference.CheckEmbedding(tokens, dTable.Length, dOutput.Length, c, nameof(dTable), nameof(dOutput));
        float* pd = Of(dOutput, nameof(dOutput)).Pointer, pt = Of(dTable, nameof(dTable)).Pointer;
        int[] ids = tokens.ToArray();
        ForChunks(c, EmbeddingColumns, (c0, width) =>
        {
            for (int i = 0; i < ids.Length; i++)
            {
                var row = new Span<float>(pt + (long)ids[i] * c + c0, width);
                TensorPrimitives.Add(row, new ReadOnlySpan<float>(pd + (long)i * c + c0, width), row);
            }
        });
    }
}
