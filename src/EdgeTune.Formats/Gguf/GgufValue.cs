using System.Globalization;
using System.Text;

namespace EdgeTune.Formats.Gguf;

/// <summary>GGUF metadata value types, numbered as on disk (gguf.h enum gguf_type).</summary>
public enum GgufValueType : uint
{
    UInt8 = 0,
    Int8 = 1,
    UInt16 = 2,
    Int16 = 3,
    UInt32 = 4,
    Int32 = 5,
    Float32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    UInt64 = 10,
    Int64 = 11,
    Float64 = 12,
}

/// <summary>
/// One metadata value. Scalars are boxed primitives; arrays are typed .NET arrays (byte[], float[], string[], ...)
/// and nested arrays are <see cref="GgufValue"/>[]. The type is explicit because llama.cpp checks it exactly:
/// a count written as INT32 where UINT32 is expected fails to load.
/// </summary>
public sealed class GgufValue : IEquatable<GgufValue>
{
    private GgufValue(GgufValueType type, object value, GgufValueType elementType = GgufValueType.UInt8)
    {
        Type = type;
        Value = value;
        ElementType = elementType;
    }

    public GgufValueType Type { get; }

    /// <summary>For arrays, the type of the elements; meaningless otherwise.</summary>
    public GgufValueType ElementType { get; }

    /// <summary>The boxed scalar, string, or typed array.</summary>
    public object Value { get; }

    public static GgufValue U8(byte v) => new(GgufValueType.UInt8, v);
    public static GgufValue I8(sbyte v) => new(GgufValueType.Int8, v);
    public static GgufValue U16(ushort v) => new(GgufValueType.UInt16, v);
    public static GgufValue I16(short v) => new(GgufValueType.Int16, v);
    public static GgufValue U32(uint v) => new(GgufValueType.UInt32, v);
    public static GgufValue I32(int v) => new(GgufValueType.Int32, v);
    public static GgufValue F32(float v) => new(GgufValueType.Float32, v);
    public static GgufValue Bool(bool v) => new(GgufValueType.Bool, v);
    public static GgufValue String(string v) => new(GgufValueType.String, v ?? throw new ArgumentNullException(nameof(v)));
    public static GgufValue U64(ulong v) => new(GgufValueType.UInt64, v);
    public static GgufValue I64(long v) => new(GgufValueType.Int64, v);
    public static GgufValue F64(double v) => new(GgufValueType.Float64, v);

    public static GgufValue Array(byte[] v) => new(GgufValueType.Array, v, GgufValueType.UInt8);
    public static GgufValue Array(sbyte[] v) => new(GgufValueType.Array, v, GgufValueType.Int8);
    public static GgufValue Array(ushort[] v) => new(GgufValueType.Array, v, GgufValueType.UInt16);
    public static GgufValue Array(short[] v) => new(GgufValueType.Array, v, GgufValueType.Int16);
    public static GgufValue Array(uint[] v) => new(GgufValueType.Array, v, GgufValueType.UInt32);
    public static GgufValue Array(int[] v) => new(GgufValueType.Array, v, GgufValueType.Int32);
    public static GgufValue Array(float[] v) => new(GgufValueType.Array, v, GgufValueType.Float32);
    public static GgufValue Array(bool[] v) => new(GgufValueType.Array, v, GgufValueType.Bool);
    public static GgufValue Array(string[] v) => new(GgufValueType.Array, v, GgufValueType.String);
    public static GgufValue Array(ulong[] v) => new(GgufValueType.Array, v, GgufValueType.UInt64);
    public static GgufValue Array(long[] v) => new(GgufValueType.Array, v, GgufValueType.Int64);
    public static GgufValue Array(double[] v) => new(GgufValueType.Array, v, GgufValueType.Float64);

    /// <summary>An array of arrays (GGUF allows nesting); every element must itself be an array.</summary>
    public static GgufValue Array(GgufValue[] v)
    {
        foreach (var e in v)
            if (e.Type != GgufValueType.Array) throw new ArgumentException("nested GGUF arrays hold arrays only", nameof(v));
        return new(GgufValueType.Array, v, GgufValueType.Array);
    }

    public bool IsArray => Type == GgufValueType.Array;

    /// <summary>Number of elements of an array value.</summary>
    public int ArrayLength => IsArray ? ((System.Array)Value).Length : throw new InvalidOperationException("not an array");

    public string AsString() => Type == GgufValueType.String ? (string)Value : throw WrongType("STRING");

    public T[] AsArray<T>() => Value as T[] ?? throw WrongType($"ARRAY of {typeof(T).Name}");

    /// <summary>Any integer type, widened; throws for floats, strings, arrays.</summary>
    public long AsInt64() => Value switch
    {
        byte b => b,
        sbyte sb => sb,
        ushort us => us,
        short s => s,
        uint ui => ui,
        int i => i,
        ulong ul => ul <= long.MaxValue ? (long)ul : throw new OverflowException($"{ul} does not fit in a signed 64-bit value"),
        long l => l,
        _ => throw WrongType("an integer"),
    };

    /// <summary>Any number, widened to double.</summary>
    public double AsDouble() => Value switch
    {
        float f => f,
        double d => d,
        _ => AsInt64(),
    };

    public bool AsBool() => Value is bool b ? b : throw WrongType("BOOL");

    private InvalidOperationException WrongType(string wanted) =>
        new($"GGUF value is {Describe()}, not {wanted}");

    /// <summary>Type in GGUF's spelling, e.g. "UINT32" or "ARRAY[STRING]".</summary>
    public string Describe() => IsArray ? $"ARRAY[{TypeName(ElementType)}]" : TypeName(Type);

    public static string TypeName(GgufValueType type) => type switch
    {
        GgufValueType.UInt8 => "UINT8",
        GgufValueType.Int8 => "INT8",
        GgufValueType.UInt16 => "UINT16",
        GgufValueType.Int16 => "INT16",
        GgufValueType.UInt32 => "UINT32",
        GgufValueType.Int32 => "INT32",
        GgufValueType.Float32 => "FLOAT32",
        GgufValueType.Bool => "BOOL",
        GgufValueType.String => "STRING",
        GgufValueType.Array => "ARRAY",
        GgufValueType.UInt64 => "UINT64",
        GgufValueType.Int64 => "INT64",
        GgufValueType.Float64 => "FLOAT64",
        _ => $"type {(uint)type}",
    };

    /// <summary>Human-readable text; arrays longer than <paramref name="maxItems"/> are summarised.</summary>
    public string ToDisplayString(int maxItems = 8)
    {
        if (!IsArray) return ScalarText(Value);
        var array = (System.Array)Value;
        var sb = new StringBuilder("[");
        int shown = Math.Min(array.Length, maxItems);
        for (int i = 0; i < shown; i++)
        {
            if (i > 0) sb.Append(", ");
            var item = array.GetValue(i)!;
            sb.Append(item is GgufValue nested ? nested.ToDisplayString(maxItems) : ScalarText(item));
        }
        if (array.Length > shown) sb.Append(CultureInfo.InvariantCulture, $", ... ({array.Length} items)");
        return sb.Append(']').ToString();
    }

    private static string ScalarText(object value) => value switch
    {
        string s => s.Length > 120 ? Quote(s[..117]) + "..." : Quote(s),
        bool b => b ? "true" : "false",
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        IFormattable x => x.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    private static string Quote(string s) =>
        "\"" + s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal)
            .Replace("\n", "\\n", StringComparison.Ordinal).Replace("\r", "\\r", StringComparison.Ordinal) + "\"";

    public bool Equals(GgufValue? other)
    {
        if (other is null || other.Type != Type || other.ElementType != ElementType) return false;
        if (!IsArray) return Value.Equals(other.Value) || BitwiseEqualFloats(Value, other.Value);
        var a = (System.Array)Value;
        var b = (System.Array)other.Value;
        if (a.Length != b.Length) return false;
        for (int i = 0; i < a.Length; i++)
        {
            object x = a.GetValue(i)!, y = b.GetValue(i)!;
            if (!(x.Equals(y) || BitwiseEqualFloats(x, y))) return false;
        }
        return true;
    }

    // NaN payloads must round-trip too; compare floats by their bits when Equals says no.
    private static bool BitwiseEqualFloats(object x, object y) => (x, y) switch
    {
        (float a, float b) => BitConverter.SingleToUInt32Bits(a) == BitConverter.SingleToUInt32Bits(b),
        (double a, double b) => BitConverter.DoubleToUInt64Bits(a) == BitConverter.DoubleToUInt64Bits(b),
        _ => false,
    };

    public override bool Equals(object? obj) => Equals(obj as GgufValue);

    public override int GetHashCode() => HashCode.Combine(Type, ElementType, IsArray ? ((System.Array)Value).Length : Value.GetHashCode());

    public override string ToString() => ToDisplayString();
}
