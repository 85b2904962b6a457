namespace EdgeTune.Core.Quantization;

// PLACEHOLDER: being written (see ggml-quants.c quantize_row_q2_k_ref / dequantize_row_q2_k).
internal static class Q2_K
{
    public static void Quantize(ReadOnlySpan<float> x, Span<byte> y) => throw new NotImplementedException();
    public static void Dequantize(ReadOnlySpan<byte> x, Span<float> y) => throw new NotImplementedException();
}
