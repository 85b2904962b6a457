using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using EdgeTune.Core.Numerics;
using EdgeTune.Core.Quantization;
using Xunit.Abstractions;

namespace EdgeTune.Core.Tests;

/// <summary>
/// Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and Q8_K against llama.cpp's quantize_row_*_ref semantics: every fast path
/// equals the scalar reference byte for byte, round trips stay within each type's error bound, golden blocks
/// hold hand-checked bytes, and, where LLamaSharp's native ggml-base is at hand, our bytes equal its bytes.
/// </summary>
public class LegacyQuantTests(ITestOutputHelper output)
{
    private delegate void QuantizeFn(ReadOnlySpan<float> x, Span<byte> y);
    private delegate void DequantizeFn(ReadOnlySpan<byte> x, Span<float> y);

    private sealed record Codec(
        GgmlType Type, int BlockSize, int BlockBytes, QuantizeFn Reference,
        (string Name, QuantizeFn Fn)[] FastPaths, DequantizeFn DequantizeReference, (string Name, DequantizeFn Fn)[] FastDequantizers);

    private static Codec Get(GgmlType type) => type switch
    {
        GgmlType.Q8_0 => new(type, 32, 34, Q8_0.QuantizeReference,
            [("Quantize", Q8_0.Quantize), ("Vector256", Q8_0.QuantizeVector256), ("Vector128", Q8_0.QuantizeVector128)],
            Q8_0.DequantizeReference, [("Dequantize", Q8_0.Dequantize), ("Vector256", Q8_0.DequantizeVector256)]),
        GgmlType.Q4_0 => new(type, 32, 18, Q4_0.QuantizeReference,
            [("Quantize", Q4_0.Quantize), ("Vector256", Q4_0.QuantizeVector256), ("Vector128", Q4_0.QuantizeVector128)],
            Q4_0.DequantizeReference, [("Dequantize", Q4_0.Dequantize), ("Vector256", Q4_0.DequantizeVector256)]),
        GgmlType.Q4_1 => new(type, 32, 20, Q4_1.QuantizeReference,
            [("Quantize", Q4_1.Quantize), ("Vector256", Q4_1.QuantizeVector256)],
            Q4_1.DequantizeReference, [("Dequantize", Q4_1.Dequantize), ("Vector256", Q4_1.DequantizeVector256)]),
        GgmlType.Q5_0 => new(type, 32, 22, Q5_0.QuantizeReference,
            [("Quantize", Q5_0.Quantize), ("Vector256", Q5_0.QuantizeVector256)],
            Q5_0.DequantizeReference, [("Dequantize", Q5_0.Dequantize), ("Vector256", Q5_0.DequantizeVector256)]),
        GgmlType.Q5_1 => new(type, 32, 24, Q5_1.QuantizeReference,
            [("Quantize", Q5_1.Quantize), ("Vector256", Q5_1.QuantizeVector256)],
            Q5_1.DequantizeReference, [("Dequantize", Q5_1.Dequantize), ("Vector256", Q5_1.DequantizeVector256)]),
        GgmlType.Q8_K => new(type, 256, 292, Q8_K.QuantizeReference,
            [("Quantize", Q8_K.Quantize), ("Vector256", Q8_K.QuantizeVector256)],
            Q8_K.DequantizeReference, [("Dequantize", Q8_K.Dequantize), ("Vector256", Q8_K.DequantizeVector256)]),
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };

    public static TheoryData<GgmlType> Types => [GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q8_K];

    // ---- input blocks ----

    /// <summary>The value of largest magnitude that makes the scale exactly 1 (or -1), so x + k/2 lands on rounding ties.</summary>
    private static float UnitScaleMax(GgmlType type) => type switch
    {
        GgmlType.Q8_0 or GgmlType.Q8_K => 127f,
        GgmlType.Q4_0 => 8f,
        GgmlType.Q5_0 => 16f,
        GgmlType.Q4_1 => 15f,
        _ => 31f,
    };

    private static float Normal(Random r) =>
        (float)(Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble()));

    private static float AnyBits(Random r) => BitConverter.Int32BitsToSingle(r.Next() ^ r.Next() << 16);

    /// <summary>Block generators: ordinary data plus every case where C's arithmetic does something special.</summary>
    private static readonly (string Name, Action<Random, Span<float>, float> Fill)[] Generators =
    [
        ("normal", (r, s, _) => { for (int i = 0; i < s.Length; i++) s[i] = Normal(r) * 0.02f; }),
        ("normal at a random scale", (r, s, _) => { float k = MathF.Pow(10, r.Next(-12, 12)); for (int i = 0; i < s.Length; i++) s[i] = Normal(r) * k; }),
        ("uniform", (r, s, _) => { for (int i = 0; i < s.Length; i++) s[i] = (float)(r.NextDouble() * 2 - 1); }),
        ("all positive", (r, s, _) => { for (int i = 0; i < s.Length; i++) s[i] = (float)r.NextDouble() + 3f; }),
        ("with zeros of both signs", (r, s, _) => { for (int i = 0; i < s.Length; i++) s[i] = r.Next(3) == 0 ? (r.Next(2) == 0 ? 0f : -0f) : Normal(r); }),
        ("all +0", (_, s, _) => s.Clear()),
        ("all -0", (_, s, _) => s.Fill(-0f)),
        ("mixed zeros", (r, s, _) => { for (int i = 0; i < s.Length; i++) s[i] = r.Next(2) == 0 ? 0f : -0f; }),
        ("constant", (r, s, _) => s.Fill(Normal(r))),
        ("constant negative", (r, s, _) => s.Fill(-MathF.Abs(Normal(r)) - 0.1f)),
        ("tiny 1e-30", (r, s, _) => { for (int i = 0; i < s.Length; i++) s[i] = Normal(r) * 1e-30f; }),
        ("near the fast-path threshold", (r, s, _) => { float k = MathF.Pow(2, r.Next(-135, -90)); for (int i = 0; i < s.Length; i++) s[i] = Normal(r) * k; }),
        ("subnormal", (r, s, _) => { for (int i = 0; i < s.Length; i++) s[i] = Normal(r) * 1e-40f; }),
        ("smallest subnormals", (r, s, _) => { for (int i = 0; i < s.Length; i++) s[i] = BitConverter.Int32BitsToSingle(r.Next(-5, 6)); }),
        ("large 1e30", (r, s, _) => { for (int i = 0; i < s.Length; i++) s[i] = Normal(r) * 1e30f; }),
        ("near FLT_MAX", (r, s, _) => { for (int i = 0; i < s.Length; i++) s[i] = (float)(r.NextDouble() * 2 - 1) * 3.4e38f; }),
        ("one outlier", (r, s, _) => { for (int i = 0; i < s.Length; i++) s[i] = Normal(r) * 0.01f; s[r.Next(s.Length)] = r.Next(2) == 0 ? -5f : 5f; }),
        ("negative maximum", (r, s, _) => { for (int i = 0; i < s.Length; i++) s[i] = Normal(r); s[r.Next(s.Length)] = -100f; }),
        ("equal magnitudes of both signs", (r, s, _) => { for (int i = 0; i < s.Length; i++) s[i] = Normal(r); s[r.Next(s.Length)] = -10f; s[r.Next(s.Length)] = 10f; }),
        ("rounding ties", (r, s, m) =>
        {
            for (int i = 0; i < s.Length; i++) s[i] = r.Next(-(int)m, (int)m) + 0.5f;
            s[r.Next(s.Length)] = r.Next(2) == 0 ? m : -m;
            s[r.Next(s.Length)] = 0f;
        }),
        ("NaN", (r, s, _) => { for (int i = 0; i < s.Length; i++) s[i] = Normal(r); s[r.Next(s.Length)] = float.NaN; }),
        ("NaN with payload", (r, s, _) => { for (int i = 0; i < s.Length; i++) s[i] = Normal(r); s[r.Next(s.Length)] = BitConverter.Int32BitsToSingle(0x7f812345 | r.Next(2) << 31); }),
        ("infinity", (r, s, _) => { for (int i = 0; i < s.Length; i++) s[i] = Normal(r); s[r.Next(s.Length)] = r.Next(2) == 0 ? float.PositiveInfinity : float.NegativeInfinity; }),
        ("any bits", (r, s, _) => { for (int i = 0; i < s.Length; i++) s[i] = AnyBits(r); }),
    ];

    private static float[] RandomRow(Codec c, int blocks, Random r)
    {
        var x = new float[blocks * c.BlockSize];
        for (int b = 0; b < blocks; b++)
            Generators[r.Next(Generators.Length)].Fill(r, x.AsSpan(b * c.BlockSize, c.BlockSize), UnitScaleMax(c.Type));
        return x;
    }

    /// <summary>One block from every generator, in order.</summary>
    private static float[] EveryGenerator(Codec c, Random r)
    {
        var x = new float[Generators.Length * c.BlockSize];
        for (int g = 0; g < Generators.Length; g++)
            Generators[g].Fill(r, x.AsSpan(g * c.BlockSize, c.BlockSize), UnitScaleMax(c.Type));
        return x;
    }

    private static byte[] QuantizeWith(QuantizeFn fn, Codec c, float[] x)
    {
        var y = new byte[x.Length / c.BlockSize * c.BlockBytes];
        fn(x, y);
        return y;
    }

    // ---- fast paths against the reference ----

    [Theory]
    [MemberData(nameof(Types))]
    public void Fast_paths_equal_the_reference_byte_for_byte(GgmlType type)
    {
        var c = Get(type);
        var r = new Random(20240601 + (int)type);
        int maxBlocks = c.BlockSize == 32 ? 6 : 3;
        var rows = new List<float[]> { EveryGenerator(c, r) };
        for (int blocks = 1; blocks <= maxBlocks; blocks++)
            for (int k = 0; k < 40; k++)
                rows.Add(RandomRow(c, blocks, r));

        foreach (var x in rows)
        {
            var expected = QuantizeWith(c.Reference, c, x);
            foreach (var (name, fn) in c.FastPaths)
            {
                var actual = QuantizeWith(fn, c, x);
                if (!actual.AsSpan().SequenceEqual(expected))
                {
                    int b = FirstDifferentBlock(expected, actual, c.BlockBytes);
                    Assert.Fail($"{type} {name} differs from the reference in block {b} of {x.Length / c.BlockSize}: " +
                        $"input [{string.Join(", ", x.AsSpan(b * c.BlockSize, Math.Min(c.BlockSize, 32)).ToArray().Select(v => v.ToString("R")))}] " +
                        $"reference {Convert.ToHexString(expected, b * c.BlockBytes, c.BlockBytes)} fast {Convert.ToHexString(actual, b * c.BlockBytes, c.BlockBytes)}");
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void Codec_table_dispatches_to_the_same_bytes(GgmlType type)
    {
        var c = Get(type);
        var x = EveryGenerator(c, new Random(7));
        var viaTable = new byte[GgmlTypes.RowBytes(type, x.Length)];
        QuantCodecs.Quantize(type, x, viaTable);
        Assert.Equal(QuantizeWith(c.Reference, c, x), viaTable);

        var back = new float[x.Length];
        QuantCodecs.Dequantize(type, viaTable, back);
        var expected = new float[x.Length];
        c.DequantizeReference(viaTable, expected);
        AssertSameFloats(expected, back, $"{type} dequantise via QuantCodecs");
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void Fast_dequantisers_equal_the_reference(GgmlType type)
    {
        var c = Get(type);
        var r = new Random(99 + (int)type);
        // Bytes from real quantisation, then arbitrary bytes (any scale, NaN and infinite scales included).
        var quantized = QuantizeWith(c.Reference, c, EveryGenerator(c, r));
        var arbitrary = new byte[c.BlockBytes * 64];
        r.NextBytes(arbitrary);
        foreach (var bytes in new[] { quantized, arbitrary })
        {
            var expected = new float[bytes.Length / c.BlockBytes * c.BlockSize];
            c.DequantizeReference(bytes, expected);
            foreach (var (name, fn) in c.FastDequantizers)
            {
                var actual = new float[expected.Length];
                fn(bytes, actual);
                AssertSameFloats(expected, actual, $"{type} {name}");
            }
        }
    }

    // ---- round trips ----

    [Theory]
    [MemberData(nameof(Types))]
    public void Round_trip_error_is_within_the_type_bound(GgmlType type)
    {
        var c = Get(type);
        var r = new Random(3 + (int)type);
        var x = new float[c.BlockSize * 64];
        for (int i = 0; i < x.Length; i++) x[i] = Normal(r) * (i / c.BlockSize % 4 == 0 ? 10f : 0.02f);
        var y = QuantizeWith(Q(type), c, x);
        var back = new float[x.Length];
        QuantCodecs.Dequantize(type, y, back);

        for (int b = 0; b < x.Length / c.BlockSize; b++)
        {
            var xb = x.AsSpan(b * c.BlockSize, c.BlockSize);
            var block = y.AsSpan(b * c.BlockBytes, c.BlockBytes);
            float bound = ErrorBound(type, xb, block);
            for (int j = 0; j < c.BlockSize; j++)
            {
                float err = MathF.Abs(xb[j] - back[b * c.BlockSize + j]);
                Assert.True(err <= bound, $"{type} block {b} value {j}: |{xb[j]:R} - {back[b * c.BlockSize + j]:R}| = {err} > {bound}");
            }
        }
    }

    private static QuantizeFn Q(GgmlType type) => (x, y) => QuantCodecs.Quantize(type, x, y);

    /// <summary>
    /// Worst error of one block. The quantiser rounds with the float scale d; the file keeps d (and m) as
    /// fp16, so the bound adds |q| times the scale's fp16 rounding error (and the min's).
    /// </summary>
    private static float ErrorBound(GgmlType type, ReadOnlySpan<float> x, ReadOnlySpan<byte> block)
    {
        float amax = 0, min = float.MaxValue, max = -float.MaxValue;
        foreach (float v in x) { amax = MathF.Max(amax, MathF.Abs(v)); min = MathF.Min(min, v); max = MathF.Max(max, v); }
        float d16 = MathF.Abs(Fp16.ToFloat(BinaryPrimitives.ReadUInt16LittleEndian(block)));
        const float Slack = 1.0001f;
        switch (type)
        {
            case GgmlType.Q8_0:
                return (0.5f * amax / 127 + 127 * MathF.Abs(amax / 127 - d16)) * Slack;
            case GgmlType.Q4_0:
            case GgmlType.Q5_0:
                // q = x/d + half, clamped: the top value (opposite in sign to max, up to |max|) clamps one step short, so one full step.
                float steps = type == GgmlType.Q4_0 ? 8 : 16;
                return (amax / steps + (steps + 1) * MathF.Abs(amax / steps - d16)) * Slack;
            case GgmlType.Q4_1:
            case GgmlType.Q5_1:
                float levels = type == GgmlType.Q4_1 ? 15 : 31;
                float m16 = Fp16.ToFloat(BinaryPrimitives.ReadUInt16LittleEndian(block[2..]));
                float d = (max - min) / levels;
                return (0.5f * d + levels * MathF.Abs(d - d16) + MathF.Abs(min - m16)) * Slack;
            default: // Q8_K: d is a float, rounding is to nearest
                return 0.5f * MathF.Abs(BinaryPrimitives.ReadSingleLittleEndian(block)) * Slack;
        }
    }

    [Fact]
    public void Q8_0_error_is_at_most_half_a_step_with_an_exact_scale()
    {
        // amax = 127 * 2^-4 makes d = 2^-4, exact in fp16, so the bound is exactly d / 2.
        var r = new Random(11);
        var x = new float[32 * 32];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(r.NextDouble() * 2 - 1) * 127f / 16;
        for (int b = 0; b < 32; b++) x[b * 32 + r.Next(32)] = r.Next(2) == 0 ? 127f / 16 : -127f / 16;
        var y = QuantizeWith(Q8_0.Quantize, Get(GgmlType.Q8_0), x);
        var back = new float[x.Length];
        Q8_0.Dequantize(y, back);
        for (int i = 0; i < x.Length; i++)
            Assert.True(MathF.Abs(x[i] - back[i]) <= 1f / 32, $"value {i}: {x[i]} -> {back[i]}");
    }

    // ---- golden blocks ----
    // Each input makes the scale exactly +-1, so the quants are the C rounding rules applied by hand (worked in the
    // comments). The same hex came out of LLamaSharp 0.30.0's libggml-base.so (llama.cpp c0c7e147), quantize_row_*_ref,
    // called from a scratch harness during development.

    [Fact]
    public void Q8_0_golden_block()
    {
        // amax = 127 -> d = 1 (fp16 0x3C00), id = 1, q = roundf(x), half away from zero:
        // 127, -127, 63.5 -> 64, -63.5 -> -64, 0.5 -> 1, -0.5 -> -1, 0.49999997 -> 0, 1.5 -> 2, then j - 20 for j = 8..31.
        var x = new float[32];
        float[] head = [127f, -127f, 63.5f, -63.5f, 0.5f, -0.5f, 0.49999997f, 1.5f];
        head.CopyTo(x, 0);
        for (int j = 8; j < 32; j++) x[j] = j - 20;
        AssertGolden(GgmlType.Q8_0, x, "003C" + "7F8140C001FF0002" + "F4F5F6F7F8F9FAFBFCFDFEFF000102030405060708090A0B");
    }

    [Fact]
    public void Q4_0_golden_block()
    {
        // x[0] = -8 is the first value of largest magnitude (x[1] = 8 ties and loses), so d = -8 / -8 = 1, id = 1,
        // q = MIN(15, (int8_t)(x + 8.5)): x[0] -> 0, x[1] -> 16 -> 15, x[j] = (j - 16) / 2 -> trunc(x + 8.5).
        // qs[j] = q[j] | q[j + 16] << 4, e.g. qs[0] = 0 | 8 << 4 = 0x80, qs[1] = 15 | 9 << 4 = 0x9F.
        var x = new float[32];
        x[0] = -8f; x[1] = 8f;
        for (int j = 2; j < 32; j++) x[j] = (j - 16) * 0.5f;
        AssertGolden(GgmlType.Q4_0, x, "003C" + "809F91A2A2B3B3C4C4D5D5E6E6F7F7F8");
    }

    [Fact]
    public void Q4_1_golden_block()
    {
        // min = -1, max = 14: d = 15 / 15 = 1 (0x3C00), m = -1 (0xBC00), q = MIN(15, (int8_t)(x + 1 + 0.5)).
        // x[j] = j % 15 - 0.5 for j >= 2 gives q = j % 15 + 1; qs[0] = q[0] | q[16] << 4 = 0 | 2 << 4 = 0x20.
        var x = new float[32];
        x[0] = -1f; x[1] = 14f;
        for (int j = 2; j < 32; j++) x[j] = j % 15 - 0.5f;
        AssertGolden(GgmlType.Q4_1, x, "003C" + "00BC" + "203F435465768798A9BACBDCEDFE1F21");
    }

    [Fact]
    public void Q5_0_golden_block()
    {
        // max = 16: d = 16 / -16 = -1 (0xBC00), id = -1, q = MIN(31, (int8_t)(16.5 - x)): q[0] = 0, q[j] = 32 - j (j = 1 clamps 31 -> 31).
        // Fifth bits: q[j] >= 16 for j = 1..16 -> qh = 0x0001FFFE. qs[1] = (31 & 15) | (15 & 15) << 4 = 0xFF.
        var x = new float[32];
        x[0] = 16f;
        for (int j = 1; j < 32; j++) x[j] = j - 16;
        AssertGolden(GgmlType.Q5_0, x, "00BC" + "FEFF0100" + "00FFEEDDCCBBAA998877665544332211");
    }

    [Fact]
    public void Q5_1_golden_block()
    {
        // min = 1, max = 32: d = 31 / 31 = 1 (0x3C00), m = 1 (0x3C00), q = (uint8_t)(x - 1 + 0.5): q[0] = 0, q[1] = 31,
        // q[j] = trunc(j - 0.25) = j - 1. Fifth bits for q >= 16: value 1 and values 17..31 -> qh = 0xFFFE0002.
        var x = new float[32];
        x[0] = 1f; x[1] = 32f;
        for (int j = 2; j < 32; j++) x[j] = j + 0.25f;
        AssertGolden(GgmlType.Q5_1, x, "003C" + "003C" + "0200FEFF" + "F00F112233445566778899AABBCCDDEE");
    }

    [Fact]
    public void Q8_K_golden_block()
    {
        // max = -127: iscale = -127 / -127 = 1, d = 1 / iscale = 1.0f (0x3F800000), q = nearest_int(x), ties to even:
        // x[j] = j % 16 - 7.5 -> -8, -6, -6, -4, -4, -2, -2, 0, 0, 2, 2, 4, 4, 6, 6, 8 (sum 0); x[0] = -127 replaces the -8.
        // bsums: group 0 = -127 - (-8) + 0 = -119 (0xFF89), the other fifteen are 0.
        var x = new float[256];
        x[0] = -127f;
        for (int j = 1; j < 256; j++) x[j] = j % 16 - 8 + 0.5f;
        string group = "F8FAFAFCFCFEFE000002020404060608";
        string expected = "0000803F" + "81" + group[2..] + string.Concat(Enumerable.Repeat(group, 15))
            + "89FF" + string.Concat(Enumerable.Repeat("0000", 15));
        AssertGolden(GgmlType.Q8_K, x, expected);
    }

    private static void AssertGolden(GgmlType type, float[] x, string hex)
    {
        var c = Get(type);
        Assert.Equal(hex, Convert.ToHexString(QuantizeWith(c.Reference, c, x)));
        foreach (var (name, fn) in c.FastPaths)
            Assert.True(hex == Convert.ToHexString(QuantizeWith(fn, c, x)), $"{type} {name}");
    }

    // ---- C details ----

    [Fact]
    public void Q8_K_bsums_are_the_sums_of_each_16_quants()
    {
        var c = Get(GgmlType.Q8_K);
        var x = RandomRow(c, 8, new Random(5));
        foreach (var (_, fn) in c.FastPaths.Prepend(("Reference", c.Reference)))
        {
            var y = QuantizeWith(fn, c, x);
            for (int b = 0; b < 8; b++)
            {
                var block = y.AsSpan(b * 292, 292);
                for (int g = 0; g < 16; g++)
                {
                    int sum = 0;
                    for (int k = 0; k < 16; k++) sum += (sbyte)block[4 + g * 16 + k];
                    Assert.Equal(sum, BinaryPrimitives.ReadInt16LittleEndian(block[(260 + 2 * g)..]));
                }
            }
        }
    }

    [Fact]
    public void All_zero_blocks_follow_the_C_code()
    {
        var zeros = new float[256];
        // Q4_0/Q5_0: max stays +0, so d = max / -8 is -0 (fp16 0x8000), id = 0 and every quant is the midpoint
        // (8, or 16 with its fifth bit set). Q8_0: d = 0 / 127 = +0.
        Assert.Equal("0080" + new string('8', 32), Convert.ToHexString(QuantizeWith(Q4_0.Quantize, Get(GgmlType.Q4_0), zeros[..32])));
        Assert.Equal("0080" + "FFFFFFFF" + new string('0', 32), Convert.ToHexString(QuantizeWith(Q5_0.Quantize, Get(GgmlType.Q5_0), zeros[..32])));
        Assert.Equal(new string('0', 68), Convert.ToHexString(QuantizeWith(Q8_0.Quantize, Get(GgmlType.Q8_0), zeros[..32])));
        // Q8_K: d = 0 and qs = 0; ggml leaves bsums alone, we write zeros.
        var y = Enumerable.Repeat((byte)0xAB, 292).ToArray();
        Q8_K.Quantize(zeros, y);
        Assert.All(y, b => Assert.Equal(0, b));
    }

    [Fact]
    public void Scalar_helpers_mirror_x86_C()
    {
        // roundf: half away from zero; the vector form agrees, including just below a half.
        Assert.Equal(3f, LegacyQuantMath.RoundF(2.5f));
        Assert.Equal(-3f, LegacyQuantMath.RoundF(-2.5f));
        Assert.Equal(0f, LegacyQuantMath.RoundF(0.49999997f));
        float[] probe = [0.49999997f, 0.5f, -0.5f, 1.5f, 2.5f, -2.5f, 126.5f, -126.49999f, 8388607.5f, 0f];
        foreach (float v in probe)
        {
            int expected = (int)MathF.Round(v, MidpointRounding.AwayFromZero);
            Assert.Equal(expected, LegacyQuantMath.RoundAwayToInt(Vector128.Create(v)).ToScalar());
            Assert.Equal(expected, LegacyQuantMath.RoundAwayToInt(Vector256.Create(v)).ToScalar());
        }

        // cvttss2si: NaN and out-of-range give int.MinValue, whose low byte is 0.
        Assert.Equal(int.MinValue, LegacyQuantMath.TruncToInt32(float.NaN));
        Assert.Equal(int.MinValue, LegacyQuantMath.TruncToInt32(float.PositiveInfinity));
        Assert.Equal(int.MinValue, LegacyQuantMath.TruncToInt32(3e9f));
        Assert.Equal(-7, LegacyQuantMath.TruncToInt32(-7.9f));
        Assert.Equal(-56, LegacyQuantMath.ToInt8(200.5f));

        // nearest_int rounds half to even.
        Assert.Equal(2, LegacyQuantMath.NearestInt(2.5f));
        Assert.Equal(-4, LegacyQuantMath.NearestInt(-3.5f));
        Assert.Equal(-4194304, LegacyQuantMath.NearestInt(float.PositiveInfinity));

        // GGML_FP32_TO_FP16 makes every NaN 0x7E00 plus sign; otherwise round to nearest even like Half.
        Assert.Equal(0x7E00, LegacyQuantMath.FloatToHalf(BitConverter.Int32BitsToSingle(0x7f812345)));
        Assert.Equal(0xFE00, LegacyQuantMath.FloatToHalf(BitConverter.UInt32BitsToSingle(0xffc00001)));
        Assert.Equal(0x7C00, LegacyQuantMath.FloatToHalf(65520f));
        Assert.Equal(0x3C00, LegacyQuantMath.FloatToHalf(1.00048828125f)); // tie between 1 and 1 + 2^-10 goes to even
    }

    [Fact]
    public void Rejects_partial_blocks_and_short_destinations()
    {
        Assert.Throws<ArgumentException>(() => Q8_0.Quantize(new float[33], new byte[68]));
        Assert.Throws<ArgumentException>(() => Q4_0.Quantize(new float[64], new byte[35]));
        Assert.Throws<ArgumentException>(() => Q5_1.Dequantize(new byte[25], new float[64]));
        Assert.Throws<ArgumentException>(() => Q8_K.Dequantize(new byte[292], new float[255]));
    }

    // ---- against llama.cpp itself ----

    [Theory]
    [MemberData(nameof(Types))]
    public unsafe void Bytes_equal_the_native_ggml_reference_when_available(GgmlType type)
    {
        if (!TryLoadGgmlBase(out nint lib))
        {
            output.WriteLine("ggml-base from LLamaSharp.Backend.Cpu is not loadable here (x64 Linux/Windows only); skipped.");
            return;
        }

        string name = GgmlTypes.Name(type);
        var quantize = (delegate* unmanaged<float*, byte*, long, void>)NativeLibrary.GetExport(lib, $"quantize_row_{name}_ref");
        var dequantize = (delegate* unmanaged<byte*, float*, long, void>)NativeLibrary.GetExport(lib, $"dequantize_row_{name}");
        var c = Get(type);
        var r = new Random(31337 + (int)type);
        int blocks = 0;
        for (int round = 0; round < 20; round++)
        {
            var x = round == 0 ? EveryGenerator(c, r) : RandomRow(c, 32, r);
            var expected = new byte[x.Length / c.BlockSize * c.BlockBytes];
            fixed (float* px = x) fixed (byte* py = expected) quantize(px, py, x.Length);
            var ours = new byte[expected.Length];
            QuantCodecs.Quantize(type, x, ours);
            Assert.Equal(Convert.ToHexString(expected), Convert.ToHexString(ours));

            var back = new float[x.Length];
            var ourBack = new float[x.Length];
            fixed (byte* py = expected) fixed (float* pb = back) dequantize(py, pb, x.Length);
            QuantCodecs.Dequantize(type, expected, ourBack);
            AssertSameFloats(back, ourBack, $"{type} dequantised against ggml");
            blocks += x.Length / c.BlockSize;
        }
        output.WriteLine($"{type}: {blocks} blocks equal to ggml's");
    }

    private static nint s_ggmlBase;

    private static bool TryLoadGgmlBase(out nint lib)
    {
        lib = s_ggmlBase;
        if (lib != 0) return true;
        // Only x64: C's out-of-range casts, which we copy, are what x86 does; Arm saturates instead.
        if (RuntimeInformation.ProcessArchitecture != Architecture.X64) return false;
        string? path = null;
        if (OperatingSystem.IsLinux()) path = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "noavx", "libggml-base.so");
        else if (OperatingSystem.IsWindows()) path = Path.Combine(AppContext.BaseDirectory, "runtimes", "win-x64", "native", "noavx", "ggml-base.dll");
        if (path is null || !File.Exists(path) || !NativeLibrary.TryLoad(path, out lib)) return false;
        s_ggmlBase = lib;
        return true;
    }

    // ---- helpers ----

    private static int FirstDifferentBlock(byte[] a, byte[] b, int blockBytes)
    {
        for (int i = 0; i < a.Length; i++)
            if (a[i] != b[i]) return i / blockBytes;
        return -1;
    }

    /// <summary>Bitwise float equality, except that any NaN matches any NaN (which NaN an operation returns can depend on operand order).</summary>
    private static void AssertSameFloats(float[] expected, float[] actual, string what)
    {
        for (int i = 0; i < expected.Length; i++)
        {
            bool same = BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i])
                || (float.IsNaN(expected[i]) && float.IsNaN(actual[i]));
            Assert.True(same, $"{what}: value {i} is {actual[i]:R}, expected {expected[i]:R}");
        }
    }
}
