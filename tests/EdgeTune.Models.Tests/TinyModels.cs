using System.Collections.Concurrent;
using EdgeTune.Core;
using EdgeTune.Models.Conversion;
using EdgeTune.Testing;

namespace EdgeTune.Models.Tests;

/// <summary>The tiny checkpoints every parity test runs on, each written and converted once per test run.</summary>
public sealed class TinyModels : IDisposable
{
    public static readonly IReadOnlyDictionary<string, TinyHfOptions> Cases = new Dictionary<string, TinyHfOptions>
    {
        ["llama-mha"] = new() { ModelType = "llama", Heads = 4, KvHeads = 4, RopeTheta = 10000 },
        ["llama-gqa-tied-llama3rope"] = new() { ModelType = "llama", Heads = 4, KvHeads = 2, Tied = true, RopeTheta = 500000, Llama3Scaling = true, Seed = 11 },
        ["mistral-gqa"] = new() { ModelType = "mistral", Heads = 8, KvHeads = 2, Hidden = 128, Intermediate = 160, RopeTheta = 1000000, Seed = 12 },
        ["qwen2-gqa-tied"] = new() { ModelType = "qwen2", Heads = 4, KvHeads = 2, Tied = true, RopeTheta = 1000000, RmsEps = 1e-6, Seed = 13 },
        ["qwen2-mha"] = new() { ModelType = "qwen2", Heads = 4, KvHeads = 4, RopeTheta = 10000, Seed = 14 },
    };

    public static TheoryData<string> Names => new(Cases.Keys);

    private readonly TempDir _dir = new();
    private readonly ConcurrentDictionary<string, Lazy<(string Hf, string Gguf)>> _built = new();

    /// <summary>The HF folder of a case and its F32 GGUF conversion.</summary>
    public (string Hf, string Gguf) Get(string name) => _built.GetOrAdd(name, n => new Lazy<(string, string)>(() =>
    {
        var options = Cases[n];
        string hf = TinyHfCheckpoint.Write(_dir.File(n), options);
        string gguf = _dir.File(n + ".gguf");
        HfToGgufConverter.Convert(hf, gguf, GgmlType.F32, m => TinyHfCheckpoint.AddVocabulary(m, options.Vocab));
        return (hf, gguf);
    })).Value;

    public string Dir => _dir.Path;

    public void Dispose() => _dir.Dispose();
}
