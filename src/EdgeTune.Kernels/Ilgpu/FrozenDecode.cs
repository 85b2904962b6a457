using ILGPU;

namespace EdgeTune.Kernels.Ilgpu;

/// <summary>
/// Device-side dequantisation of one element of a frozen weight, written to give exactly the values of Core's
/// dequantisers (Q8_0, Q4_0, Q4_K: EdgeTune.Core.Quantization) and of the NF4 codec: the same products in the
/// same order, in float. Plain integer and float arithmetic only, so it compiles for every ILGPU backend.
/// </summary>
internal static class FrozenDecode
{
    public const int F32 = 0, Nf4 = 1, Q8_0 = 2, Q4_0 = 3, Q4_K = 4;

    public static int FormatCode(FrozenFormat format) => format switch
    {
        FrozenFormat.F32 => F32,
        FrozenFormat.Nf4 => Nf4,
        FrozenFormat.Q8_0 => Q8_0,
        FrozenFormat.Q4_0 => Q4_0,
        FrozenFormat.Q4_K => Q4_K,
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, "unknown frozen format"),
    };

    /// <summary>W[row, col].</summary>
    public static float Element(in FrozenSource w, long row, long col)
    {
        if (w.Format == F32) return w.Floats[row * w.Cols + col];
        long rowBase = row * w.RowBytes;
        if (w.Format == Q8_0)
        {
            // block: f16 d, i8 q[32];  x = q·d
            long b = rowBase + (col >> 5) * 34;
            float d = Half(w.Bytes, b);
            return (sbyte)w.Bytes[b + 2 + (col & 31)] * d;
        }
        if (w.Format == Q4_0)
        {
            // block: f16 d, 16 bytes; byte j: low nibble = value j, high nibble = value j + 16;  x = (q − 8)·d
            long b = rowBase + (col >> 5) * 18;
            float d = Half(w.Bytes, b);
            int j = (int)(col & 31);
            int packed = w.Bytes[b + 2 + (j & 15)];
            int q = j < 16 ? packed & 0x0F : packed >> 4;
            return (q - 8) * d;
        }
        if (w.Format == Q4_K)
        {
            // super-block of 256: f16 d, f16 dmin, 12 bytes of 6-bit (scale, min) × 8, 128 bytes of nibbles.
            // 64 values per 32 bytes of nibbles: low nibbles are sub-block 2i, high nibbles sub-block 2i + 1.
            // x = (d·scale)·q − dmin·min
            long b = rowBase + (col >> 8) * 144;
            int j = (int)(col & 255);
            int chunk = j >> 6, within = j & 63, high = within >> 5;
            int sub = 2 * chunk + high;
            float d = Half(w.Bytes, b), dmin = Half(w.Bytes, b + 2);
            int scale, min;
            long s = b + 4;
            if (sub < 4)
            {
                scale = w.Bytes[s + sub] & 63;
                min = w.Bytes[s + sub + 4] & 63;
            }
            else
            {
                scale = (w.Bytes[s + sub + 4] & 0xF) | ((w.Bytes[s + sub - 4] >> 6) << 4);
                min = (w.Bytes[s + sub + 4] >> 4) | ((w.Bytes[s + sub] >> 6) << 4);
            }
            int packed = w.Bytes[b + 16 + chunk * 32 + (within & 31)];
            int q = high == 0 ? packed & 0x0F : packed >> 4;
            float d1 = d * scale, m1 = dmin * min;
            return d1 * q - m1;
        }
        return Nf4Element(w, row, col);
    }

    /// <summary>IEEE binary16 at <paramref name="offset"/> (little endian) to float, exactly (subnormals included).</summary>
    public static float Half(ArrayView<byte> bytes, long offset)
    {
        int h = bytes[offset] | (bytes[offset + 1] << 8);
        int sign = h >> 15, exponent = (h >> 10) & 31, mantissa = h & 1023;
        float value;
        if (exponent == 0) value = mantissa * (1f / 16777216f); // 2⁻²⁴ · m, exact
        else if (exponent == 31) value = Interop.IntAsFloat((uint)(0x7F800000 | (mantissa << 13)));
        else value = Interop.IntAsFloat((uint)(((exponent + 112) << 23) | (mantissa << 13)));
        return sign != 0 ? -value : value;
    }

    /// <summary>Offset of the NF4 tables inside <see cref="FrozenSource.Nf4Tables"/>: code book at 0, dynamic code at 16.</summary>
    public const int DynamicCodeOffset = 16;

    /// <summary>
    /// NF4 (Nf4Codec's layout): blocks of 64 run over the flat row-major index; element i is in the high nibble of
    /// byte i/2 when i is even. x = CodeBook[code]·(Dynamic[absmaxCode]·scale + offset), as Nf4Codec.DequantizeRange.
    /// </summary>
    private static float Nf4Element(in FrozenSource w, long row, long col)
    {
        long i = row * w.Cols + col;
        int packed = w.Bytes[i >> 1];
        int code = (i & 1) == 0 ? packed >> 4 : packed & 0xF;
        long block = i >> 6;
        int absmaxCode = w.Bytes[w.Nf4CodeBytes + block];
        long s = w.Nf4CodeBytes + w.Nf4Blocks + 4 * (block >> 8);
        float scale = Interop.IntAsFloat((uint)(w.Bytes[s] | (w.Bytes[s + 1] << 8) | (w.Bytes[s + 2] << 16) | (w.Bytes[s + 3] << 24)));
        float absmax = w.Nf4Tables[DynamicCodeOffset + absmaxCode] * scale + w.Nf4Offset;
        return w.Nf4Tables[code] * absmax;
    }
}
