using System.Text;
using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Testing;
using EdgeTune.Testing.Fuzz;

namespace EdgeTune.Formats.Tests;

/// <summary>Every malformed file must give one FileFormatException naming the file and the byte offset or key.</summary>
public class GgufBadInputTests
{
    private static FileFormatException OpenFails(byte[] bytes, string expected)
    {
        using var dir = new TempDir();
        string path = dir.File("bad.gguf");
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<FileFormatException>(() => GgufFile.Open(path).Dispose());
        Assert.StartsWith(path + ": ", e.Message);
        Assert.True(e.Message.Contains(expected, StringComparison.Ordinal), $"expected '{expected}' in: {e.Message}");
        Assert.DoesNotContain("\n", e.Message);
        return e;
    }

    [Fact]
    public void Not_gguf() => OpenFails(Encoding.ASCII.GetBytes("PK\x03\x04 a zip file"), "not a GGUF file");

    [Fact]
    public void Empty_file() => OpenFails([], "not a GGUF file");

    [Fact]
    public void Version_1_and_big_endian_are_refused()
    {
        OpenFails(new RawGguf(version: 1).ToArray(), "version 1 is not supported");
        OpenFails(new RawGguf(version: 0x03000000).ToArray(), "big-endian");
    }

    [Fact]
    public void Truncated_header_names_the_offset()
    {
        var bytes = new RawGguf(kvs: 1).Str("general.name").U32((uint)GgufValueType.String).Str("abc").ToArray();
        var e = OpenFails(bytes[..^2], "at byte 48");
        Assert.Contains("past the end of the file", e.Message);
    }

    [Fact]
    public void Absurd_counts_and_lengths_do_not_allocate()
    {
        OpenFails(new RawGguf(tensors: 1UL << 60).ToArray(), "tensor count is 1152921504606846976");
        OpenFails(new RawGguf(kvs: 1UL << 60).ToArray(), "metadata count");
        OpenFails(new RawGguf(kvs: 1).U64(1UL << 60).Zeros(16).ToArray(), "metadata key length 1152921504606846976 is past the end");
        var hugeArray = new RawGguf(kvs: 1).Str("a").U32((uint)GgufValueType.Array).U32((uint)GgufValueType.UInt32).U64(1UL << 60).ToArray();
        OpenFails(hugeArray, "array length of key 'a' is 1152921504606846976");
        var hugeStrings = new RawGguf(kvs: 1).Str("a").U32((uint)GgufValueType.Array).U32((uint)GgufValueType.String).U64(1UL << 40).ToArray();
        OpenFails(hugeStrings, "array length of key 'a'");
    }

    [Fact]
    public void A_key_name_with_a_line_break_stays_one_line_in_the_message() =>
        // Found by the fuzz: the message quoted the key as it was, line break included (OpenFails checks one line).
        OpenFails(new RawGguf(kvs: 1).Str("t.u\n").U32(0xFF000000).ToArray(), "key 't.u\\u000a' has unknown value type 4278190080");

    [Fact]
    public void Unknown_types_are_named()
    {
        OpenFails(new RawGguf(kvs: 1).Str("k").U32(13).ToArray(), "key 'k' has unknown value type 13");
        OpenFails(new RawGguf(kvs: 1).Str("k").U32(9).U32(42).U64(0).ToArray(), "array of unknown type 42");
        OpenFails(new RawGguf(tensors: 1).Tensor("w", [4], (GgmlType)77, 0).PadTo(32).Zeros(16).ToArray(), "unknown ggml type 77");
    }

    [Fact]
    public void Duplicates_are_refused()
    {
        var keys = new RawGguf(kvs: 2).Str("k").U32(4).U32(1).Str("k").U32(4).U32(2).ToArray();
        OpenFails(keys, "duplicate metadata key 'k'");
        var tensors = new RawGguf(tensors: 2).Tensor("w", [4], GgmlType.F32, 0).Tensor("w", [4], GgmlType.F32, 32).PadTo(32).Zeros(64).ToArray();
        OpenFails(tensors, "duplicate tensor name 'w'");
    }

    [Fact]
    public void Tensor_data_must_be_inside_the_file_aligned_and_disjoint()
    {
        OpenFails(new RawGguf(tensors: 1).Tensor("w", [8], GgmlType.F32, 0).PadTo(32).Zeros(16).ToArray(), "runs past the end of the file");
        OpenFails(new RawGguf(tensors: 1).Tensor("w", [4], GgmlType.F32, 1UL << 62).PadTo(32).Zeros(16).ToArray(), "runs past the end");
        OpenFails(new RawGguf(tensors: 1).Tensor("w", [4], GgmlType.F32, 4).PadTo(32).Zeros(32).ToArray(), "not aligned to 32 bytes");
        var overlap = new RawGguf(tensors: 2).Tensor("a", [16], GgmlType.F32, 0).Tensor("b", [4], GgmlType.F32, 32).PadTo(32).Zeros(64).ToArray();
        OpenFails(overlap, "overlaps");
        OpenFails(new RawGguf(tensors: 1).Tensor("w", [1L << 20, 1L << 20], GgmlType.F32, 0).PadTo(32).ToArray(), "runs past the end");
        OpenFails(new RawGguf(tensors: 1).Tensor("w", [1L << 62, 1L << 62], GgmlType.F32, 0).PadTo(32).ToArray(), "more elements than fit");
        OpenFails(new RawGguf(tensors: 1).Tensor("w", [-4], GgmlType.F32, 0).PadTo(32).ToArray(), "negative dimension");
        OpenFails(new RawGguf(tensors: 1).Tensor("w", [1, 1, 1, 1, 1], GgmlType.F32, 0).PadTo(32).Zeros(32).ToArray(), "5 dimensions");
        OpenFails(new RawGguf(tensors: 1).Tensor("w", [33], GgmlType.Q4_0, 0).PadTo(32).Zeros(64).ToArray(), "not a multiple of the q4_0 block size 32");
    }

    [Fact]
    public void Invalid_utf8_and_bad_alignment_values()
    {
        OpenFails(new RawGguf(kvs: 1).Bytes([0x66, 0xC3, 0x28]).U32(4).U32(1).ToArray(), "metadata key is not valid UTF-8");
        OpenFails(new RawGguf(kvs: 1).Str("general.alignment").U32(4).U32(48).ToArray(), "key 'general.alignment': 48 is not a power of two");
        OpenFails(new RawGguf(kvs: 1).Str("general.alignment").U32(5).I64(0).ToArray()[..^4], "key 'general.alignment'");
        OpenFails(new RawGguf(kvs: 1).Str("b").U32(7).Raw(2).ToArray(), "BOOL value 2");
    }

    /// <summary>
    /// A seeded slice of the GGUF fuzz (Testing/Fuzz; the full 10,000 and more: `EdgeTune.Benchmarks fuzz --format gguf`):
    /// the reader accepts a mutated file or refuses it with a FileFormatException naming the file and the place; no
    /// other exception, no hang, no allocation sized by a header.
    /// </summary>
    [Fact]
    public void Fuzzed_headers_either_open_or_fail_cleanly()
    {
        using var dir = new TempDir();
        var report = FuzzRunner.Run(FuzzTargets.Gguf(), count: 400, seed: 20261128, dir.Path);
        Assert.True(report.Failures.Count == 0, string.Join("\n", report.Failures));
        Assert.True(report.Refused > report.Count / 3 && report.Accepted > 1, report.Summary); // mutations inside string values still open
    }
}
