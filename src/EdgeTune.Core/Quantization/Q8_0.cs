namespace EdgeTune.Core.Quantization;

// PLACEHOLDER: being written (see ggml-quants.c quantize_row_q8_0_ref / dequantize_row_q8_0).
internal static class Q8_0
{
    public static void Quantize(ReadOnlySpan<float> x, Span<byte> y) => throw new NotImplementedException();
    public static void Dequantize(ReadOnlySpan<byte> x, Span<float> y) => throw new NotImplementedException();
}
