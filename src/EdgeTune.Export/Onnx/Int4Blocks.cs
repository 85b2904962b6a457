namespace EdgeTune.Export.Onnx;

/// <summary>
/// Symmetric 4-bit block quantisation in com.microsoft.MatMulNBits' layout (ContribOperators.md): a weight
/// W [N, K] (PyTorch's [out, in]) becomes B uint8 [N, ⌈K/bs⌉, bs/2], two values a byte, the first in the low
/// nibble, and scales [N, ⌈K/bs⌉]; a value dequantises as (q − 8)·scale (8 is the default zero point, so none
/// is stored). The scale maps the block's largest-magnitude value to −8, as onnxruntime's own quantiser and
/// ggml's Q4_0 do, so the full 16 levels are used. K is padded with zeros to whole blocks.
/// </summary>
public static class Int4Blocks
{
    public static int BlockCount(int k, int blockSize) => (k + blockSize - 1) / blockSize;

    /// <summary>
    /// The reference forward an int4 export must equal: <paramref name="weights"/> with every matrix the export
    /// quantises passed through the int4 round trip (a tied output head as its own copy of the embedding).
    /// </summary>
    public static EdgeTune.Models.Reference.ReferenceModel DequantisedReference(EdgeTune.Models.Reference.ModelWeights weights, int blockSize)
    {
        var c = weights.Config;
        return EdgeTune.Models.Reference.ReferenceModel.FromWeights(weights, transform: (tensor, w) =>
        {
            if (!DecoderGraph.IsQuantized(tensor)) return w;
            var spec = weights.Tensors.Single(t => t.GgufName == (tensor == "output.weight" && c.TiedEmbeddings ? "token_embd.weight" : tensor));
            return RoundTrip(w, (int)spec.Shape[0], (int)spec.Shape[1], blockSize);
        });
    }

    /// <summary>Quantise W [n, k]; returns (B, scales) in MatMulNBits' layout.</summary>
    public static (byte[] Packed, float[] Scales) Quantize(ReadOnlySpan<float> w, int n, int k, int blockSize)
    {
        int blocks = BlockCount(k, blockSize), blob = blockSize / 2;
        var packed = new byte[(long)n * blocks * blob];
        var scales = new float[(long)n * blocks];
        Span<byte> q = stackalloc byte[blockSize];
        for (int row = 0; row < n; row++)
        {
            var values = w.Slice(row * k, k);
            for (int b = 0; b < blocks; b++)
            {
                int start = b * blockSize, count = Math.Min(blockSize, k - start);
                var block = values.Slice(start, count);
                float extreme = 0;
                foreach (float v in block) if (Math.Abs(v) > Math.Abs(extreme)) extreme = v;
                float scale = extreme / -8f;
                float inverse = scale == 0 ? 0 : 1f / scale;
                q.Fill(8); // padding dequantises to 0
                for (int i = 0; i < count; i++) q[i] = (byte)Math.Clamp((int)MathF.Round(block[i] * inverse) + 8, 0, 15);
                scales[(long)row * blocks + b] = scale;
                long at = ((long)row * blocks + b) * blob;
                for (int i = 0; i < blob; i++) packed[at + i] = (byte)(q[2 * i] | (q[2 * i + 1] << 4));
            }
        }
        return (packed, scales);
    }

    /// <summary>W [n, k] as MatMulNBits computes with it: (q − 8)·scale.</summary>
    public static float[] Dequantize(ReadOnlySpan<byte> packed, ReadOnlySpan<float> scales, int n, int k, int blockSize)
    {
        int blocks = BlockCount(k, blockSize), blob = blockSize / 2;
        var w = new float[(long)n * k];
        for (int row = 0; row < n; row++)
            for (int i = 0; i < k; i++)
            {
                int b = i / blockSize, j = i % blockSize;
                byte pair = packed[(int)(((long)row * blocks + b) * blob + j / 2)];
                int q = (j & 1) == 0 ? pair & 0xF : pair >> 4;
                w[(long)row * k + i] = (q - 8) * scales[row * blocks + b];
            }
        return w;
    }

    /// <summary>The weights an int4 export computes with: quantised, then dequantised.</summary>
    public static float[] RoundTrip(ReadOnlySpan<float> w, int n, int k, int blockSize)
    {
        var (packed, scales) = Quantize(w, n, k, blockSize);
        return Dequantize(packed, scales, n, k, blockSize);
    }
}
