using System.Runtime.InteropServices;
using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Synthetic;

namespace EdgeTune.Testing;

/// <summary>
/// A tiny llama GGUF with a ChatML template whose markers are NOT tokens of its vocabulary, built to answer every
/// chat prompt with "gold" followed by the end-of-turn marker written as text — "gold", "&lt;|", "im_end", "|&gt;" —
/// and then " junk" forever, as a model tuned on that template does (it never emits EOS).
/// </summary>
/// <remarks>
/// Attention and feed-forward weights are zero, so the last hidden state is the current token's embedding and the
/// next token depends on the current one only. Embeddings are one-hot on a few dimensions; the output head maps
/// each of them to the next token of the chain with a logit of 10·√E, every other logit 0. Any token outside the
/// chain (the prompt's last) leads to "gold".
/// </remarks>
public static class EndOfTurnModel
{
    public static readonly IReadOnlyList<string> Chain = ["gold", "<|", "im_end", "|>", "▁junk"];

    public static TinyLlamaConfig Config { get; } = new()
    {
        Embedding = 64, Layers = 1, Heads = 4, KvHeads = 2, FeedForward = 128, ContextLength = 256, Seed = 3,
        ExtraTokens = Chain.Count, ExtraPieces = Chain,
    };

    /// <summary>The id of a chain piece.</summary>
    public static int Id(string piece) => 3 + 256 + TinyLlama.Pieces.Count + Chain.ToList().IndexOf(piece);

    public static void Write(string path)
    {
        var c = Config;
        var writer = new GgufWriter();
        foreach (var (key, value) in TinyLlama.Metadata(c)) writer.Metadata.Set(key, value);
        writer.Metadata.Set("general.name", GgufValue.String("end-of-turn-as-text"));
        writer.Metadata.Set("tokenizer.chat_template", GgufValue.String(TinyLlama.ChatMlTemplate));
        int e = c.Embedding, v = c.VocabSize;
        // Dimension 0: any token outside the chain; dimension 1 + i: chain piece i.
        int Dim(int token) => token >= Id(Chain[0]) && token <= Id(Chain[^1]) ? 1 + token - Id(Chain[0]) : 0;
        float head = 10f;
        foreach (var (name, shape) in TinyLlama.TensorShapes(c))
        {
            long n = shape.Aggregate(1L, (a, b) => a * b);
            var values = new float[n];
            if (name.Contains("norm", StringComparison.Ordinal)) Array.Fill(values, 1f);
            else if (name == "token_embd.weight")
                for (int t = 0; t < v; t++) values[t * e + Dim(t)] = 1f;
            else if (name == "output.weight")
            {
                // Row of token t (e values): which current-token dimension predicts t.
                values[Id("gold") * e + 0] = head;
                values[Id("<|") * e + Dim(Id("gold"))] = head;
                values[Id("im_end") * e + Dim(Id("<|"))] = head;
                values[Id("|>") * e + Dim(Id("im_end"))] = head;
                values[Id("▁junk") * e + Dim(Id("|>"))] = head;
                values[Id("▁junk") * e + Dim(Id("▁junk"))] = head;
            }
            var bytes = MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
            writer.AddTensor(name, GgmlType.F32, shape, bytes);
        }
        writer.Write(path);
    }
}
