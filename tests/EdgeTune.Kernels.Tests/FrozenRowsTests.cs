using System.Runtime.InteropServices;
using EdgeTune.Core;
using EdgeTune.Core.Quantization;

namespace EdgeTune.Kernels.Tests;

public class FrozenRowsTests
{
    [Theory]
    [InlineData(FrozenFormat.Q8_0, 3, 64)]
    [InlineData(FrozenFormat.Q4_0, 2, 96)]
    [InlineData(FrozenFormat.Q4_K, 3, 256)]
    public void GgufRowsAreCoreCodecRows(FrozenFormat format, int rows, int cols)
    {
        var type = format switch { FrozenFormat.Q8_0 => GgmlType.Q8_0, FrozenFormat.Q4_0 => GgmlType.Q4_0, _ => GgmlType.Q4_K };
        var values = TestData.Gaussian(rows * cols, 3);
        long rowBytes = GgmlTypes.RowBytes(type, cols);
        var data = new byte[rows * rowBytes];
        for (int r = 0; r < rows; r++)
            QuantCodecs.Quantize(type, values.AsSpan(r * cols, cols), data.AsSpan((int)(r * rowBytes), (int)rowBytes));
        Assert.Equal(data.Length, FrozenRows.ByteCount(format, rows, cols));
        for (int r = 0; r < rows; r++)
        {
            var expected = new float[cols];
            QuantCodecs.Dequantize(type, data.AsSpan((int)(r * rowBytes), (int)rowBytes), expected);
            var actual = new float[cols];
            FrozenRows.DequantizeRow(format, data, rows, r, cols, actual);
            Assert.Equal(expected, actual);
            for (int i = 0; i < cols; i++) Assert.Equal(values[r * cols + i], actual[i], 0.5);
        }
    }

    [Fact]
    public void F32AndNf4Rows()
    {
        int rows = 3, cols = 17;
        var values = TestData.Gaussian(rows * cols, 4);
        var f32 = MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
        var nf4 = Nf4Codec.Quantize(values);
        var whole = new float[rows * cols];
        Nf4Codec.Dequantize(nf4, rows * cols, whole);
        Assert.Equal(nf4.Length, FrozenRows.ByteCount(FrozenFormat.Nf4, rows, cols));
        for (int r = 0; r < rows; r++)
        {
            var row = new float[cols];
            FrozenRows.DequantizeRow(FrozenFormat.F32, f32, rows, r, cols, row);
            Assert.Equal(values.AsSpan(r * cols, cols).ToArray(), row);
            FrozenRows.DequantizeRow(FrozenFormat.Nf4, nf4, rows, r, cols, row);
            Assert.Equal(whole.AsSpan(r * cols, cols).ToArray(), row);
        }
    }

    [Fact]
    public void GgufColsMustBeWholeBlocks()
    {
        var error = Assert.Throws<ArgumentException>(() => FrozenRows.ByteCount(FrozenFormat.Q4_K, 2, 300));
        Assert.Contains("256", error.Message);
        Assert.Contains("cols=300", error.Message);
        Assert.Throws<ArgumentException>(() => FrozenRows.Validate(FrozenFormat.Q8_0, 1, 33));
        FrozenRows.Validate(FrozenFormat.Nf4, 1, 33);
    }
}
