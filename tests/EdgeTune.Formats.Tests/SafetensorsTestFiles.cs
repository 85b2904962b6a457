using System.Buffers.Binary;
using System.Text;
using EdgeTune.Core;

namespace EdgeTune.Formats.Tests;

/// <summary>Builds safetensors files byte by byte, the way the format spells them, for tests.</summary>
internal static class SafetensorsTestFiles
{
    /// <summary>u64 little-endian header length, the header text padded with spaces to padTo, then the data.</summary>
    public static byte[] Build(string headerJson, byte[] data, int padTo = 8, ulong? headerLengthOverride = null)
    {
        byte[] json = Encoding.UTF8.GetBytes(headerJson);
        return Build(json, data, padTo, headerLengthOverride);
    }

    public static byte[] Build(byte[] json, byte[] data, int padTo = 8, ulong? headerLengthOverride = null)
    {
        int headerLength = (json.Length + padTo - 1) / padTo * padTo;
        var file = new byte[8 + headerLength + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, headerLengthOverride ?? (ulong)headerLength);
        json.CopyTo(file, 8);
        file.AsSpan(8 + json.Length, headerLength - json.Length).Fill((byte)' ');
        data.CopyTo(file, 8 + headerLength);
        return file;
    }

    public static byte[] Floats(params float[] values)
    {
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), values[i]);
        return bytes;
    }

    public static byte[] RandomBytes(int seed, int count)
    {
        var bytes = new byte[count];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    /// <summary>Asserts that opening the bytes as a file fails with a one-line FileFormatException naming the file.</summary>
    public static FileFormatException AssertOpenFails(byte[] content, string fileName = "bad.safetensors")
    {
        using var dir = new Testing.TempDir();
        string path = dir.File(fileName);
        File.WriteAllBytes(path, content);
        var e = Assert.Throws<FileFormatException>(() => Formats.Safetensors.SafetensorsFile.Open(path).Dispose());
        Assert.Contains(fileName, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        return e;
    }
}
