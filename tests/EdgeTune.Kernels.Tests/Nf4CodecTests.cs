using System.Buffers.Binary;
using Xunit.Abstractions;

namespace EdgeTune.Kernels.Tests;

public class Nf4CodecTests(ITestOutputHelper output)
{
    // bitsandbytes/functional.py get_4bit_type("nf4"), the values written out there (also in REFERENCE.md).
    private static readonly double[] BitsandbytesNf4 =
    [
        -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
        -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
        0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
    ];

    [Theory]
    [InlineData(1, 64)]
    [InlineData(65, 64)]
    [InlineData(4097, 128)]
    [InlineData(70_001, 1024)]
    [InlineData(70_001, 1 << 20)]
    public void Streaming_quantisation_writes_the_same_bytes_as_quantising_the_whole_tensor(int count, int chunk)
    {
        var rng = new Random(count);
        var values = Enumerable.Range(0, count).Select(_ => (float)(rng.NextDouble() - 0.5) * (rng.Next(50) == 0 ? 8 : 1)).ToArray();
        var reads = new List<(long Start, int Length)>();
        var streamed = Nf4Codec.Quantize(count, (start, destination) =>
        {
            reads.Add((start, destination.Length));
            values.AsSpan((int)start, destination.Length).CopyTo(destination);
        }, chunk);
        Assert.Equal(Nf4Codec.Quantize(values), streamed);
        Assert.All(reads, r => Assert.True(r.Length <= Math.Max(chunk, 64), $"read {r.Length} values at once"));
        Assert.Equal(count, reads.Sum(r => r.Length));
    }

    [Fact]
    public void CodeBookIsBitsandbytes()
    {
        Assert.Equal(16, Nf4Codec.CodeBook.Length);
        for (int i = 0; i < 16; i++) Assert.Equal((float)BitsandbytesNf4[i], Nf4Codec.CodeBook[i]);
    }

    [Fact]
    public void ThresholdsAreTheMidpointsSoCodesAreNearest()
    {
        for (int i = 0; i < 15; i++)
            Assert.Equal((BitsandbytesNf4[i] + BitsandbytesNf4[i + 1]) / 2, Nf4Codec.Thresholds[i], 6);
        var random = new Random(1);
        for (int trial = 0; trial < 10_000; trial++)
        {
            float x = (float)(random.NextDouble() * 2 - 1);
            int nearest = 0;
            for (int c = 1; c < 16; c++)
                if (Math.Abs(x - BitsandbytesNf4[c]) < Math.Abs(x - BitsandbytesNf4[nearest])) nearest = c;
            Assert.Equal(nearest, Nf4Codec.QuantizeNormalized(x));
        }
        for (int c = 0; c < 16; c++) Assert.Equal(c, Nf4Codec.QuantizeNormalized(Nf4Codec.CodeBook[c]));
        Assert.Equal(0, Nf4Codec.QuantizeNormalized(float.NaN)); // as the kernel's tree of x > t tests
    }

    [Fact]
    public void DynamicCodeIsBitsandbytesSignedDynamicMap()
    {
        var code = Nf4Codec.DynamicCode;
        Assert.Equal(256, code.Length);
        for (int i = 1; i < 256; i++) Assert.True(code[i - 1] < code[i], $"code[{i - 1}] = {code[i - 1]} ≥ code[{i}] = {code[i]}");
        Assert.Equal(-0.99296875f, code[0]);
        Assert.Equal(0f, code[127]);
        Assert.Equal(1f, code[255]);
        Assert.Equal(0.99296875f, code[254]);
        Assert.Equal(5.5e-7f, code[128], 12); // 1e-6 · (0.1 + 1)/2, the smallest exponent's only mean
        Assert.Equal(0, Nf4Codec.QuantizeDynamic(-1f));
        Assert.Equal(255, Nf4Codec.QuantizeDynamic(1f));
        Assert.Equal(127, Nf4Codec.QuantizeDynamic(0f));
    }

    [Fact]
    public void GoldenBytesOfOneBlock()
    {
        // Block absmax 1: 1 → 15, −1 → 0, 0.5 → 12 (0.4407 < 0.5 < 0.5017), 0 → 7, −0.25 → 4, 0.1 → 8.
        // One absmax (1.0) is its own mean: offset 1.0, absmax − offset = 0, scale 0 and (0·∞ = NaN) code 0.
        byte[] data = Nf4Codec.Quantize([1f, -1f, 0.5f, 0f, -0.25f, 0.1f]);
        byte[] expected = [0xF0, 0xC7, 0x48, 0x00, 0, 0, 0, 0, 0x00, 0x00, 0x80, 0x3F];
        Assert.Equal(expected, data);
        var back = new float[6];
        Nf4Codec.Dequantize(data, 6, back);
        Assert.Equal([1f, -1f, 0.44070982933044434f, 0f, -0.28444138169288635f, 0.07958029955625534f], back);
    }

    [Fact]
    public void GoldenBytesOfDoubleQuantisation()
    {
        // Block 0 all 2.0, block 1 all −1.0: absmax 2 and 1, offset 1.5, centred ±0.5, scale 0.5, normalised ±1
        // → dynamic codes 255 (1.0) and 0 (−0.99296875). Codes: 2/2 = 1 → 15, −1/1 → 0.
        var values = Enumerable.Repeat(2f, 64).Concat(Enumerable.Repeat(-1f, 64)).ToArray();
        byte[] data = Nf4Codec.Quantize(values);
        Assert.Equal(64 + 2 + 4 + 4, data.Length);
        Assert.All(data[..32], b => Assert.Equal(0xFF, b));
        Assert.All(data[32..64], b => Assert.Equal(0x00, b));
        Assert.Equal(255, data[64]);
        Assert.Equal(0, data[65]);
        Assert.Equal(0.5f, BinaryPrimitives.ReadSingleLittleEndian(data.AsSpan(66)));
        Assert.Equal(1.5f, BinaryPrimitives.ReadSingleLittleEndian(data.AsSpan(70)));
        var back = new float[128];
        Nf4Codec.Dequantize(data, 128, back);
        Assert.All(back[..64], v => Assert.Equal(2f, v));
        Assert.All(back[64..], v => Assert.Equal(-(-0.99296875f * 0.5f + 1.5f), v));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(17)]
    [InlineData(1025)]
    [InlineData(64 * 257 + 3)]
    public void RoundTripErrorIsWithinHalfTheWidestCodeGap(int count)
    {
        var values = TestData.Gaussian(count, count, 0.02f);
        byte[] data = Nf4Codec.Quantize(values);
        Assert.Equal(Nf4Codec.ByteCount(count), data.Length);
        var back = new float[count];
        Nf4Codec.Dequantize(data, count, back);
        // Widest gap of the code book is 1 − 0.696 = 0.304: half of it times the block's absmax, plus the error of the
        // 8-bit absmax (half the widest dynamic-code gap near ±1, 0.9/64/2, times its 256-block scale).
        long blocks = Nf4Codec.BlockCount(count);
        var absmax = new float[blocks];
        for (int i = 0; i < count; i++) absmax[i / 64] = Math.Max(absmax[i / 64], Math.Abs(values[i]));
        float offset = (float)absmax.Average(a => (double)a);
        for (int i = 0; i < count; i++)
        {
            long b = i / 64, s = b / 256;
            float scale = 0;
            for (long j = s * 256; j < Math.Min(blocks, s * 256 + 256); j++) scale = Math.Max(scale, Math.Abs(absmax[j] - offset));
            double bound = 0.152 * absmax[b] + 0.00704 * scale * 1.0001 + 1e-7;
            Assert.True(Math.Abs(values[i] - back[i]) <= bound, $"value {i}: {values[i]} came back as {back[i]}, bound {bound}");
        }
    }

    [Fact]
    public void AllZeroBlocksComeBackAsZeros()
    {
        var values = new float[200];
        values[150] = 3f;
        var back = new float[200];
        Nf4Codec.Dequantize(Nf4Codec.Quantize(values), 200, back);
        Assert.All(back[..128], v => Assert.Equal(0f, v));
        Assert.Equal(3f, back[150], 3);
    }

    [Fact]
    public void DequantizeRangeEqualsTheSliceOfTheWhole()
    {
        const int count = 1025 * 3;
        byte[] data = Nf4Codec.Quantize(TestData.Gaussian(count, 5));
        var whole = new float[count];
        Nf4Codec.Dequantize(data, count, whole);
        foreach (var (start, length) in new[] { (0, 1), (1, 64), (63, 2), (65, 1025), (1025, 1025), (count - 1, 1), (0, count), (127, 0) })
        {
            var part = new float[length];
            Nf4Codec.DequantizeRange(data, count, start, part);
            Assert.Equal(whole.AsSpan(start, length).ToArray(), part);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => Nf4Codec.DequantizeRange(data, count, count - 1, new float[2]));
        Assert.Throws<ArgumentException>(() => Nf4Codec.Dequantize(data.AsSpan(1), count, new float[count]));
    }

    [Fact]
    public void BytesPerParameterOf4096Square()
    {
        long count = 4096L * 4096;
        double perParameter = Nf4Codec.ByteCount(count) / (double)count;
        output.WriteLine($"NF4 (double-quantised) 4096×4096: {Nf4Codec.ByteCount(count)} bytes, {perParameter:F4} bytes per parameter");
        Assert.True(perParameter <= 0.52, $"{perParameter} bytes per parameter");
        Assert.Equal(4096L * 4096 / 2 + 4096L * 4096 / 64 + 4 * (4096L * 4096 / 64 / 256) + 4, Nf4Codec.ByteCount(count));
    }
}
