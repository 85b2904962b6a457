using EdgeTune.Core.Quantization;

namespace EdgeTune.Core.Tests;

public class KQuantTests
{
    private delegate void QuantizeFn(ReadOnlySpan<float> x, Span<byte> y);
    private delegate void DequantizeFn(ReadOnlySpan<byte> x, Span<float> y);

    private sealed record Codec(GgmlType Type, int BlockBytes, QuantizeFn Fast, QuantizeFn Reference, DequantizeFn Dequantize);

    private static readonly Dictionary<GgmlType, Codec> Codecs = new()
    {
        [GgmlType.Q2_K] = new(GgmlType.Q2_K, 84, Q2_K.Quantize, Q2_K.QuantizeReference, Q2_K.Dequantize),
        [GgmlType.Q3_K] = new(GgmlType.Q3_K, 110, Q3_K.Quantize, Q3_K.QuantizeReference, Q3_K.Dequantize),
        [GgmlType.Q4_K] = new(GgmlType.Q4_K, 144, Q4_K.Quantize, Q4_K.QuantizeReference, Q4_K.Dequantize),
        [GgmlType.Q5_K] = new(GgmlType.Q5_K, 176, Q5_K.Quantize, Q5_K.QuantizeReference, Q5_K.Dequantize),
        [GgmlType.Q6_K] = new(GgmlType.Q6_K, 210, Q6_K.Quantize, Q6_K.QuantizeReference, Q6_K.Dequantize),
    };

    public static TheoryData<GgmlType> Types => new() { GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K };

    [Theory]
    [MemberData(nameof(Types))]
    public void Block_size_matches_ggml(GgmlType type) =>
        Assert.Equal(GgmlTypes.BlockBytes(type), Codecs[type].BlockBytes);

    [Theory]
    [MemberData(nameof(Types))]
    public void Fast_path_equals_reference_byte_for_byte(GgmlType type)
    {
        var codec = Codecs[type];
        // Odd block count: the Q4_K/Q5_K fast path pairs super-blocks and must handle a lone last one.
        var x = MixedData(blocks: 97, seed: (int)type);
        var fast = new byte[97 * codec.BlockBytes];
        var reference = new byte[97 * codec.BlockBytes];
        codec.Fast(x, fast);
        codec.Reference(x, reference);
        for (int b = 0; b < 97; b++)
        {
            var f = fast.AsSpan(b * codec.BlockBytes, codec.BlockBytes);
            var r = reference.AsSpan(b * codec.BlockBytes, codec.BlockBytes);
            Assert.True(f.SequenceEqual(r), $"{type} block {b} differs: fast {Convert.ToHexString(f)} reference {Convert.ToHexString(r)}");
        }
    }

    [Fact]
    public void Round_trip_error_is_bounded_and_ordered_by_bits()
    {
        // Unit Gaussian values; ggml's own codecs give about 0.295, 0.149, 0.070, 0.036, 0.018 here.
        var x = Gaussian(64 * 256, seed: 1);
        var bounds = new (GgmlType Type, double Max)[]
        {
            (GgmlType.Q6_K, 0.022), (GgmlType.Q5_K, 0.045), (GgmlType.Q4_K, 0.085), (GgmlType.Q3_K, 0.18), (GgmlType.Q2_K, 0.35),
        };
        double previous = 0;
        foreach (var (type, max) in bounds)
        {
            var codec = Codecs[type];
            var q = new byte[x.Length / 256 * codec.BlockBytes];
            var y = new float[x.Length];
            codec.Fast(x, q);
            codec.Dequantize(q, y);
            double sum = 0;
            for (int i = 0; i < x.Length; i++) sum += (double)(y[i] - x[i]) * (y[i] - x[i]);
            double rms = Math.Sqrt(sum / x.Length);
            Assert.InRange(rms, previous, max);
            previous = rms;
        }
    }

    // Golden blocks: quantize_row_q*_K_ref of ggml/src/ggml-quants.c at llama.cpp c0c7e147 (compiled with
    // -O2 -ffp-contract=off, and identical from LLamaSharp 0.30.0's linux-x64 libggml-base.so) for GoldenInput().
    [Theory]
    [InlineData(GgmlType.Q2_K, "3162a494df3152a394c531627394f52154848a5e1348c6469e9b188bcbb01eca756be5fbeb3a95327509a6ecc46f79c0d790eaa2c1adf78ec215b931d5219f85c0266ab5db1c10724a127561865d26583c3cbc38")]
    [InlineData(GgmlType.Q3_K, "c6dcaf83d1b68de5cb5fb61fdf18e3df4b98370070e8c71bfbdd0a91576899e7818d80fd779adcccbd820596c749bdc841a8c9882cc7d5cc42f9227337b14a7fdd1be667b5b9c83ee71c5014d979186930ede65f2bd8d4c53585cf20a9ebe990a26d263bb0af83fb5265aa65fb34")]
    [InlineData(GgmlType.Q4_K, "952a16314a107f4f9864b8e4e38842f9644488e80bb44748e88a94999b24d9b766bf46be8fca661764a67ae251fdc40054a2a2654551b062a5a433a1b28f45c26333a3c3f303a303531283e3f24353e27e62ab4956d57fdc5a87a7476565cf76006abb76dfe0201ab92a761759f55aa0d485d9a9c1b8fd71d305bb1cd5279593917a8a9c9375748e80778f8a83837974")]
    [InlineData(GgmlType.Q5_K, "4126f7304a117f50da65b2e624a852f9b088fbd381e2d9319b29e25b8b4cb38b8053f8ebbb2308d1b012e1ca98a35228d98901b3076a8091b2f53925184aa460cd7f7d6f1f86ce21ca4ef6c5a3ec7a00b75343d999b170d45a487642640f9973c6665596e5064506b634f5c5e495a6c41de667a3cdcbffd9c52e6fb0fcdbaefc10e5870ecee1514493560e3eb3fab560b81bb3548371faf2b60a6719cb302b2522e5162a36eae90e00fe1f051607f4f9")]
    [InlineData(GgmlType.Q6_K, "d02023b9bc566023a7c3f1412f03be2d9733e653713685d0adc58586aaba5ccffe53157e8102c3844d031b2a984abce1632f5dc01aed64d69383fe7428c0ae6bc4661109856b00ae1573814159aa6228303a1eaccd53723866eb1c2dd6b54b71551e559309e6d1e85808b3337f7b305010a486b80cdfa6b437e789f300a210d214e4ea5e136ce666dedb18ebeb801eed8ad05a0414c16ace8af655133b90823fe4a3d991f29ec47cf1268a02e212acb630d65a052be8e042ba924551666dd6a806f313ea80fa0bece819070cede620fb0021")]
    public void Quantize_matches_golden_ggml_bytes(GgmlType type, string hex)
    {
        var codec = Codecs[type];
        var expected = Convert.FromHexString(hex);
        var fast = new byte[codec.BlockBytes];
        var reference = new byte[codec.BlockBytes];
        codec.Fast(GoldenInput(), fast);
        codec.Reference(GoldenInput(), reference);
        Assert.Equal(Convert.ToHexString(expected), Convert.ToHexString(reference));
        Assert.Equal(Convert.ToHexString(expected), Convert.ToHexString(fast));
        // The public dispatcher reaches the same codec.
        var viaTable = new byte[codec.BlockBytes];
        QuantCodecs.Quantize(type, GoldenInput(), viaTable);
        Assert.Equal(Convert.ToHexString(expected), Convert.ToHexString(viaTable));
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void All_zero_blocks_quantise_to_zero_bytes_and_back(GgmlType type)
    {
        var codec = Codecs[type];
        var x = new float[2 * 256];
        var fast = Enumerable.Repeat((byte)0xAA, 2 * codec.BlockBytes).ToArray(); // stale bytes must be overwritten
        var reference = Enumerable.Repeat((byte)0x55, 2 * codec.BlockBytes).ToArray();
        codec.Fast(x, fast);
        codec.Reference(x, reference);
        Assert.All(fast, b => Assert.Equal(0, b));
        Assert.All(reference, b => Assert.Equal(0, b));
        var y = Enumerable.Repeat(1f, x.Length).ToArray();
        codec.Dequantize(fast, y);
        Assert.All(y, v => Assert.Equal(0f, v));
    }

    [Fact]
    public void Dequantize_q2_K_hand_built_block()
    {
        var block = new byte[84];
        int[] sc = new int[16], m = new int[16];
        for (int j = 0; j < 16; j++)
        {
            sc[j] = (j * 7 + 1) & 15;
            m[j] = (j * 5 + 3) & 15;
            block[j] = (byte)(sc[j] | (m[j] << 4));
        }
        var q = new int[256];
        for (int v = 0; v < 256; v++)
        {
            q[v] = (v * 3 + 1 + v / 7) & 3;
            int h = v / 128, r = v % 128;
            block[16 + 32 * h + r % 32] |= (byte)(q[v] << (2 * (r / 32)));
        }
        WriteHalf(block, 80, 0.5f);
        WriteHalf(block, 82, 0.25f);
        var y = new float[256];
        Q2_K.Dequantize(block, y);
        for (int v = 0; v < 256; v++)
            Assert.Equal(0.5f * sc[v / 16] * q[v] - 0.25f * m[v / 16], y[v]);
    }

    [Fact]
    public void Dequantize_q3_K_hand_built_block()
    {
        var block = new byte[110];
        var s = new int[16];
        for (int j = 0; j < 16; j++)
        {
            s[j] = (j * 23 + 5) & 63; // stored biased by 32
            if (j < 8) block[96 + j] |= (byte)(s[j] & 0xF);
            else block[96 + j - 8] |= (byte)((s[j] & 0xF) << 4);
            block[96 + 8 + j % 4] |= (byte)((s[j] >> 4) << (2 * (j / 4)));
        }
        var q = new int[256];
        for (int v = 0; v < 256; v++)
        {
            q[v] = (v * 5 + 2 + v / 9) & 7;
            int h = v / 128, r = v % 128;
            block[32 + 32 * h + r % 32] |= (byte)((q[v] & 3) << (2 * (r / 32)));
            if (q[v] > 3) block[v % 32] |= (byte)(1 << (v / 32));
        }
        WriteHalf(block, 108, 0.25f);
        var y = new float[256];
        Q3_K.Dequantize(block, y);
        for (int v = 0; v < 256; v++)
            Assert.Equal(0.25f * (s[v / 16] - 32) * (q[v] - 4), y[v]);
    }

    [Theory]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    public void Dequantize_q4_K_and_q5_K_hand_built_blocks(GgmlType type)
    {
        bool five = type == GgmlType.Q5_K;
        var block = new byte[five ? 176 : 144];
        int[] sc = { 1, 7, 20, 63, 5, 33, 48, 17 };
        int[] mn = { 0, 3, 63, 9, 40, 2, 16, 31 };
        for (int j = 0; j < 8; j++) // the 12-byte 6-bit layout read by get_scale_min_k4
        {
            if (j < 4)
            {
                block[4 + j] |= (byte)sc[j];
                block[4 + j + 4] |= (byte)mn[j];
            }
            else
            {
                block[4 + j + 4] = (byte)((sc[j] & 0xF) | ((mn[j] & 0xF) << 4));
                block[4 + j - 4] |= (byte)((sc[j] >> 4) << 6);
                block[4 + j] |= (byte)((mn[j] >> 4) << 6);
            }
        }
        int qs = five ? 48 : 16;
        var q = new int[256];
        for (int v = 0; v < 256; v++)
        {
            q[v] = (v * 11 + 5 + v / 13) & (five ? 31 : 15);
            int c = v / 64, l = v % 64;
            block[qs + 32 * c + l % 32] |= (byte)((q[v] & 0xF) << (l < 32 ? 0 : 4));
            if (q[v] > 15) block[16 + l % 32] |= (byte)(1 << (2 * c + (l < 32 ? 0 : 1)));
        }
        WriteHalf(block, 0, 0.5f);
        WriteHalf(block, 2, 0.125f);
        var y = new float[256];
        if (five) Q5_K.Dequantize(block, y);
        else Q4_K.Dequantize(block, y);
        for (int v = 0; v < 256; v++)
            Assert.Equal(0.5f * sc[v / 32] * q[v] - 0.125f * mn[v / 32], y[v]);
    }

    [Fact]
    public void Dequantize_q6_K_hand_built_block()
    {
        var block = new byte[210];
        int[] sc = { -3, 5, 127, -128, 1, 0, 64, -64, 2, 9, -9, 100, 33, -1, 7, 12 };
        for (int j = 0; j < 16; j++) block[192 + j] = (byte)(sbyte)sc[j];
        var q = new int[256];
        for (int v = 0; v < 256; v++)
        {
            q[v] = (v * 13 + 1 + v / 11) & 63;
            int h = v / 128, r = v % 128, l = r % 32, part = r / 32; // part: values l, l+32, l+64, l+96
            int ql = 64 * h + l + (part % 2) * 32;
            block[ql] |= (byte)((q[v] & 0xF) << (part < 2 ? 0 : 4));
            block[128 + 32 * h + l] |= (byte)((q[v] >> 4) << (2 * part));
        }
        WriteHalf(block, 208, 0.125f);
        var y = new float[256];
        Q6_K.Dequantize(block, y);
        for (int v = 0; v < 256; v++)
            Assert.Equal(0.125f * sc[v / 16] * (q[v] - 32), y[v]);
    }

    [Fact]
    public void Partial_blocks_are_refused()
    {
        Assert.Throws<ArgumentException>(() => Q4_K.Quantize(new float[300], new byte[288]));
        Assert.Throws<ArgumentException>(() => Q6_K.QuantizeReference(new float[256], new byte[209]));
    }

    /// <summary>The golden input: exact binary fractions (so C and C# read identical floats), varied scale per 16, one outlier.</summary>
    private static float[] GoldenInput()
    {
        var x = new float[256];
        uint s = 12345;
        for (int i = 0; i < 256; i++)
        {
            s = s * 1664525u + 1013904223u;
            int v = (int)(s >> 20) - 2048;
            int amp = 1 + i / 16 % 5;
            x[i] = v * amp / 1024f;
        }
        x[77] = 40f;
        return x;
    }

    private static float[] Gaussian(int n, int seed)
    {
        var r = new Random(seed);
        var x = new float[n];
        for (int i = 0; i < n; i++)
            x[i] = (float)(Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble()));
        return x;
    }

    /// <summary>Super-blocks of many kinds: Gaussian at many scales, outliers, zero and constant sub-blocks, ties, extremes.</summary>
    private static float[] MixedData(int blocks, int seed)
    {
        var r = new Random(seed);
        var g = Gaussian(blocks * 256, seed + 1);
        var x = new float[blocks * 256];
        for (int b = 0; b < blocks; b++)
        {
            var s = x.AsSpan(b * 256, 256);
            var n = g.AsSpan(b * 256, 256);
            float scale = MathF.Pow(10, r.Next(-6, 4));
            switch (b % 8)
            {
                case 0: for (int i = 0; i < 256; i++) s[i] = n[i] * scale; break;
                case 1: for (int i = 0; i < 256; i++) s[i] = n[i]; s[r.Next(256)] *= 100; break;
                case 2: for (int i = 0; i < 256; i++) s[i] = i / 16 % 3 == 0 ? 0 : n[i]; break; // zero sub-blocks
                case 3: s.Fill(n[0] * scale); break;
                case 4: for (int i = 0; i < 256; i++) s[i] = r.Next(-8, 9) * 0.5f; break; // rounding ties
                case 5: for (int i = 0; i < 256; i++) s[i] = -MathF.Abs(n[i]); break;
                case 6: for (int i = 0; i < 256; i++) s[i] = n[i] * (r.Next(2) == 0 ? 1e-30f : 1e30f); break;
                default: for (int i = 0; i < 256; i++) s[i] = r.Next(10) == 0 ? n[i] * 0.02f : 0f; break; // sparse
            }
        }
        return x;
    }

    private static void WriteHalf(byte[] block, int offset, float value) =>
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(offset), BitConverter.HalfToUInt16Bits((Half)value));
}
