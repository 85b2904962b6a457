using EdgeTune.Core;
using EdgeTune.Formats.Gguf;

namespace EdgeTune.Profiles.Fit;

/// <summary>
/// The arithmetic of fitting a model on a board, written out so a test can check it against hand-worked
/// numbers. Decode is memory-bound: every generated token reads every weight once (except the token
/// embedding, of which one row is looked up) plus the KV cache written so far, so the bandwidth divided
/// by the bytes read per token is an upper bound on tokens per second.
/// </summary>
public static class MemoryMath
{
    /// <summary>
    /// KV cache bytes at <paramref name="context"/> positions: for every layer, K and V rows of
    /// kvHeads × head dim elements per position (layers × 2 × kv heads × head dim × N × bytes when K and V
    /// have the same head dim).
    /// </summary>
    public static long KvCacheBytes(int layers, int kvHeads, int keyLength, int valueLength, long context, GgmlType kvType) =>
        checked(layers * context * (GgmlTypes.RowBytes(kvType, (long)kvHeads * keyLength) + GgmlTypes.RowBytes(kvType, (long)kvHeads * valueLength)));

    public static long KvCacheBytes(ModelShape m, long context, GgmlType kvType) =>
        KvCacheBytes(m.Layers, m.KvHeads, m.KeyLength, m.ValueLength, context, kvType);

    /// <summary>
    /// Weight bytes one decode step reads: all tensors, but only one row of the token embedding unless it is
    /// tied to the output (then the whole matrix is read as the output projection).
    /// </summary>
    public static long WeightBytesReadPerToken(IEnumerable<(string Name, long Bytes, long Rows)> tensors)
    {
        var list = tensors.ToList();
        bool tied = list.All(t => t.Name != "output.weight");
        long total = 0;
        foreach (var (name, bytes, rows) in list)
            total += name == "token_embd.weight" && !tied ? bytes / Math.Max(1, rows) : bytes;
        return total;
    }

    public static long WeightBytesReadPerToken(IEnumerable<GgufTensorInfo> tensors) =>
        WeightBytesReadPerToken(tensors.Select(t => (t.Name, t.ByteLength, t.RowCount)));

    /// <summary>Upper bound on decode tokens per second: bandwidth ÷ bytes read per token.</summary>
    public static double DecodeBound(double bandwidthBytesPerSecond, long bytesPerToken) =>
        bytesPerToken <= 0 ? double.PositiveInfinity : bandwidthBytesPerSecond / bytesPerToken;

    /// <summary>
    /// Estimate of llama.cpp's compute and output buffers for one micro-batch of <paramref name="ubatch"/>
    /// tokens (F32 activations per token): the attention mask over the whole context (F16 with flash
    /// attention), plus the widest stage of the graph: attention (the scores over the context, which flash
    /// attention does not materialise, and the q/k/v and residual rows), the feed-forward block (gate, up
    /// and their product) or the logits; plus small inputs and the output row of logits. Checked against
    /// the buffer sizes llama.cpp logs ("compute buffer size", "output buffer size") in
    /// EdgeTune.Profiles.Tests: an upper bound within 30% on llama-shaped models.
    /// </summary>
    public static long ComputeBufferBytes(ModelShape m, long context, int ubatch, bool flashAttention = true)
    {
        long tokens = Math.Min(context, ubatch);
        long mask = flashAttention ? context / 2 : context;
        long attention = (flashAttention ? 0 : (long)m.Heads * context) + 8L * m.Embedding;
        long feedForward = 3L * m.FeedForward + 5L * m.Embedding;
        long logits = (long)m.Vocabulary + 2L * m.Embedding;
        long widest = Math.Max(attention, Math.Max(feedForward, logits));
        return checked(4 * tokens * (mask + widest + 16) + 4L * m.Vocabulary);
    }
}
