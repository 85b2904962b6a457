using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Testing;

namespace EdgeTune.Formats.Tests;

public class GgufRoundTripTests
{
    internal static GgufMetadata EveryValueType()
    {
        var m = new GgufMetadata();
        m.Set("general.architecture", GgufValue.String("llama"));
        m.Set("t.u8", GgufValue.U8(200));
        m.Set("t.i8", GgufValue.I8(-100));
        m.Set("t.u16", GgufValue.U16(65000));
        m.Set("t.i16", GgufValue.I16(-32000));
        m.Set("t.u32", GgufValue.U32(4_000_000_000));
        m.Set("t.i32", GgufValue.I32(-2_000_000_000));
        m.Set("t.f32", GgufValue.F32(1e-5f));
        m.Set("t.f32.nan", GgufValue.F32(BitConverter.UInt32BitsToSingle(0x7fc00123)));
        m.Set("t.bool", GgufValue.Bool(true));
        m.Set("t.string", GgufValue.String("héllo, wörld ✓ {{ chat template }}"));
        m.Set("t.empty_string", GgufValue.String(""));
        m.Set("t.u64", GgufValue.U64(ulong.MaxValue));
        m.Set("t.i64", GgufValue.I64(long.MinValue));
        m.Set("t.f64", GgufValue.F64(Math.PI));
        m.Set("a.u8", GgufValue.Array(new byte[] { 1, 2, 255 }));
        m.Set("a.i8", GgufValue.Array(new sbyte[] { -1, 2 }));
        m.Set("a.u16", GgufValue.Array(new ushort[] { 1, 65535 }));
        m.Set("a.i16", GgufValue.Array(new short[] { -5, 5 }));
        m.Set("a.u32", GgufValue.Array(new uint[] { 7, 8, 9 }));
        m.Set("a.i32", GgufValue.Array(new[] { -7, 8 }));
        m.Set("a.f32", GgufValue.Array(new[] { 0.5f, -0f, float.PositiveInfinity }));
        m.Set("a.bool", GgufValue.Array(new[] { true, false, true }));
        m.Set("a.string", GgufValue.Array(new[] { "a", "", "▁the", "<0x0A>" }));
        m.Set("a.u64", GgufValue.Array(new ulong[] { 1UL << 40 }));
        m.Set("a.i64", GgufValue.Array(new long[] { -(1L << 40) }));
        m.Set("a.f64", GgufValue.Array(new[] { 1.0, double.Epsilon }));
        m.Set("a.empty", GgufValue.Array(System.Array.Empty<float>()));
        m.Set("a.nested", GgufValue.Array(new[]
        {
            GgufValue.Array(new[] { 1, 2 }),
            GgufValue.Array(new[] { "x", "y" }),
            GgufValue.Array(new[] { GgufValue.Array(new[] { 3.0 }) }),
        }));
        return m;
    }

    [Fact]
    public void Every_value_type_and_tensor_byte_survives_write_read_write_read()
    {
        using var dir = new TempDir();
        var writer = new GgufWriter();
        foreach (var (k, v) in EveryValueType()) writer.Metadata.Set(k, v);
        var rng = new Random(7);
        var blobs = new Dictionary<string, byte[]>();
        void Add(string name, GgmlType type, long[] shape)
        {
            var bytes = new byte[GgmlTypes.RowBytes(type, shape[0]) * shape.Skip(1).Aggregate(1L, (a, b) => a * b)];
            rng.NextBytes(bytes);
            blobs[name] = bytes;
            writer.AddTensor(name, type, shape, bytes);
        }
        Add("f32", GgmlType.F32, [3]);                 // 12 bytes: forces padding before the next tensor
        Add("q4k", GgmlType.Q4_K, [256, 3]);
        Add("q8", GgmlType.Q8_0, [64, 2, 3, 1]);
        Add("empty", GgmlType.F32, [0, 4]);
        writer.Write(dir.File("a.gguf"));

        using var first = GgufFile.Open(dir.File("a.gguf"));
        AssertSame(writer.Metadata, first.Metadata);
        Assert.Equal(3u, first.Version);
        Assert.Equal(["f32", "q4k", "q8", "empty"], first.Tensors.Select(t => t.Name));
        foreach (var t in first.Tensors)
        {
            Assert.Equal(0, t.Offset % 32);
            Assert.Equal(blobs[t.Name], first.GetData(t).AsSpan().ToArray());
        }

        // Write again from what was read, then read again: nothing may change.
        var again = new GgufWriter();
        foreach (var (k, v) in first.Metadata) again.Metadata.Set(k, v);
        foreach (var t in first.Tensors)
        {
            var data = first.GetData(t).AsSpan().ToArray();
            again.AddTensor(t.Name, t.Type, t.Shape, data);
        }
        again.Write(dir.File("b.gguf"));
        using var second = GgufFile.Open(dir.File("b.gguf"));
        AssertSame(first.Metadata, second.Metadata);
        foreach (var t in first.Tensors)
        {
            var u = second.GetTensor(t.Name);
            Assert.Equal(t.Shape, u.Shape);
            Assert.Equal(t.Type, u.Type);
            Assert.Equal(first.GetData(t).AsSpan().ToArray(), second.GetData(u).AsSpan().ToArray());
        }
        Assert.Equal(File.ReadAllBytes(dir.File("a.gguf")), File.ReadAllBytes(dir.File("b.gguf")));
    }

    [Fact]
    public void Custom_alignment_is_honoured()
    {
        using var dir = new TempDir();
        var writer = new GgufWriter();
        writer.Metadata.Set("general.alignment", GgufValue.U32(256));
        writer.AddTensor("a", GgmlType.F32, [5], new byte[20]);
        writer.AddTensor("b", GgmlType.F32, [5], new byte[20]);
        writer.Write(dir.File("x.gguf"));
        using var file = GgufFile.Open(dir.File("x.gguf"));
        Assert.Equal(256, file.Alignment);
        Assert.Equal(0, file.DataOffset % 256);
        Assert.Equal(256, file.GetTensor("b").Offset);
    }

    [Fact]
    public void Version_2_files_are_read()
    {
        using var dir = new TempDir();
        var writer = new GgufWriter();
        writer.Metadata.Set("general.architecture", GgufValue.String("llama"));
        writer.AddTensor("a", GgmlType.F32, [4], new byte[16]);
        writer.Write(dir.File("v3.gguf"));
        var bytes = File.ReadAllBytes(dir.File("v3.gguf"));
        bytes[4] = 2; // v2 differs from v3 only in the version number (both use 64-bit counts)
        File.WriteAllBytes(dir.File("v2.gguf"), bytes);
        using var file = GgufFile.Open(dir.File("v2.gguf"));
        Assert.Equal(2u, file.Version);
        Assert.Equal("llama", file.Architecture);
    }

    [Fact]
    public void A_failed_write_leaves_the_existing_file_alone()
    {
        using var dir = new TempDir();
        string path = dir.File("keep.gguf");
        File.WriteAllText(path, "precious");
        var writer = new GgufWriter();
        writer.AddTensor("short", GgmlType.F32, [4], s => s.Write(new byte[3]));
        var error = Assert.Throws<EdgeTuneException>(() => writer.Write(path));
        Assert.Contains("3 bytes were written, 16 expected", error.Message);
        Assert.Equal("precious", File.ReadAllText(path));
        Assert.Single(Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void Writer_refuses_what_llama_cpp_would_refuse()
    {
        var w = new GgufWriter();
        Assert.Throws<EdgeTuneException>(() => w.AddTensor(new string('x', 64), GgmlType.F32, [1], new byte[4]));
        Assert.Throws<EdgeTuneException>(() => w.AddTensor("q", GgmlType.Q4_0, [33], new byte[18]));
        Assert.Throws<EdgeTuneException>(() => w.AddTensor("five", GgmlType.F32, [1, 1, 1, 1, 1], new byte[4]));
        w.AddTensor("dup", GgmlType.F32, [1], new byte[4]);
        Assert.Throws<EdgeTuneException>(() => w.AddTensor("dup", GgmlType.F32, [1], new byte[4]));
    }

    internal static void AssertSame(GgufMetadata expected, GgufMetadata actual)
    {
        Assert.Equal(expected.Keys, actual.Keys);
        foreach (var (k, v) in expected)
        {
            var a = actual[k];
            Assert.True(v.Equals(a), $"key {k}: expected {v.Describe()} {v}, got {a.Describe()} {a}");
        }
    }
}
