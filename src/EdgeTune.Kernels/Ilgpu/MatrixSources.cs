using ILGPU;

namespace EdgeTune.Kernels.Ilgpu;

/// <summary>
/// An operand of the generic matmul kernels: element (r, c) of a logical matrix. Implemented by value types only,
/// so ILGPU specialises each kernel per operand type (no virtual calls on the device).
/// </summary>
internal interface IMatrixSource
{
    float Load(long r, long c);

    /// <summary>Whether (r, c) and (r, c + 1) are neighbours in memory: the tiled GEMM walks that index across lanes so loads coalesce.</summary>
    bool ColumnsContiguous { get; }
}

/// <summary>A dense float matrix read through strides: (r, c) ↦ data[r·rowStride + c·colStride]; transposes are free.</summary>
internal struct DenseSource : IMatrixSource
{
    public ArrayView<float> Data;
    public long RowStride, ColStride;

    public DenseSource(ArrayView<float> data, long rowStride, long colStride)
    {
        Data = data;
        RowStride = rowStride;
        ColStride = colStride;
    }

    public readonly float Load(long r, long c) => Data[r * RowStride + c * ColStride];

    public readonly bool ColumnsContiguous => ColStride == 1;
}

/// <summary>
/// A frozen weight W (rows = out features, cols = in features) in its storage format, dequantised element by element.
/// <see cref="Transposed"/> reads Wᵀ: (r, c) ↦ W[c, r], the B operand of y = x·Wᵀ.
/// </summary>
internal struct FrozenSource : IMatrixSource
{
    public ArrayView<byte> Bytes;
    /// <summary>The same memory as floats (F32 weights); the byte buffer is padded to a multiple of 4.</summary>
    public ArrayView<float> Floats;
    public int Format;
    public int Cols;
    public long RowBytes;
    /// <summary>NF4 only: the code book (16 floats) then the dynamic 8-bit code (256 floats), shared by the backend.</summary>
    public ArrayView<float> Nf4Tables;
    /// <summary>NF4 only: bytes of codes (where the absmax codes start), number of 64-blocks (the scales follow), the offset.</summary>
    public long Nf4CodeBytes, Nf4Blocks;
    public float Nf4Offset;
    public int Transposed;

    public readonly float Load(long r, long c) =>
        Transposed != 0 ? FrozenDecode.Element(this, c, r) : FrozenDecode.Element(this, r, c);

    /// <summary>W's rows are contiguous; read transposed, neighbours are down a column of the logical matrix.</summary>
    public readonly bool ColumnsContiguous => Transposed == 0;
}
