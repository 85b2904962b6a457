namespace EdgeTune.Core.Quantization;

// PLACEHOLDER: being written (see ggml-quants.c quantize_row_q5_0_ref / dequantize_row_q5_0).
internal static class Q5_0
{
    public static void Quantize(ReadOnlySpan<float> x, Span<byte> y) => throw new NotImplementedException();
    public static void Dequantize(ReadOnlySpan<byte> x, Span<float> y) => throw new NotImplementedException();
}
