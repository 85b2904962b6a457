using EdgeTune.Core;

namespace EdgeTune.Core.Tests;

public class GgmlTypeTests
{
    [Theory]
    [InlineData(GgmlType.Q4_0, 32, 18)]
    [InlineData(GgmlType.Q8_0, 32, 34)]
    [InlineData(GgmlType.Q4_K, 256, 144)]
    [InlineData(GgmlType.Q6_K, 256, 210)]
    [InlineData(GgmlType.Q8_K, 256, 292)]
    [InlineData(GgmlType.BF16, 1, 2)]
    public void Block_geometry_matches_ggml(GgmlType type, int size, int bytes)
    {
        Assert.Equal(size, GgmlTypes.BlockSize(type));
        Assert.Equal(bytes, GgmlTypes.BlockBytes(type));
    }

    [Fact]
    public void Names_follow_ggml()
    {
        Assert.Equal("q4_K", GgmlTypes.Name(GgmlType.Q4_K));
        Assert.Equal("q8_0", GgmlTypes.Name(GgmlType.Q8_0));
        Assert.Equal("bf16", GgmlTypes.Name(GgmlType.BF16));
        Assert.Equal("type99", GgmlTypes.Name((GgmlType)99));
    }

    [Fact]
    public void Row_bytes_refuses_partial_blocks() =>
        Assert.Throws<ArgumentException>(() => GgmlTypes.RowBytes(GgmlType.Q4_K, 100));
}
