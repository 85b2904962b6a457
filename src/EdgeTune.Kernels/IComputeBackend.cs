namespace EdgeTune.Kernels;

/// <summary>
/// Float32 storage on a backend's device. A slice is a view that shares the parent's memory and owns nothing,
/// so parameters, gradients and optimizer state can each be one allocation with named views (llm.c's layout).
/// </summary>
public abstract class DeviceBuffer : IDisposable
{
    protected DeviceBuffer(long length) => Length = length;

    public long Length { get; }

    /// <summary>A view of [offset, offset + length) of this buffer.</summary>
    public abstract DeviceBuffer Slice(long offset, long length);

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    protected virtual void Dispose(bool disposing) { }
}

/// <summary>Formats a frozen base weight can be stored in while LoRA trains over it.</summary>
public enum FrozenFormat
{
    F32,
    /// <summary>QLoRA's 4-bit NormalFloat, blocks of 64, absmax double-quantised to 8 bits in blocks of 256.</summary>
    Nf4,
    /// <summary>GGUF block types, as the model will ship.</summary>
    Q8_0,
    Q4_0,
    Q4_K,
}

/// <summary>
/// A frozen weight W (rows = out features, cols = in features, PyTorch's Linear layout) held by a backend in
/// its storage format; y = x·Wᵀ dequantises on the fly. <see cref="Bytes"/> counts its device memory.
/// </summary>
public abstract class FrozenMatrix : IDisposable
{
    protected FrozenMatrix(FrozenFormat format, int rows, int cols, long bytes)
    {
        Format = format;
        Rows = rows;
        Cols = cols;
        Bytes = bytes;
    }

    public FrozenFormat Format { get; }
    public int Rows { get; }
    public int Cols { get; }
    public long Bytes { get; }

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    protected virtual void Dispose(bool disposing) { }
}

/// <summary>Rotary embedding pairing: Half = (i, i + D/2) as in PyTorch's rotate_half; Interleaved = (2i, 2i + 1) as llama.cpp's "llama" graph.</summary>
public enum RopeLayout { Half, Interleaved }

/// <summary>
/// The operations of a llama block's forward and backward. All matrices are row-major. Shapes are in the
/// comments: N rows (tokens = batch·seqLen), C model width, F FFN width, V vocabulary, H query heads, KV
/// key/value heads, D head size. "Accumulate" adds into the output instead of overwriting it; a backward that
/// says "overwrites" ignores the output's prior contents. Implementations: CpuBackend (managed SIMD, what CPU
/// training uses) and IlgpuBackend (CUDA, or ILGPU's CPU accelerator in tests); both are tested against
/// the scalar references in <see cref="Reference"/>.
/// </summary>
public interface IComputeBackend : IDisposable
{
    /// <summary>What runs the ops, for the run log: "cpu (managed SIMD, 16 threads)", "cuda (NVIDIA H200)".</summary>
    string Name { get; }

    /// <summary>A zero-filled buffer.</summary>
    DeviceBuffer Allocate(long length);
    void Upload(ReadOnlySpan<float> source, DeviceBuffer target);
    void Download(DeviceBuffer source, Span<float> target);
    void Zero(DeviceBuffer buffer);
    /// <summary>target ← source (same length).</summary>
    void Copy(DeviceBuffer source, DeviceBuffer target);
    /// <summary>accumulator += scale·x (same length).</summary>
    void AddScaled(DeviceBuffer accumulator, DeviceBuffer x, float scale);
    /// <summary>buffer ← scale·buffer.</summary>
    void Scale(DeviceBuffer buffer, float scale);
    /// <summary>Σ x² in float64 (gradient norms).</summary>
    double SumOfSquares(DeviceBuffer buffer);

    /// <summary>
    /// Stores a frozen weight. <paramref name="data"/> is the format's bytes, row after row: F32 values, GGUF blocks
    /// as Core.Quantization writes them, or <see cref="Nf4Codec"/>'s layout.
    /// </summary>
    FrozenMatrix UploadFrozen(FrozenFormat format, ReadOnlySpan<byte> data, int rows, int cols);

    /// <summary>
    /// <see cref="UploadFrozen(FrozenFormat, ReadOnlySpan{byte}, int, int)"/> handing over <paramref name="data"/>: a host
    /// backend may keep the array itself instead of a copy (the caller must not change it afterwards). Loading a base
    /// then leaves no copy of every quantised tensor behind for the garbage collector.
    /// </summary>
    FrozenMatrix UploadFrozenOwned(FrozenFormat format, byte[] data, int rows, int cols) => UploadFrozen(format, data, rows, cols);

    // x: (N,K)  w: (M,K)  y: (N,M)          y (+)= x·wᵀ
    void MatMul(DeviceBuffer x, DeviceBuffer w, DeviceBuffer y, int n, int k, int m, bool accumulate);
    // dy: (N,M)  w: (M,K)  dx: (N,K)        dx (+)= dy·w
    void MatMulBackwardInput(DeviceBuffer dy, DeviceBuffer w, DeviceBuffer dx, int n, int k, int m, bool accumulate);
    // dy: (N,M)  x: (N,K)  dw: (M,K)        dw (+)= dyᵀ·x
    void MatMulBackwardWeight(DeviceBuffer dy, DeviceBuffer x, DeviceBuffer dw, int n, int k, int m, bool accumulate);
    // x: (N, w.Cols)  y: (N, w.Rows)        y (+)= x·wᵀ, w dequantised on the fly
    void FrozenMatMul(DeviceBuffer x, FrozenMatrix w, DeviceBuffer y, int n, bool accumulate);
    // dy: (N, w.Rows)  dx: (N, w.Cols)      dx (+)= dy·w
    void FrozenMatMulBackwardInput(DeviceBuffer dy, FrozenMatrix w, DeviceBuffer dx, int n, bool accumulate);

    // tokens: (N)  table: (V,C)  output: (N,C)      output[i] = table[tokens[i]]
    void EmbeddingForward(ReadOnlySpan<int> tokens, DeviceBuffer table, DeviceBuffer output, int c);
    // dOutput: (N,C)  dTable: (V,C)                 dTable[tokens[i]] += dOutput[i] (repeated tokens add up)
    void EmbeddingBackward(ReadOnlySpan<int> tokens, DeviceBuffer dOutput, DeviceBuffer dTable, int c);

    // x, y: (N,C)  weight: (C)  rstd: (N)           y = x·rstd·weight, rstd = 1/√(mean(x²) + eps)
    void RmsNormForward(DeviceBuffer x, DeviceBuffer weight, DeviceBuffer y, DeviceBuffer rstd, int n, int c, float eps);
    // dy, x, dx: (N,C)  dWeight: (C) or null        dx += ∂, dWeight += ∂ (both accumulate: the residual stream adds)
    void RmsNormBackward(DeviceBuffer dy, DeviceBuffer x, DeviceBuffer weight, DeviceBuffer rstd, DeviceBuffer dx, DeviceBuffer? dWeight, int n, int c);

    // x: (B,T,heads,D) in place  invFreq: (D/2)    position of row (b,t) is t; inverse rotates back (the backward)
    // segmentStarts: (B,T) or empty; with them the position is t − segmentStarts[b,t] (packed examples restart at 0)
    void Rope(DeviceBuffer x, DeviceBuffer invFreq, int batch, int seqLen, int heads, int headDim, RopeLayout layout, bool inverse,
        ReadOnlySpan<int> segmentStarts = default);

    // q: (B,T,H,D)  k, v: (B,T,KV,D)  output: (B,T,H,D)  logSumExp: (B,H,T)
    // causal softmax(q·kᵀ/√D)·v; query head h reads key/value head h / (H/KV). No T×T matrix is kept:
    // the row log-sum-exp is what the backward needs to recompute the probabilities.
    // segmentStarts: (B,T) or empty (sequence packing): row (b,t) attends to keys [segmentStarts[b,t], t] only.
    void AttentionForward(DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, DeviceBuffer output, DeviceBuffer logSumExp,
        int batch, int seqLen, int heads, int kvHeads, int headDim, ReadOnlySpan<int> segmentStarts = default);
    // dq: (B,T,H,D)  dk, dv: (B,T,KV,D), all overwritten
    void AttentionBackward(DeviceBuffer dOutput, DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, DeviceBuffer output, DeviceBuffer logSumExp,
        DeviceBuffer dq, DeviceBuffer dk, DeviceBuffer dv, int batch, int seqLen, int heads, int kvHeads, int headDim, ReadOnlySpan<int> segmentStarts = default);

    // gate, up, output: (count)                      output = silu(gate)·up (output may alias gate)
    void SwiGluForward(DeviceBuffer gate, DeviceBuffer up, DeviceBuffer output, long count);
    // dGate, dUp overwritten (they may alias gate and up)
    void SwiGluBackward(DeviceBuffer dOutput, DeviceBuffer gate, DeviceBuffer up, DeviceBuffer dGate, DeviceBuffer dUp, long count);

    /// <summary>
    /// The output head fused with cross-entropy, in chunks of rows so that no (N,V) logits exist at once:
    /// hidden: (N,C)  head: (V,C)  targets: (N), -1 = no loss at that row. Returns Σ −log p(target) over the
    /// rows with a target. With <paramref name="dHidden"/> (N,C) it is overwritten with gradScale·∂loss/∂hidden
    /// (zero rows where there is no target); <paramref name="dHead"/> (V,C), when given, accumulates gradScale·∂loss/∂head.
    /// </summary>
    double CrossEntropy(DeviceBuffer hidden, DeviceBuffer head, ReadOnlySpan<int> targets, int n, int c, int vocab,
        float gradScale, DeviceBuffer? dHidden, DeviceBuffer? dHead);

    /// <summary>
    /// The output head fused with cross-entropy and a distillation term over the teacher's top-k entries (see
    /// <see cref="Reference.Distill{T}"/> for the formulas), chunked like <see cref="CrossEntropy"/>: no (N,V) matrix.
    /// teacherIds, teacherLogProbs: (N,K), K = settings.TopK, read at the rows with a target. Gradients are of
    /// gradScale·((1 − α)·CE + α·T²·D), dHidden overwritten and dHead accumulated as in <see cref="CrossEntropy"/>.
    /// </summary>
    DistillLossSums Distill(DeviceBuffer hidden, DeviceBuffer head, ReadOnlySpan<int> targets, ReadOnlySpan<int> teacherIds,
        ReadOnlySpan<float> teacherLogProbs, DistillSettings settings, int n, int c, int vocab, float gradScale, DeviceBuffer? dHidden, DeviceBuffer? dHead);

    /// <summary>
    /// One AdamW step (Loshchilov and Hutter: decoupled weight decay, bias-corrected moments), step ≥ 1:
    /// m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²; p −= lr·(m̂/(√v̂ + ε) + wd·p).
    /// </summary>
    void AdamW(DeviceBuffer parameters, DeviceBuffer gradients, DeviceBuffer m, DeviceBuffer v,
        float learningRate, float beta1, float beta2, float epsilon, float weightDecay, int step);

    /// <summary>
    /// Inverted dropout with a counter-based mask: element i is kept when hash(seed, i) ≥ p, scaled by 1/(1−p).
    /// The same call with the same seed on the output gradient is the backward (the mask is recomputed, not stored).
    /// </summary>
    void Dropout(DeviceBuffer x, DeviceBuffer y, long count, float probability, ulong seed);
}
