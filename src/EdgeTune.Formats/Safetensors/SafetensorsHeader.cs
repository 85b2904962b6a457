using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Unicode;
using EdgeTune.Core;

namespace EdgeTune.Formats.Safetensors;

/// <summary>A parsed and validated header: metadata, and tensors in the order of their data in the file.</summary>
internal sealed record SafetensorsHeader(Dictionary<string, string> Metadata, List<SafetensorsTensorInfo> Tensors);

/// <summary>
/// Parses the JSON header with Utf8JsonReader rather than a DOM or a deserializer: it reports duplicate keys
/// (System.Text.Json's deserializer silently keeps the last one), gives the byte offset of every token for
/// error messages, and allocates nothing beyond what the header itself holds.
/// </summary>
internal static class SafetensorsHeaderParser
{
    /// <summary>The reference implementation refuses headers over 100 MB; real ones are a few hundred KB.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    /// <summary>The JSON text starts after the 8-byte length, so file offsets are JSON positions + 8.</summary>
    private const long JsonStart = 8;

    public const string MetadataKey = "__metadata__";

    /// <summary>Checks the header length read from the first 8 bytes, before anything is sized by it.</summary>
    public static int CheckHeaderLength(string file, ulong headerLength, long fileLength)
    {
        if (headerLength > MaxHeaderBytes)
            throw FileFormatException.AtOffset(file, 0,
                $"header length {headerLength} is over the {MaxHeaderBytes}-byte limit; not a safetensors file?");
        if ((long)headerLength > fileLength - JsonStart)
            throw FileFormatException.AtOffset(file, 0,
                $"header length {headerLength} runs past the end of the file ({fileLength} bytes)");
        return (int)headerLength;
    }

    /// <param name="file">Name used in error messages.</param>
    /// <param name="json">The header bytes (the length is already checked against the file).</param>
    /// <param name="bufferLength">Bytes after the header: the tensors must cover exactly this many.</param>
    public static SafetensorsHeader Parse(string file, ReadOnlySpan<byte> json, long bufferLength)
    {
        if (!Utf8.IsValid(json))
            throw FileFormatException.AtOffset(file, JsonStart + FirstInvalidUtf8(json), "header is not valid UTF-8");

        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var entries = new List<Entry>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        bool sawMetadata = false;
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow });
        try
        {
            reader.Read();
            if (reader.TokenType != JsonTokenType.StartObject)
                throw At(file, reader, "header must be a JSON object");
            // Inside an object of a final block, Read either yields a token or throws; it cannot run dry.
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                long keyAt = JsonStart + reader.TokenStartIndex;
                string key = GetString(file, ref reader);
                if (key == MetadataKey)
                {
                    if (sawMetadata) throw FileFormatException.AtOffset(file, keyAt, "duplicate __metadata__");
                    sawMetadata = true;
                    ReadMetadata(file, ref reader, metadata);
                }
                else
                {
                    if (!names.Add(key)) throw Key(file, key, $"duplicate tensor name (again at byte {keyAt})");
                    entries.Add(ReadTensor(file, ref reader, key, entries.Count));
                }
            }
            // Reading past the closing brace makes the reader reject anything but whitespace after it.
            reader.Read();
        }
        catch (JsonException e)
        {
            throw FileFormatException.AtOffset(file, JsonStart + SafetensorsJson.ErrorPosition(e, json), SafetensorsJson.Describe(e));
        }

        return new SafetensorsHeader(metadata, Layout(file, entries, JsonStart + json.Length, bufferLength));
    }

    private sealed record Entry(string Name, int Index, SafetensorsDType DType, long[] Shape, long Begin, long End);

    private static void ReadMetadata(string file, ref Utf8JsonReader reader, Dictionary<string, string> metadata)
    {
        reader.Read();
        if (reader.TokenType != JsonTokenType.StartObject)
            throw Key(file, MetadataKey, "must be an object of string values");
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            string key = GetString(file, ref reader);
            reader.Read();
            // The reference implementation reads metadata as a string-to-string map and refuses anything else.
            if (reader.TokenType != JsonTokenType.String)
                throw Key(file, $"{MetadataKey}.{key}", $"metadata values must be strings, not {Describe(reader)}");
            if (!metadata.TryAdd(key, GetString(file, ref reader)))
                throw Key(file, $"{MetadataKey}.{key}", "duplicate metadata key");
        }
    }

    private static Entry ReadTensor(string file, ref Utf8JsonReader reader, string name, int index)
    {
        reader.Read();
        if (reader.TokenType != JsonTokenType.StartObject)
            throw Key(file, name, "must be an object with dtype, shape and data_offsets");
        SafetensorsDType? dtype = null;
        long[]? shape = null, offsets = null;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("dtype"u8))
            {
                if (dtype is not null) throw Key(file, name, "duplicate field 'dtype'");
                reader.Read();
                if (reader.TokenType != JsonTokenType.String)
                    throw Key(file, name, $"dtype must be a string, not {Describe(reader)}");
                string text = GetString(file, ref reader);
                if (!SafetensorsDTypes.TryParse(text, out var parsed))
                    throw Key(file, name, $"unknown dtype '{SafetensorsJson.OneLine(text)}'");
                dtype = parsed;
            }
            else if (reader.ValueTextEquals("shape"u8))
            {
                if (shape is not null) throw Key(file, name, "duplicate field 'shape'");
                shape = ReadIntegers(file, ref reader, name, "shape");
            }
            else if (reader.ValueTextEquals("data_offsets"u8))
            {
                if (offsets is not null) throw Key(file, name, "duplicate field 'data_offsets'");
                offsets = ReadIntegers(file, ref reader, name, "data_offsets");
                if (offsets.Length != 2) throw Key(file, name, "data_offsets must be [begin, end]");
            }
            else
            {
                // Unknown fields are ignored, as serde does for the reference implementation.
                reader.Skip();
            }
        }
        if (dtype is null) throw Key(file, name, "missing 'dtype'");
        if (shape is null) throw Key(file, name, "missing 'shape'");
        if (offsets is null) throw Key(file, name, "missing 'data_offsets'");
        return new Entry(name, index, dtype.Value, shape, offsets[0], offsets[1]);
    }

    /// <summary>An array of non-negative integers: shape dimensions or data offsets.</summary>
    private static long[] ReadIntegers(string file, ref Utf8JsonReader reader, string name, string field)
    {
        reader.Read();
        if (reader.TokenType != JsonTokenType.StartArray)
            throw Key(file, name, $"{field} must be an array of integers, not {Describe(reader)}");
        var values = new List<long>();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out long value) || value < 0)
                throw Key(file, name, $"{field} must hold integers from 0 to 2^63-1, not {Describe(reader)}");
            values.Add(value);
        }
        return values.ToArray();
    }

    /// <summary>
    /// Checks each tensor's extent, then that the tensors tile the data buffer with no hole and no overlap, as
    /// the reference implementation does, and returns them in data order (ties: header order).
    /// </summary>
    private static List<SafetensorsTensorInfo> Layout(string file, List<Entry> entries, long dataStart, long bufferLength)
    {
        foreach (var e in entries)
        {
            long? bytes = SafetensorsDTypes.ByteLength(e.DType, e.Shape);
            if (bytes is null)
                throw Key(file, e.Name, $"shape [{string.Join(", ", e.Shape)}] has more bytes than a 64-bit size can count");
            if (e.End < e.Begin)
                throw Key(file, e.Name, $"data_offsets [{e.Begin}, {e.End}]: end is before begin");
            if (e.End > bufferLength)
                throw Key(file, e.Name, $"data_offsets end {e.End} is past the end of the data buffer ({bufferLength} bytes)");
            if (e.End - e.Begin != bytes)
                throw Key(file, e.Name,
                    $"data_offsets [{e.Begin}, {e.End}] hold {e.End - e.Begin} bytes, but {e.DType.Name()} [{string.Join(", ", e.Shape)}] needs {bytes}");
        }

        var ordered = entries.OrderBy(e => e.Begin).ThenBy(e => e.End).ThenBy(e => e.Index).ToList();
        var tensors = new List<SafetensorsTensorInfo>(ordered.Count);
        long cursor = 0;
        string? previous = null;
        foreach (var e in ordered)
        {
            if (e.Begin > cursor)
                throw Key(file, e.Name, $"data buffer bytes {cursor}..{e.Begin} before this tensor belong to no tensor");
            if (e.Begin < cursor)
                throw Key(file, e.Name, $"data_offsets [{e.Begin}, {e.End}] overlap tensor '{SafetensorsJson.OneLine(previous!)}'");
            cursor = e.End;
            previous = e.Name;
            tensors.Add(new SafetensorsTensorInfo(e.Name, e.DType, e.Shape, e.Begin, e.End - e.Begin, dataStart + e.Begin));
        }
        if (cursor != bufferLength)
            throw FileFormatException.AtOffset(file, dataStart + cursor,
                $"{bufferLength - cursor} bytes after the last tensor belong to no tensor");
        return tensors;
    }

    private static string GetString(string file, ref Utf8JsonReader reader)
    {
        try
        {
            return reader.GetString()!;
        }
        catch (InvalidOperationException)
        {
            // Valid JSON escapes can still spell an invalid string, e.g. a lone "\ud800".
            throw At(file, reader, "string does not decode to valid Unicode");
        }
    }

    /// <summary>A short description of the current token for messages: its kind and the start of its text.</summary>
    private static string Describe(Utf8JsonReader reader)
    {
        string kind = reader.TokenType switch
        {
            JsonTokenType.StartObject => "an object",
            JsonTokenType.StartArray => "an array",
            JsonTokenType.String => "a string",
            JsonTokenType.Number => "the number " + Encoding.UTF8.GetString(reader.ValueSpan[..Math.Min(reader.ValueSpan.Length, 40)]),
            JsonTokenType.True or JsonTokenType.False => "a boolean",
            JsonTokenType.Null => "null",
            _ => reader.TokenType.ToString(),
        };
        return kind;
    }

    private static int FirstInvalidUtf8(ReadOnlySpan<byte> bytes)
    {
        // Transcode in chunks until the decoder stops on the bad sequence; that is the position to report.
        Span<char> scratch = stackalloc char[1024];
        int position = 0;
        while (true)
        {
            var status = Utf8.ToUtf16(bytes[position..], scratch, out int read, out _, replaceInvalidSequences: false);
            position += read;
            if (status != OperationStatus.DestinationTooSmall) return position;
        }
    }

    private static FileFormatException At(string file, Utf8JsonReader reader, string problem) =>
        FileFormatException.AtOffset(file, JsonStart + reader.TokenStartIndex, problem);

    private static FileFormatException Key(string file, string key, string problem) =>
        FileFormatException.AtKey(file, SafetensorsJson.OneLine(key), problem);
}
