using System.Collections.Concurrent;
using EdgeTune.Core;
using EdgeTune.Export.Onnx;
using EdgeTune.Models.Conversion;
using EdgeTune.Testing;

namespace EdgeTune.Export.Tests;

/// <summary>The tiny checkpoints the export is checked on, each written, converted and exported once per run.</summary>
public sealed class ExportModels : IDisposable
{
    public static readonly IReadOnlyDictionary<string, TinyHfOptions> Cases = new Dictionary<string, TinyHfOptions>
    {
        ["llama-gqa-tied-llama3rope"] = new() { ModelType = "llama", Heads = 4, KvHeads = 2, Tied = true, RopeTheta = 500000, Llama3Scaling = true, Seed = 11 },
        ["llama-gqa"] = new() { ModelType = "llama", Heads = 4, KvHeads = 2, RopeTheta = 10000, Seed = 15 },
        ["mistral-gqa"] = new() { ModelType = "mistral", Heads = 8, KvHeads = 2, Hidden = 128, Intermediate = 160, RopeTheta = 1000000, Seed = 12 },
        ["qwen2-gqa-bias"] = new() { ModelType = "qwen2", Heads = 4, KvHeads = 2, RopeTheta = 1000000, RmsEps = 1e-6, Seed = 13 },
    };

    public static TheoryData<string> Names => new(Cases.Keys);

    private readonly TempDir _dir = new();
    private readonly ConcurrentDictionary<string, Lazy<(string Hf, string Gguf)>> _built = new();
    private readonly ConcurrentDictionary<string, Lazy<string>> _exports = new();

    public string Dir => _dir.Path;

    /// <summary>The HF folder of a case and its F32 GGUF conversion (with TinyLlama's vocabulary, so llama.cpp loads it).</summary>
    public (string Hf, string Gguf) Get(string name) => _built.GetOrAdd(name, n => new Lazy<(string, string)>(() =>
    {
        var options = Cases[n];
        string hf = TinyHfCheckpoint.Write(_dir.File(n), options);
        string gguf = _dir.File(n + ".gguf");
        HfToGgufConverter.Convert(hf, gguf, GgmlType.F32, m => TinyHfCheckpoint.AddVocabulary(m, options.Vocab));
        return (hf, gguf);
    })).Value;

    /// <summary>The ONNX folder of a case, exported from its HF folder (or its GGUF) at a precision.</summary>
    public string Export(string name, OnnxPrecision precision, bool fromGguf = false) =>
        _exports.GetOrAdd($"{name}-{precision}-{(fromGguf ? "gguf" : "hf")}", key => new Lazy<string>(() =>
        {
            var (hf, gguf) = Get(name);
            string output = _dir.File("onnx-" + key);
            OnnxExporter.Export(fromGguf ? gguf : hf, output, new OnnxExportOptions { Precision = precision });
            return output;
        })).Value;

    public void Dispose() => _dir.Dispose();
}
