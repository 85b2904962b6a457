using System.Buffers.Binary;
using System.Text;

namespace EdgeTune.Testing.Fuzz;

/// <summary>Seeded ways to break a valid input: a few edits each, biased toward the bytes that change a format's structure.</summary>
public static class Mutations
{
    /// <summary>
    /// Text formats (JSONL, CSV, TOML): 1 to 4 edits from bit flips, structural tokens put in or swapped in, cut
    /// ranges, repeated ranges, swapped or repeated lines, truncation, long runs (deep nesting, huge numbers, long
    /// lines) and bytes that are not UTF-8.
    /// </summary>
    public static byte[] Text(byte[] valid, Random random, string[] tokens)
    {
        var bytes = new List<byte>(valid);
        int edits = random.Next(1, 5);
        for (int e = 0; e < edits; e++)
        {
            int at = bytes.Count == 0 ? 0 : random.Next(bytes.Count);
            switch (random.Next(12))
            {
                case 0: if (bytes.Count > 0) bytes[at] ^= (byte)(1 << random.Next(8)); break;
                case 1: bytes.InsertRange(at, Encoding.UTF8.GetBytes(tokens[random.Next(tokens.Length)])); break;
                case 2:
                    if (bytes.Count == 0) break;
                    int replace = Math.Min(bytes.Count - at, random.Next(1, 4));
                    bytes.RemoveRange(at, replace);
                    bytes.InsertRange(at, Encoding.UTF8.GetBytes(tokens[random.Next(tokens.Length)]));
                    break;
                case 3: bytes.RemoveRange(at, Math.Min(bytes.Count - at, random.Next(1, 40))); break;
                case 4:
                    int length = Math.Min(bytes.Count - at, random.Next(1, 200));
                    bytes.InsertRange(random.Next(bytes.Count + 1), bytes.GetRange(at, length));
                    break;
                case 5: bytes.RemoveRange(at, bytes.Count - at); break;
                case 6: SwapOrRepeatLine(bytes, random); break;
                case 7:
                    string run = random.Next(5) switch
                    {
                        0 => new string('[', random.Next(100, 5000)),
                        1 => new string('{', random.Next(100, 5000)),
                        2 => new string('9', random.Next(20, 400)),
                        3 => new string('"', random.Next(2, 200)),
                        _ => new string('x', random.Next(1000, 100_000)),
                    };
                    bytes.InsertRange(at, Encoding.ASCII.GetBytes(run));
                    break;
                case 8: bytes.Insert(at, (byte)random.Next(0x80, 0x100)); break;          // not UTF-8 on its own
                case 9: bytes.Insert(at, (byte)random.Next(0, 0x20)); break;              // control bytes, NUL included
                case 10: if (bytes.Count > 0) bytes[at] = (byte)random.Next(0x20, 0x7f); break;
                default: bytes.InsertRange(at, Encoding.UTF8.GetBytes(tokens[random.Next(tokens.Length)] + tokens[random.Next(tokens.Length)])); break;
            }
        }
        return bytes.ToArray();
    }

    private static void SwapOrRepeatLine(List<byte> bytes, Random random)
    {
        var lines = Encoding.UTF8.GetString(bytes.ToArray()).Split('\n').ToList();
        if (lines.Count < 2) return;
        int a = random.Next(lines.Count), b = random.Next(lines.Count);
        if (random.Next(2) == 0) (lines[a], lines[b]) = (lines[b], lines[a]);
        else lines.Insert(b, lines[a]);
        bytes.Clear();
        bytes.AddRange(Encoding.UTF8.GetBytes(string.Join('\n', lines)));
    }

    /// <summary>Binary headers (GGUF, safetensors): edits inside the first <paramref name="headerEnd"/> bytes, where the structure is.</summary>
    public static byte[] Binary(byte[] valid, Random random, int headerEnd, int firstEditable = 0)
    {
        var bytes = new List<byte>(valid);
        int edits = random.Next(1, 5);
        for (int e = 0; e < edits; e++)
        {
            int end = Math.Min(headerEnd, bytes.Count);
            if (end <= firstEditable) break;
            int at = random.Next(firstEditable, end);
            switch (random.Next(8))
            {
                case 0: bytes[at] ^= (byte)(1 << random.Next(8)); break;
                case 1: bytes[at] = (byte)random.Next(256); break;
                case 2: bytes[at] = 0xFF; break;
                case 3: // a big little-endian count, length or offset
                    if (at + 8 > bytes.Count) break;
                    var value = new byte[8];
                    BinaryPrimitives.WriteUInt64LittleEndian(value, random.Next(3) switch
                    {
                        0 => 1UL << random.Next(20, 64),
                        1 => ulong.MaxValue - (ulong)random.Next(16),
                        _ => (ulong)random.Next(0, 1 << 16),
                    });
                    for (int i = 0; i < 8; i++) bytes[at + i] = value[i];
                    break;
                case 4: // cut anywhere, tensor data included
                    int cut = random.Next(bytes.Count);
                    bytes.RemoveRange(cut, bytes.Count - cut);
                    break;
                case 5: bytes.RemoveAt(at); break;
                case 6: bytes.Insert(at, (byte)random.Next(256)); break;
                default: bytes[at] = (byte)random.Next('0', '9' + 1); break;
            }
        }
        return bytes.ToArray();
    }
}
