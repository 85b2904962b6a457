namespace EdgeTune.Export.Onnx;

public enum OnnxPrecision
{
    /// <summary>float32 weights, inputs, outputs and KV cache.</summary>
    Fp32,
    /// <summary>float16 weights, inputs, outputs and KV cache (the GenAI model builder's GPU form).</summary>
    Fp16,
    /// <summary>4-bit MatMulNBits weights, float32 everything else (the builder's int4 CPU form).</summary>
    Int4,
}

public sealed record OnnxExportOptions
{
    public OnnxPrecision Precision { get; init; } = OnnxPrecision.Fp32;
    /// <summary>MatMulNBits block size along K: a power of two, 16 to 256 (the builder's default is 32).</summary>
    public int BlockSize { get; init; } = 32;
    /// <summary>
    /// MatMulNBits accuracy_level: 0 computes in the input type (float32 here, and what the parity checks
    /// use), 4 lets onnxruntime quantise activations to int8 per block (faster on CPU, less exact).
    /// </summary>
    public int AccuracyLevel { get; init; }
    /// <summary>A LoRA adapter (PEFT folder or GGUF adapter) merged into the weights before quantisation.</summary>
    public string? Adapter { get; init; }
}
