using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Testing;

namespace EdgeTune.Formats.Tests;

/// <summary>Multi-gigabyte files: a sparse 15 GB GGUF costs no disk here, and must open without reading its data.</summary>
public class GgufLargeFileTests
{
    [Fact]
    public void A_15_GB_file_opens_and_tensors_over_2_GB_are_addressable()
    {
        using var dir = new TempDir();
        string path = dir.File("huge.gguf");
        const long big = 3L << 30;                 // a 3 GiB F32 tensor: more than a span can hold
        const long q8Rows = (12L << 30) / (128 * 34); // ~12 GiB of Q8_0 rows of 4096 values
        long q8Bytes = q8Rows * 128 * 34;
        long q8Offset = big, tailOffset = GgufFile.AlignUp(big + q8Bytes, 32);
        var header = new RawGguf(tensors: 3, kvs: 0)
            .Tensor("big", [big / 4 / 1024, 1024], GgmlType.F32, 0)
            .Tensor("q8", [4096, q8Rows], GgmlType.Q8_0, (ulong)q8Offset)
            .Tensor("tail", [4], GgmlType.F32, (ulong)tailOffset)
            .PadTo(32)
            .ToArray();
        using (var f = new FileStream(path, FileMode.Create))
        {
            f.Write(header);
            f.SetLength(header.Length + tailOffset + 16); // the rest is a hole: it reads as zeros
            f.Position = header.Length + tailOffset;
            f.Write(BitConverter.GetBytes(1.5f));
        }

        Assert.True(new FileInfo(path).Length > 15_000_000_000);
        using var file = GgufFile.Open(path);
        var bigTensor = file.GetTensor("big");
        var data = file.GetData(bigTensor);
        Assert.Equal(big, data.Length);
        Assert.Throws<InvalidOperationException>(() => data.AsSpan());
        Assert.Equal(new byte[16], data.Span(big - 16, 16).ToArray());
        Assert.Equal(q8Bytes, file.GetTensor("q8").ByteLength);
        var tail = new float[4];
        file.ReadRows(file.GetTensor("tail"), 0, tail);
        Assert.Equal([1.5f, 0, 0, 0], tail);
    }
}
