using System.Text;
using EdgeTune.Core;

namespace EdgeTune.Formats.Tests;

/// <summary>Hand-assembles GGUF headers so tests can break them in exact places.</summary>
internal sealed class RawGguf
{
    private readonly MemoryStream _ms = new();
    private readonly BinaryWriter _w;
    public RawGguf(uint version = 3, ulong tensors = 0, ulong kvs = 0)
    {
        _w = new BinaryWriter(_ms);
        _w.Write(Encoding.ASCII.GetBytes("GGUF"));
        _w.Write(version);
        _w.Write(tensors);
        _w.Write(kvs);
    }
    public RawGguf Str(string s) => Bytes(Encoding.UTF8.GetBytes(s));
    public RawGguf Bytes(byte[] b) { _w.Write((ulong)b.Length); _w.Write(b); return this; }
    public RawGguf U32(uint v) { _w.Write(v); return this; }
    public RawGguf U64(ulong v) { _w.Write(v); return this; }
    public RawGguf I64(long v) { _w.Write(v); return this; }
    public RawGguf Raw(params byte[] b) { _w.Write(b); return this; }
    public RawGguf Tensor(string name, long[] ne, GgmlType type, ulong offset)
    {
        Str(name).U32((uint)ne.Length);
        foreach (var d in ne) I64(d);
        return U32((uint)type).U64(offset);
    }
    public RawGguf PadTo(int alignment) { while (_ms.Length % alignment != 0) _w.Write((byte)0); return this; }
    public RawGguf Zeros(int n) { _w.Write(new byte[n]); return this; }
    public byte[] ToArray() { _w.Flush(); return _ms.ToArray(); }
}
