using System.Buffers.Binary;
using System.Text;
using EdgeTune.Core;
using EdgeTune.Core.Numerics;
using EdgeTune.Formats.Safetensors;
using EdgeTune.Testing;
using static EdgeTune.Formats.Tests.SafetensorsTestFiles;

namespace EdgeTune.Formats.Tests;

public class SafetensorsFileTests
{
    public static TheoryData<SafetensorsDType> AllDTypes()
    {
        var data = new TheoryData<SafetensorsDType>();
        foreach (var dtype in Enum.GetValues<SafetensorsDType>()) data.Add(dtype);
        return data;
    }

    [Theory]
    [MemberData(nameof(AllDTypes))]
    public void Round_trip_keeps_metadata_names_shapes_dtypes_and_bytes(SafetensorsDType dtype)
    {
        using var dir = new TempDir();
        string path = dir.File("model.safetensors");
        int size = dtype.Size();
        var tensors = new (string Name, long[] Shape, byte[] Data)[]
        {
            ("layers.0.weight", [3, 5], RandomBytes(1, 15 * size)),
            ("scalar", [], RandomBytes(2, size)),
            ("empty", [0, 7], []),
            ("vector", [9], RandomBytes(3, 9 * size)),
        };
        var writer = new SafetensorsWriter();
        writer.Metadata["format"] = "pt";
        writer.Metadata["note"] = "ünïcode \"quoted\"\n";
        foreach (var (name, shape, data) in tensors) writer.AddTensor(name, dtype, shape, data);
        writer.Write(path);

        using var file = SafetensorsFile.Open(path);
        Assert.Equal(writer.Metadata.OrderBy(p => p.Key), file.Metadata.OrderBy(p => p.Key));
        Assert.Equal(tensors.Select(t => t.Name).Order(StringComparer.Ordinal), file.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
        foreach (var (name, shape, data) in tensors)
        {
            var info = file.GetTensor(name);
            Assert.Equal(dtype, info.DType);
            Assert.Equal(shape, info.Shape);
            Assert.Equal(data.Length, info.ByteLength);
            Assert.Equal(data, file.GetBytes(name).ToArray());
            Assert.Equal(0, info.FileOffset % size); // the writer keeps data aligned to the element size
        }
    }

    [Fact]
    public void Writer_orders_tensors_by_alignment_then_name_and_keeps_them_aligned()
    {
        using var dir = new TempDir();
        string path = dir.File("mixed.safetensors");
        var writer = new SafetensorsWriter();
        writer.AddTensor("z", SafetensorsDType.U8, [3], new byte[3]);
        writer.AddTensor("b", SafetensorsDType.F16, [1], new byte[2]);
        writer.AddTensor("a", SafetensorsDType.BF16, [1], new byte[2]);
        writer.AddTensor("c", SafetensorsDType.F64, [1], new byte[8]);
        writer.AddTensor("d", SafetensorsDType.F32, [1], new byte[4]);
        writer.AddTensor("e", SafetensorsDType.F64, [1], new byte[8]);
        writer.AddTensor("bool", SafetensorsDType.BOOL, [1], new byte[1]);
        writer.Write(path);

        using var file = SafetensorsFile.Open(path);
        Assert.Equal(["c", "e", "d", "a", "b", "z", "bool"], file.Tensors.Select(t => t.Name));
        Assert.All(file.Tensors, t => Assert.Equal(0, t.FileOffset % t.DType.Size()));
        Assert.Equal(0, (file.Tensors[0].FileOffset) % 8);
    }

    [Fact]
    public void Reads_bytes_as_the_python_library_writes_them_and_writes_the_same_bytes()
    {
        // safetensors.serialize({"attn.0": f32 [1,2,3] = 0..5}): a 64-byte header, no padding needed.
        byte[] data = Floats(0, 1, 2, 3, 4, 5);
        string json = "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}";
        Assert.Equal(64, json.Length);
        byte[] expected = Build(json, data);
        AssertReadAndWrittenAlike(expected, w => w.AddTensor("attn.0", SafetensorsDType.F32, [1, 2, 3], data));

        // "attn0" is one byte shorter: 7 spaces pad the header to 72 bytes.
        json = "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}       ";
        Assert.Equal(72, json.Length);
        expected = Build(json, data);
        AssertReadAndWrittenAlike(expected, w => w.AddTensor("attn0", SafetensorsDType.F32, [1, 1, 2, 3], data));

        // No tensors, metadata {"framework": "pt"}: 35 bytes of JSON and 5 spaces.
        expected = Build("{\"__metadata__\":{\"framework\":\"pt\"}}", []);
        Assert.Equal(48, expected.Length);
        AssertReadAndWrittenAlike(expected, w => w.Metadata["framework"] = "pt");

        // Several dtypes: the Python library puts the widest first, BF16 before F16, then by name.
        byte[] f64 = RandomBytes(1, 16), f32 = RandomBytes(2, 4), bf16 = RandomBytes(3, 6), f16 = RandomBytes(4, 2), u8 = RandomBytes(5, 3);
        expected = Build(
            "{\"__metadata__\":{\"format\":\"pt\"}," +
            "\"w\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}," +
            "\"b\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[16,20]}," +
            "\"x\":{\"dtype\":\"BF16\",\"shape\":[3,1],\"data_offsets\":[20,26]}," +
            "\"a\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[26,28]}," +
            "\"q\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[28,31]}}",
            [.. f64, .. f32, .. bf16, .. f16, .. u8]);
        AssertReadAndWrittenAlike(expected, w =>
        {
            w.Metadata["format"] = "pt";
            w.AddTensor("a", SafetensorsDType.F16, [1], f16);
            w.AddTensor("q", SafetensorsDType.U8, [3], u8);
            w.AddTensor("x", SafetensorsDType.BF16, [3, 1], bf16);
            w.AddTensor("b", SafetensorsDType.F32, [], f32);
            w.AddTensor("w", SafetensorsDType.F64, [2], f64);
        });
    }

    private static void AssertReadAndWrittenAlike(byte[] expected, Action<SafetensorsWriter> describe)
    {
        using var dir = new TempDir();
        string handMade = dir.File("python.safetensors"), ours = dir.File("ours.safetensors");
        File.WriteAllBytes(handMade, expected);
        var writer = new SafetensorsWriter();
        describe(writer);
        writer.Write(ours);
        Assert.Equal(expected, File.ReadAllBytes(ours));

        using var file = SafetensorsFile.Open(handMade);
        Assert.Equal(writer.Count, file.Tensors.Count);
        Assert.Equal(writer.Metadata.Count, file.Metadata.Count);
    }

    [Fact]
    public void Reads_headers_in_any_order_with_whitespace_padding_and_unknown_fields()
    {
        byte[] a = Floats(1, 2), b = Floats(3);
        string json = "{\n  \"b\": {\"data_offsets\": [8, 12], \"shape\": [1], \"dtype\": \"F32\", \"extra\": {\"x\": [1, 2]}},\n" +
                      "\t\"a\" : { \"dtype\" : \"F32\" , \"shape\" : [ 2 ] , \"data_offsets\" : [ 0 , 8 ] }\r\n}";
        using var dir = new TempDir();
        string path = dir.File("loose.safetensors");
        File.WriteAllBytes(path, Build(json, [.. a, .. b], padTo: 16));

        using var file = SafetensorsFile.Open(path);
        Assert.Equal(["a", "b"], file.Tensors.Select(t => t.Name)); // file (data) order, not header order
        Assert.Empty(file.Metadata);
        var values = new float[2];
        file.ReadAsFloat32("a", values);
        Assert.Equal([1f, 2f], values);
        Assert.Equal(8, file.GetTensor("b").DataOffset);
        int headerLength = (Encoding.UTF8.GetByteCount(json) + 15) / 16 * 16;
        Assert.Equal(8 + headerLength + 8, file.GetTensor("b").FileOffset);
    }

    [Fact]
    public void ReadAsFloat32_converts_float_dtypes_and_reads_in_pieces()
    {
        float[] values = [0f, 1f, -2.5f, 65504f, 1e-3f, float.NegativeInfinity];
        var f16 = new byte[values.Length * 2];
        Fp16.FromFloatRow(values, f16);
        var bf16 = new byte[values.Length * 2];
        BFloat16.FromFloatRow(values, bf16);
        var f64 = new byte[values.Length * 8];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteDoubleLittleEndian(f64.AsSpan(i * 8), values[i]);

        using var dir = new TempDir();
        string path = dir.File("floats.safetensors");
        var writer = new SafetensorsWriter();
        writer.AddTensor("f32", SafetensorsDType.F32, [2, 3], Floats(values));
        writer.AddTensor("f16", SafetensorsDType.F16, [2, 3], f16);
        writer.AddTensor("bf16", SafetensorsDType.BF16, [2, 3], bf16);
        writer.AddTensor("f64", SafetensorsDType.F64, [2, 3], f64);
        writer.AddTensor("i32", SafetensorsDType.I32, [1], new byte[4]);
        writer.Write(path);

        using var file = SafetensorsFile.Open(path);
        var result = new float[values.Length];
        file.ReadAsFloat32("f32", result);
        Assert.Equal(values, result);
        file.ReadAsFloat32("f64", result);
        Assert.Equal(values, result);
        file.ReadAsFloat32("f16", result);
        for (int i = 0; i < values.Length; i++) Assert.Equal(Fp16.ToFloat(Fp16.FromFloat(values[i])), result[i]);
        file.ReadAsFloat32("bf16", result);
        for (int i = 0; i < values.Length; i++) Assert.Equal(BFloat16.ToFloat(BFloat16.FromFloat(values[i])), result[i]);

        var piece = new float[2];
        file.ReadAsFloat32("f64", 2, piece);
        Assert.Equal([-2.5f, 65504f], piece);
        Assert.Throws<ArgumentOutOfRangeException>(() => file.ReadAsFloat32("f32", 5, piece));
        Assert.Throws<ArgumentException>(() => file.ReadAsFloat32("f32", new float[5]));
        var e = Assert.Throws<EdgeTuneException>(() => file.ReadAsFloat32("i32", new float[1]));
        Assert.Contains("I32", e.Message);
        var missing = Assert.Throws<FileFormatException>(() => file.GetBytes("nope"));
        Assert.Contains("key 'nope'", missing.Message);
    }

    [Fact]
    public void Tensors_over_2_GiB_are_reachable_through_64_bit_accessors()
    {
        // A sparse 3 GB file: the tensor bytes are never written, so this costs no disk, and opening must not
        // read them: it allocates no more than the header needs.
        const long big = 3_000_000_000;
        string json = $"{{\"big\":{{\"dtype\":\"F32\",\"shape\":[{big / 4}],\"data_offsets\":[0,{big}]}}," +
                      $"\"tail\":{{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[{big},{big + 8}]}}}}";
        byte[] header = Build(json, []);
        using var dir = new TempDir();
        string path = dir.File("big.safetensors");
        using (var stream = new FileStream(path, FileMode.CreateNew))
        {
            stream.Write(header);
            stream.SetLength(header.Length + big + 8);
            stream.Position = header.Length + big;
            stream.Write(Floats(7, 8));
        }

        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        using var file = SafetensorsFile.Open(path);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
        Assert.True(allocated < 1 << 20, $"Open allocated {allocated} bytes");

        var data = file.GetData("big");
        Assert.Equal(big, data.Length);
        var e = Assert.Throws<InvalidOperationException>(() => file.GetBytes("big"));
        Assert.Contains("'big'", e.Message);
        using (var stream = file.OpenRead("big")) Assert.Equal(big, stream.Length);
        Assert.Equal(new byte[16].AsSpan(), data.Slice(big - 16, 16));

        var last = new float[4];
        file.ReadAsFloat32("big", big / 4 - 4, last);
        Assert.Equal(new float[4], last);
        var tail = new float[2];
        file.ReadAsFloat32("tail", tail);
        Assert.Equal([7f, 8f], tail);
    }

    [Fact]
    public void Writer_checks_callback_lengths_and_a_failed_write_keeps_the_old_file()
    {
        using var dir = new TempDir();
        string path = dir.File("keep.safetensors");
        File.WriteAllText(path, "previous content");

        var tooShort = new SafetensorsWriter();
        tooShort.AddTensor("a", SafetensorsDType.F32, [4], s => s.Write(new byte[12]));
        var e = Assert.Throws<InvalidOperationException>(() => tooShort.Write(path));
        Assert.Contains("'a'", e.Message);
        Assert.Contains("12", e.Message);

        var tooLong = new SafetensorsWriter();
        tooLong.AddTensor("b", SafetensorsDType.I16, [2], s => s.Write(new byte[5]));
        Assert.Throws<InvalidOperationException>(() => tooLong.Write(path));

        var throwing = new SafetensorsWriter();
        throwing.AddTensor("c", SafetensorsDType.U8, [1], _ => throw new IOException("source vanished"));
        Assert.Throws<IOException>(() => throwing.Write(path));

        Assert.Equal("previous content", File.ReadAllText(path));
        Assert.Equal([path], Directory.GetFiles(dir.Path)); // no temporary files left behind
    }

    [Fact]
    public void Writer_streams_each_tensor_through_its_callback_in_pieces()
    {
        using var dir = new TempDir();
        string path = dir.File("streamed.safetensors");
        var writer = new SafetensorsWriter();
        writer.AddTensor("w", SafetensorsDType.F32, [1000], stream =>
        {
            for (int i = 0; i < 1000; i++) stream.Write(Floats(i));
        });
        writer.Write(path);
        using var file = SafetensorsFile.Open(path);
        var values = new float[1000];
        file.ReadAsFloat32("w", values);
        Assert.Equal(Enumerable.Range(0, 1000).Select(i => (float)i), values);
    }

    [Fact]
    public void Writer_refuses_bad_descriptors()
    {
        var writer = new SafetensorsWriter();
        writer.AddTensor("a", SafetensorsDType.U8, [1], new byte[1]);
        Assert.Throws<ArgumentException>(() => writer.AddTensor("a", SafetensorsDType.U8, [1], new byte[1]));
        Assert.Throws<ArgumentException>(() => writer.AddTensor("__metadata__", SafetensorsDType.U8, [1], new byte[1]));
        Assert.Throws<ArgumentException>(() => writer.AddTensor("neg", SafetensorsDType.U8, [-1], _ => { }));
        Assert.Throws<ArgumentException>(() => writer.AddTensor("huge", SafetensorsDType.F64, [1L << 62], _ => { }));
        Assert.Throws<ArgumentException>(() => writer.AddTensor("short", SafetensorsDType.F32, [2], new byte[7]));
        Assert.Throws<ArgumentException>(() => writer.AddTensor("bad\ud800", SafetensorsDType.U8, [1], new byte[1]));
    }

    [Fact]
    public void Names_with_escapes_and_non_ascii_round_trip()
    {
        using var dir = new TempDir();
        string path = dir.File("names.safetensors");
        string[] names = ["tab\there", "quote\"back\\slash", "ünï😀", "new\nline", "\u0001ctl"];
        var writer = new SafetensorsWriter();
        foreach (string name in names) writer.AddTensor(name, SafetensorsDType.U8, [1], new byte[1]);
        writer.Write(path);
        using var file = SafetensorsFile.Open(path);
        Assert.Equal(names.Order(StringComparer.Ordinal), file.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
        string header = Encoding.UTF8.GetString(File.ReadAllBytes(path).AsSpan(8, (int)BinaryPrimitives.ReadUInt64LittleEndian(File.ReadAllBytes(path))));
        Assert.Contains("ünï😀", header); // serde_json leaves non-ASCII unescaped; so do we
        Assert.Contains("\\u0001ctl", header);
    }
}
