using EdgeTune.Formats.Onnx;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeTune.Export.Tests;

/// <summary>
/// An exported model.onnx run directly by ONNX Runtime (batch 1), the KV cache carried by the caller as the
/// graph's present outputs fed back as the next past inputs.
/// </summary>
public sealed class OrtDecoder : IDisposable
{
    private readonly InferenceSession _session;
    private readonly GenAiDecoderConfig _c;
    private List<OrtValue> _past;
    private int _pastLength;

    public OrtDecoder(string folder)
    {
        _c = OnnxFolder.ReadConfig(folder);
        using var options = new SessionOptions { IntraOpNumThreads = 2 };
        _session = new InferenceSession(Path.Combine(folder, _c.Filename), options);
        IoType = _session.InputMetadata["past_key_values.0.key"].ElementDataType;
        _past = EmptyCache();
    }

    public TensorElementType IoType { get; }

    private List<OrtValue> EmptyCache() => Enumerable.Range(0, 2 * _c.Layers)
        .Select(_ => OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, IoType, [1, _c.KvHeads, 0, _c.HeadSize])).ToList();

    public void Reset()
    {
        foreach (var v in _past) v.Dispose();
        _past = EmptyCache();
        _pastLength = 0;
    }

    /// <summary>Feeds <paramref name="tokens"/> after what the cache holds; returns their logits (T, V).</summary>
    public float[] Run(int[] tokens)
    {
        int total = _pastLength + tokens.Length;
        using var ids = OrtValue.CreateTensorValueFromMemory(tokens.Select(t => (long)t).ToArray(), [1, tokens.Length]);
        using var mask = OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(1L, total).ToArray(), [1, total]);
        var names = new List<string> { "input_ids", "attention_mask" };
        var values = new List<OrtValue> { ids, mask };
        for (int i = 0; i < _c.Layers; i++)
        {
            names.Add($"past_key_values.{i}.key"); values.Add(_past[2 * i]);
            names.Add($"past_key_values.{i}.value"); values.Add(_past[2 * i + 1]);
        }
        var outputNames = new List<string> { "logits" };
        for (int i = 0; i < _c.Layers; i++) { outputNames.Add($"present.{i}.key"); outputNames.Add($"present.{i}.value"); }
        using var runOptions = new RunOptions();
        var outputs = _session.Run(runOptions, names, values, outputNames);
        var logits = ToFloat(outputs[0]);
        outputs[0].Dispose();
        foreach (var v in _past) v.Dispose();
        _past = outputs.Skip(1).ToList();
        _pastLength = total;
        return logits;
    }

    private static float[] ToFloat(OrtValue v) =>
        v.GetTensorTypeAndShape().ElementDataType == TensorElementType.Float16
            ? v.GetTensorDataAsSpan<Float16>().ToArray().Select(h => (float)BitConverter.UInt16BitsToHalf(h.value)).ToArray()
            : v.GetTensorDataAsSpan<float>().ToArray();

    public void Dispose()
    {
        foreach (var v in _past) v.Dispose();
        _session.Dispose();
    }
}
