using System.Numerics;

namespace EdgeTune.Kernels;

// Token embedding lookup.
//   forward   tokens: (N)  table: (V,C)  output: (N,C)     output[i] = table[tokens[i]]
//   backward  dOutput: (N,C)  dTable: (V,C)                dTable[tokens[i]] += dOutput[i]  (repeated tokens add up)
public static partial class Reference
{
    public static void EmbeddingForward<T>(ReadOnlySpan<int> tokens, ReadOnlySpan<T> table, Span<T> output, int c)
        where T : IFloatingPointIeee754<T>
    {
        CheckEmbedding(tokens, table.Length, output.Length, c, nameof(table), nameof(output));
        for (int i = 0; i < tokens.Length; i++)
            table.Slice(tokens[i] * c, c).CopyTo(output.Slice(i * c, c));
    }

    public static void EmbeddingBackward<T>(ReadOnlySpan<int> tokens, ReadOnlySpan<T> dOutput, Span<T> dTable, int c)
        where T : IFloatingPointIeee754<T>
    {
        CheckEmbedding(tokens, dTable.Length, dOutput.Length, c, nameof(dTable), nameof(dOutput));
        for (int i = 0; i < tokens.Length; i++)
            for (int j = 0; j < c; j++)
                dTable[tokens[i] * c + j] += dOutput[i * c + j];
    }

    /// <summary>Checks the shapes and every token id; returns the vocabulary size V = table length / C.</summary>
    internal static int CheckEmbedding(ReadOnlySpan<int> tokens, long table, long rows, int c, string tableName, string rowsName)
    {
        Shapes.Positive(c, nameof(c));
        Shapes.Require(rows, (long)tokens.Length * c, rowsName, $"(N={tokens.Length},C={c})");
        long vocab = table / c;
        for (int i = 0; i < tokens.Length; i++)
            if ((uint)tokens[i] >= (ulong)vocab)
                throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {tokens[i]} at position {i} is outside the vocabulary of {vocab} ({tableName}: (V={vocab},C={c}))");
        return (int)Math.Min(vocab, int.MaxValue);
    }
}
