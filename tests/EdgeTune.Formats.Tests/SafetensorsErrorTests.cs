using System.Buffers.Binary;
using System.Text;
using EdgeTune.Core;
using EdgeTune.Formats.Safetensors;
using EdgeTune.Testing;
using static EdgeTune.Formats.Tests.SafetensorsTestFiles;

namespace EdgeTune.Formats.Tests;

/// <summary>Each malformed file gives a one-line FileFormatException naming the file and the place.</summary>
public class SafetensorsErrorTests
{
    private static string Tensor(string name, string dtype, string shape, long begin, long end) =>
        $"\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":[{begin},{end}]}}";

    private static FileFormatException Fails(string json, int dataBytes) => AssertOpenFails(Build(json, new byte[dataBytes]));

    [Fact]
    public void File_shorter_than_the_length_prefix()
    {
        var e = AssertOpenFails([1, 0, 0]);
        Assert.Contains("at byte 0", e.Message);
        Assert.Contains("3 bytes", e.Message);
        AssertOpenFails([]);
    }

    [Fact]
    public void Absurd_header_length_fails_without_allocating_for_it()
    {
        byte[] content = Build("{}", [], headerLengthOverride: 1UL << 60);
        using var dir = new TempDir();
        string path = dir.File("huge.safetensors");
        File.WriteAllBytes(path, content);

        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<FileFormatException>(() => SafetensorsFile.Open(path));
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Contains("huge.safetensors: at byte 0:", e.Message);
        Assert.Contains((1UL << 60).ToString(), e.Message);
        Assert.True(allocated < 1_000_000, $"{allocated} bytes allocated");
        AssertOpenFails(Build("{}", [], headerLengthOverride: ulong.MaxValue));
    }

    [Fact]
    public void Header_length_past_the_end_of_the_file()
    {
        byte[] content = Build("{}", [], headerLengthOverride: 9); // the file holds 8 header bytes
        var e = AssertOpenFails(content);
        Assert.Contains("at byte 0", e.Message);
        Assert.Contains("past the end", e.Message);
    }

    [Fact]
    public void Header_not_utf8_reports_the_bad_byte()
    {
        byte[] json = [.. "{\"ab"u8, 0xff, .. "\":{}}"u8];
        var e = AssertOpenFails(Build(json, []));
        Assert.Contains("at byte 12", e.Message); // 8 + position 4
        Assert.Contains("UTF-8", e.Message);
    }

    [Theory]
    [InlineData("{\"a\":{\"dtype\":\"F32\",,\"shape\":[]}}", ",,")]
    [InlineData("{\n  \"a\": {\n    \"dtype\": \"F32\",\n    \"shape\": [1 2]\n  }\n}", "2]")]
    [InlineData("{} x", "x")]
    [InlineData("{\"a\":", "")]
    public void Invalid_json_reports_the_file_offset(string json, string at)
    {
        var e = Fails(json, 0);
        // An empty marker means the text ends early: the error is at the end of the space-padded header.
        int position = at.Length == 0 ? (json.Length + 7) / 8 * 8 : json.IndexOf(at, StringComparison.Ordinal) + (at == ",," ? 1 : 0);
        Assert.Contains($"at byte {8 + position}:", e.Message);
        Assert.Contains("invalid JSON", e.Message);
    }

    [Fact]
    public void Empty_header_and_non_object_header()
    {
        Assert.Contains("at byte 8", AssertOpenFails(Build("", [])).Message);
        Assert.Contains("JSON object", Fails("[1, 2]", 0).Message);
        Assert.Contains("key 'a'", Fails("{\"a\": 3}", 0).Message);
    }

    [Fact]
    public void Unknown_dtype()
    {
        var e = Fails("{" + Tensor("w", "F17", "[1]", 0, 4) + "}", 4);
        Assert.Contains("key 'w'", e.Message);
        Assert.Contains("unknown dtype 'F17'", e.Message);
        Assert.Contains("key 'w'", Fails("{" + Tensor("w", "f32", "[1]", 0, 4) + "}", 4).Message); // case matters
    }

    [Fact]
    public void Negative_fractional_or_overflowing_shapes()
    {
        Assert.Contains("key 'w'", Fails("{" + Tensor("w", "F32", "[-1]", 0, 0) + "}", 0).Message);
        Assert.Contains("key 'w'", Fails("{" + Tensor("w", "F32", "[1.5]", 0, 0) + "}", 0).Message);
        Assert.Contains("key 'w'", Fails("{" + Tensor("w", "F32", "[\"2\"]", 0, 0) + "}", 0).Message);
        Assert.Contains("key 'w'", Fails("{" + Tensor("w", "F32", "[99999999999999999999]", 0, 0) + "}", 0).Message);
        var e = Fails("{" + Tensor("w", "F32", "[4294967296,4294967296]", 0, 0) + "}", 0);
        Assert.Contains("key 'w'", e.Message);
        Assert.Contains("64-bit", e.Message);
        // Fits in elements but not in bytes.
        Assert.Contains("key 'w'", Fails("{" + Tensor("w", "F64", "[2305843009213693952]", 0, 0) + "}", 0).Message);
    }

    [Fact]
    public void Data_offsets_end_before_begin_past_the_buffer_or_of_the_wrong_length()
    {
        var e = Fails("{" + Tensor("w", "U8", "[0]", 4, 0) + "}", 4);
        Assert.Contains("key 'w'", e.Message);
        Assert.Contains("before begin", e.Message);

        e = Fails("{" + Tensor("w", "F32", "[2]", 0, 8) + "}", 4);
        Assert.Contains("key 'w'", e.Message);
        Assert.Contains("past the end", e.Message);

        e = Fails("{" + Tensor("w", "F32", "[2]", 0, 4) + "}", 4);
        Assert.Contains("key 'w'", e.Message);
        Assert.Contains("needs 8", e.Message);

        Assert.Contains("key 'w'", Fails("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 1).Message);
        Assert.Contains("key 'w'", Fails("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 1).Message);
    }

    [Fact]
    public void Missing_and_duplicate_fields()
    {
        Assert.Contains("missing 'dtype'", Fails("{\"w\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1).Message);
        Assert.Contains("missing 'shape'", Fails("{\"w\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1).Message);
        Assert.Contains("missing 'data_offsets'", Fails("{\"w\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1).Message);
        Assert.Contains("duplicate field 'dtype'", Fails("{\"w\":{\"dtype\":\"U8\",\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1).Message);
    }

    [Fact]
    public void Duplicate_tensor_names()
    {
        // System.Text.Json's deserializer would keep the second and leave a hole; the header must be refused.
        var e = Fails("{" + Tensor("w", "U8", "[2]", 0, 2) + "," + Tensor("w", "U8", "[2]", 2, 4) + "}", 4);
        Assert.Contains("key 'w'", e.Message);
        Assert.Contains("duplicate tensor name", e.Message);
        // Equal once unescaped is still a duplicate.
        e = Fails("{" + Tensor("w", "U8", "[2]", 0, 2) + "," + Tensor("\\u0077", "U8", "[2]", 2, 4) + "}", 4);
        Assert.Contains("duplicate tensor name", e.Message);
        Assert.Contains("duplicate __metadata__", Fails("{\"__metadata__\":{},\"__metadata__\":{}}", 0).Message);
    }

    [Fact]
    public void Overlapping_tensors()
    {
        var e = Fails("{" + Tensor("a", "U8", "[4]", 0, 4) + "," + Tensor("b", "U8", "[4]", 2, 6) + "}", 6);
        Assert.Contains("key 'b'", e.Message);
        Assert.Contains("overlap tensor 'a'", e.Message);
        // Two tensors over the same bytes.
        Assert.Contains("overlap", Fails("{" + Tensor("a", "U8", "[4]", 0, 4) + "," + Tensor("b", "U8", "[4]", 0, 4) + "}", 4).Message);
    }

    [Fact]
    public void Holes_between_before_or_after_tensors()
    {
        var e = Fails("{" + Tensor("a", "U8", "[2]", 0, 2) + "," + Tensor("b", "U8", "[2]", 4, 6) + "}", 6);
        Assert.Contains("key 'b'", e.Message);
        Assert.Contains("belong to no tensor", e.Message);

        Assert.Contains("key 'a'", Fails("{" + Tensor("a", "U8", "[2]", 1, 3) + "}", 3).Message);

        // Trailing bytes: the place is the file offset where the stray bytes start (8 + 56 + 2).
        string json = "{" + Tensor("a", "U8", "[2]", 0, 2) + "}";
        Assert.Equal(53, json.Length);
        e = Fails(json, 5);
        Assert.Contains("at byte 66:", e.Message);
        Assert.Contains("3 bytes after the last tensor", e.Message);

        Assert.Contains("at byte 16:", Fails("{}", 1).Message);
    }

    [Fact]
    public void Metadata_values_must_be_strings()
    {
        var e = Fails("{\"__metadata__\":{\"format\":\"pt\",\"epoch\":3}}", 0);
        Assert.Contains("key '__metadata__.epoch'", e.Message);
        Assert.Contains("must be strings", e.Message);
        Assert.Contains("key '__metadata__'", Fails("{\"__metadata__\":[\"pt\"]}", 0).Message);
        Assert.Contains("duplicate metadata key", Fails("{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}", 0).Message);
    }

    [Fact]
    public void Escapes_that_spell_invalid_unicode()
    {
        var e = Fails("{\"\\ud800\":{}}", 0);
        Assert.Contains("at byte 9:", e.Message);
    }

    [Fact]
    public void Control_characters_in_names_stay_out_of_the_one_line_message()
    {
        var e = Fails("{" + Tensor("a\\nb", "Q4", "[1]", 0, 1) + "}", 1);
        Assert.Contains("key 'a\\u000ab'", e.Message);
    }

    [Fact]
    public void Missing_file_is_a_user_facing_error()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<EdgeTuneException>(() => SafetensorsFile.Open(dir.File("absent.safetensors")));
        Assert.Contains("absent.safetensors", e.Message);
    }
}
