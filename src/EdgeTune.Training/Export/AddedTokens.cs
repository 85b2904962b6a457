using System.Runtime.InteropServices;
using EdgeTune.Core;
using EdgeTune.Core.Quantization;
using EdgeTune.Formats.Gguf;
using EdgeTune.Models.Tokenizers;

namespace EdgeTune.Training;

/// <summary>
/// [model] add_tokens: the base GGUF with the chat template's markers as control tokens of its vocabulary. The
/// embedding and output tables grow by one row per new token, initialised to the mean of the existing rows
/// (Hugging Face's resize_token_embeddings default), and the template's end-of-turn marker becomes
/// tokenizer.ggml.eot_token_id, so llama.cpp ends generation there. Every other tensor is copied byte for byte.
/// </summary>
public static class AddedTokens
{
    /// <summary>What <see cref="Resize"/> did: the ids of the tokens (new or re-typed) and how many rows were added.</summary>
    public sealed record Result(IReadOnlyDictionary<string, int> Ids, int RowsAdded, int VocabularySize, int? EndOfTurnId);

    private static readonly string[] Tables = ["token_embd.weight", "output.weight"];

    /// <summary>
    /// Writes <paramref name="target"/>: <paramref name="source"/> (a GGUF base) with <paramref name="tokens"/> as control
    /// tokens. A token the vocabulary already holds as one piece is re-typed as a control token and keeps its row.
    /// </summary>
    public static Result Resize(string source, IReadOnlyList<string> tokens, string? endOfTurn, string target)
    {
        if (Directory.Exists(source))
            throw new EdgeTuneException($"{source}: [model] add_tokens resizes a GGUF base; convert the folder first (`edgetune convert {source} base.gguf`) and train from that");
        using var file = GgufFile.Open(source);
        var m = file.Metadata;
        var pieces = (m.Get("tokenizer.ggml.tokens")?.Value as string[]) ?? throw FileFormatException.AtKey(source, "tokenizer.ggml.tokens", "is missing (no vocabulary to add tokens to)");
        var types = (m.Get("tokenizer.ggml.token_type")?.Value as int[]) ?? Enumerable.Repeat((int)GgufTokenType.Normal, pieces.Length).ToArray();
        var scores = m.Get("tokenizer.ggml.scores")?.Value as float[];
        if (types.Length != pieces.Length) throw FileFormatException.AtKey(source, "tokenizer.ggml.token_type", $"has {types.Length} entries for {pieces.Length} tokens");

        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < pieces.Length; i++) index.TryAdd(pieces[i], i);
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        var newPieces = new List<string>(pieces);
        var newTypes = new List<int>(types);
        foreach (var token in tokens)
        {
            if (index.TryGetValue(token, out int existing))
            {
                newTypes[existing] = (int)GgufTokenType.Control;
                ids[token] = existing;
            }
            else
            {
                ids[token] = newPieces.Count;
                newPieces.Add(token);
                newTypes.Add((int)GgufTokenType.Control);
            }
        }
        int added = newPieces.Count - pieces.Length;

        var writer = new GgufWriter();
        foreach (var (key, value) in m)
            if (key != "general.alignment") writer.Metadata.Set(key, value);
        writer.Metadata.Set("tokenizer.ggml.tokens", GgufValue.Array(newPieces.ToArray()));
        writer.Metadata.Set("tokenizer.ggml.token_type", GgufValue.Array(newTypes.ToArray()));
        if (scores is not null)
        {
            if (scores.Length != pieces.Length) throw FileFormatException.AtKey(source, "tokenizer.ggml.scores", $"has {scores.Length} entries for {pieces.Length} tokens");
            writer.Metadata.Set("tokenizer.ggml.scores", GgufValue.Array(scores.Concat(Enumerable.Repeat(0f, added)).ToArray()));
        }
        string arch = file.Architecture ?? throw FileFormatException.AtKey(source, "general.architecture", "is missing");
        if (m.ContainsKey($"{arch}.vocab_size")) writer.Metadata.Set($"{arch}.vocab_size", GgufValue.U32((uint)newPieces.Count));
        int? eot = endOfTurn is not null && ids.TryGetValue(endOfTurn, out int e) ? e : null;
        if (eot is int eotId) writer.Metadata.Set("tokenizer.ggml.eot_token_id", GgufValue.U32((uint)eotId));

        foreach (var info in file.Tensors)
        {
            var shape = info.Shape.ToArray();
            if (added > 0 && Tables.Contains(info.Name))
            {
                if (shape.Length != 2 || shape[1] != pieces.Length)
                    throw new FileFormatException(source, $"tensor '{info.Name}'", $"shape [{string.Join(", ", shape)}] is not [hidden, {pieces.Length} tokens]");
                if (!QuantCodecs.CanQuantize(info.Type))
                    throw new FileFormatException(source, $"tensor '{info.Name}'", $"type {GgmlTypes.Name(info.Type)} cannot be extended (llama.cpp's quantiser has no codec here for it); quantise the base to another type");
                int dim = checked((int)shape[0]);
                var mean = MeanRow(file, info, dim, pieces.Length);
                var rows = new float[(long)added * dim];
                for (int r = 0; r < added; r++) mean.CopyTo(rows.AsSpan(r * dim, dim));
                var tail = new byte[GgmlTypes.RowBytes(info.Type, dim) * added];
                QuantCodecs.Quantize(info.Type, rows, tail);
                var table = info;
                writer.AddTensor(info.Name, info.Type, [shape[0], newPieces.Count], stream =>
                {
                    using (var data = file.GetData(table).AsStream()) data.CopyTo(stream);
                    stream.Write(tail);
                });
            }
            else
            {
                var tensor = info;
                writer.AddTensor(info.Name, info.Type, shape, stream =>
                {
                    using var data = file.GetData(tensor).AsStream();
                    data.CopyTo(stream);
                });
            }
        }
        writer.Write(target); // aside, fsync, rename
        return new Result(ids, added, newPieces.Count, eot);
    }

    /// <summary>
    /// Writes <paramref name="target"/>: the resized base <paramref name="resized"/> with the trained rows of the added
    /// tokens (LoRA/QLoRA runs train them; the adapter belongs to this file, not to the original base).
    /// </summary>
    public static void WriteTrained(string resized, int addedRows, IReadOnlyDictionary<string, float[]> trainedRows, string target)
    {
        using var file = GgufFile.Open(resized);
        var writer = new GgufWriter();
        foreach (var (key, value) in file.Metadata)
            if (key != "general.alignment") writer.Metadata.Set(key, value);
        foreach (var info in file.Tensors)
        {
            var tensor = info;
            if (trainedRows.TryGetValue(info.Name, out var rows))
            {
                int dim = checked((int)info.Shape[0]);
                long rowBytes = GgmlTypes.RowBytes(info.Type, dim);
                long keep = info.ByteLength - rowBytes * addedRows;
                var tail = new byte[rowBytes * addedRows];
                QuantCodecs.Quantize(info.Type, rows, tail);
                writer.AddTensor(info.Name, info.Type, info.Shape.ToArray(), stream =>
                {
                    using (var data = file.GetData(tensor).Slice(0, keep).AsStream()) data.CopyTo(stream);
                    stream.Write(tail);
                });
            }
            else writer.AddTensor(info.Name, info.Type, info.Shape.ToArray(), stream =>
                {
                    using var data = file.GetData(tensor).AsStream();
                    data.CopyTo(stream);
                });
        }
        writer.Write(target); // aside, fsync, rename
    }

    /// <summary>The mean of a table's rows, read a row block at a time (never the whole table in float32).</summary>
    private static float[] MeanRow(GgufFile file, GgufTensorInfo table, int dim, int rows)
    {
        var sum = new double[dim];
        const int Block = 256;
        var buffer = new float[(long)Block * dim];
        for (int r = 0; r < rows; r += Block)
        {
            int count = Math.Min(Block, rows - r);
            var span = buffer.AsSpan(0, count * dim);
            file.ReadRows(table, r, span);
            for (int i = 0; i < count; i++)
                for (int d = 0; d < dim; d++) sum[d] += span[i * dim + d];
        }
        return Array.ConvertAll(sum, s => (float)(s / rows));
    }
}
