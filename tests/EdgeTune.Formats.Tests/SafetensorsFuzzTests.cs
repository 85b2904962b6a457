using System.Buffers.Binary;
using EdgeTune.Core;
using EdgeTune.Formats.Safetensors;
using EdgeTune.Testing;
using static EdgeTune.Formats.Tests.SafetensorsTestFiles;

namespace EdgeTune.Formats.Tests;

public class SafetensorsFuzzTests
{
    /// <summary>Bytes that turn one valid JSON shape into another, more often than random bytes do.</summary>
    private static readonly byte[] Interesting = "{}[]\",:-0123456789 eE.\\u\n"u8.ToArray().Concat(new byte[] { 0, 0x7f, 0x80, 0xc3, 0xff }).ToArray();

    private static byte[] ValidFile()
    {
        using var dir = new TempDir();
        string path = dir.File("seed.safetensors");
        var writer = new SafetensorsWriter();
        writer.Metadata["format"] = "pt";
        writer.Metadata["source"] = "fuzz";
        writer.AddTensor("a.weight", SafetensorsDType.F32, [2, 3], RandomBytes(1, 24));
        writer.AddTensor("b.bias", SafetensorsDType.F16, [3], RandomBytes(2, 6));
        writer.AddTensor("c", SafetensorsDType.BF16, [1, 2], RandomBytes(3, 4));
        writer.AddTensor("d", SafetensorsDType.F64, [], RandomBytes(4, 8));
        writer.AddTensor("e", SafetensorsDType.I8, [5], RandomBytes(5, 5));
        writer.AddTensor("empty", SafetensorsDType.I64, [0], Array.Empty<byte>());
        writer.Write(path);
        return File.ReadAllBytes(path);
    }

    [Fact]
    public void Mutated_headers_open_or_fail_with_FileFormatException_only()
    {
        byte[] valid = ValidFile();
        int headerEnd = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(valid);
        var random = new Random(20240611);
        using var dir = new TempDir();
        string path = dir.File("fuzz.safetensors");
        int opened = 0, refused = 0;

        for (int iteration = 0; iteration < 3000; iteration++)
        {
            byte[] content = Mutate(valid, headerEnd, random);
            Overwrite(path, content);
            try
            {
                using var file = SafetensorsFile.Open(path);
                // Whatever the header claimed, every accessor must stay inside the file.
                foreach (var tensor in file.Tensors)
                {
                    _ = file.GetBytes(tensor.Name).ToArray();
                    if (tensor.DType is SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16 or SafetensorsDType.F64)
                        file.ReadAsFloat32(tensor.Name, new float[tensor.ElementCount]);
                }
                opened++;
            }
            catch (FileFormatException e)
            {
                Assert.DoesNotContain('\n', e.Message);
                Assert.StartsWith(path + ": ", e.Message);
                refused++;
            }
            catch (Exception e)
            {
                Assert.Fail($"iteration {iteration}: {e.GetType().Name}: {e.Message}\nfile bytes: {Convert.ToHexString(content)}");
            }
        }

        Assert.True(opened > 0 && refused > 0, $"opened {opened}, refused {refused}");
    }

    /// <summary>
    /// Rewrites the file in place. File.WriteAllBytes truncates to zero first, which ext4 answers by flushing
    /// on close (auto_da_alloc) and makes each iteration 40 times slower.
    /// </summary>
    private static void Overwrite(string path, byte[] content)
    {
        using var stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.Write, FileShare.None, bufferSize: 1);
        stream.Write(content);
        stream.SetLength(content.Length);
    }

    private static byte[] Mutate(byte[] valid, int headerEnd, Random random)
    {
        var bytes = new List<byte>(valid);
        int mutations = random.Next(1, 4);
        for (int m = 0; m < mutations; m++)
        {
            int end = Math.Min(headerEnd, bytes.Count);
            if (end <= 8) break;
            int at = random.Next(8, end);
            switch (random.Next(8))
            {
                case 0: bytes[at] ^= (byte)(1 << random.Next(8)); break;
                case 1: bytes[at] = Interesting[random.Next(Interesting.Length)]; break;
                case 2: bytes[at] = (byte)random.Next(256); break;
                case 3: TruncateTo(bytes, random.Next(0, bytes.Count)); break;
                case 4: bytes.RemoveAt(at); break;
                case 5: bytes.Insert(at, Interesting[random.Next(Interesting.Length)]); break;
                case 6: SetHeaderLength(bytes, random, headerEnd); break;
                default: bytes[at] = (byte)random.Next('0', '9' + 1); break; // numbers: offsets and shapes
            }
        }
        return bytes.ToArray();
    }

    private static void TruncateTo(List<byte> bytes, int length) => bytes.RemoveRange(length, bytes.Count - length);

    private static void SetHeaderLength(List<byte> bytes, Random random, int headerEnd)
    {
        if (bytes.Count < 8) return;
        ulong current = (ulong)(headerEnd - 8);
        ulong value = random.Next(6) switch
        {
            0 => 1UL << random.Next(64),
            1 => ulong.MaxValue - (ulong)random.Next(16),
            2 => (ulong)random.NextInt64(),
            3 => current + (ulong)random.Next(-8, 9),
            4 => (ulong)bytes.Count - 8 + (ulong)random.Next(0, 3),
            _ => (ulong)random.Next(0, 16),
        };
        var span = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(span, value);
        for (int i = 0; i < 8; i++) bytes[i] = span[i];
    }
}
