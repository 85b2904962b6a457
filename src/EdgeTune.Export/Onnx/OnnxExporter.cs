using System.Globalization;
using EdgeTune.Core;
using EdgeTune.Formats.Onnx;
using EdgeTune.Models.Adapters;
using EdgeTune.Models.Reference;

namespace EdgeTune.Export.Onnx;

/// <summary>What an export wrote.</summary>
public sealed record OnnxExportResult(string Folder, string Type, OnnxPrecision Precision, long ModelBytes, long DataBytes, int Nodes, int Initializers, IReadOnlyList<string> TokenizerFiles)
{
    /// <summary>Where the folder will behave differently from the source in ONNX Runtime GenAI (one line each).</summary>
    public IReadOnlyList<string> Warnings { get; init; } = [];
}

/// <summary>
/// Exports a llama-family model (Hugging Face folder or GGUF, optionally with a LoRA adapter merged) to a folder
/// ONNX Runtime GenAI loads: model.onnx + model.onnx.data, genai_config.json and the tokenizer files. Weights
/// stream one tensor at a time into the data file; the folder is written beside the target and renamed into
/// place only when complete and checked, so a failed or interrupted export leaves nothing half-written.
/// </summary>
public static class OnnxExporter
{
    public const string ModelFile = "model.onnx";
    public const string DataFile = "model.onnx.data";

    public static OnnxExportResult Export(string model, string outDir, OnnxExportOptions options,
        IProgress<(int Done, int Total, string Name)>? progress = null, CancellationToken cancellationToken = default)
    {
        if (options.BlockSize is < 16 or > 256 || (options.BlockSize & (options.BlockSize - 1)) != 0)
            throw new EdgeTuneException($"--block-size {options.BlockSize}: MatMulNBits needs a power of two from 16 to 256");
        if (options.AccuracyLevel is < 0 or > 4)
            throw new EdgeTuneException($"accuracy level {options.AccuracyLevel}: MatMulNBits takes 0 to 4");
        if (!Directory.Exists(model) && !File.Exists(model))
            throw new EdgeTuneException($"{model}: no such file or folder (a GGUF file or a Hugging Face checkpoint folder)");
        string target = Path.GetFullPath(outDir);
        if (File.Exists(target) || (Directory.Exists(target) && Directory.EnumerateFileSystemEntries(target).Any()))
            throw new EdgeTuneException($"{outDir}: already exists and is not empty (choose a new --out folder)");

        var adapter = options.Adapter is null ? null : LoraAdapter.Open(options.Adapter);
        string parent = Path.GetDirectoryName(target)!;
        Directory.CreateDirectory(parent);
        string temp = Path.Combine(parent, $".{Path.GetFileName(target)}.{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(temp);
        try
        {
            using var weights = ModelWeights.Open(model, adapter);
            var c = weights.Config;
            if (c.HeadDim % 16 != 0)
                throw new EdgeTuneException($"{model}: head size {c.HeadDim}: ONNX Runtime's GroupQueryAttention, which the export uses, needs a multiple of 16");
            // Read the tokenizer before the weights: a broken tokenizer should fail in a second, not after minutes.
            var tokenizer = TokenizerFiles.Prepare(model, c);

            DecoderGraph decoder;
            long dataBytes;
            using (var data = new OnnxExternalData(Path.Combine(temp, DataFile), DataFile))
            {
                decoder = new DecoderGraph(weights, options, data);
                decoder.Build(progress, cancellationToken);
                data.Complete();
                dataBytes = data.Length;
            }
            var bytes = OnnxModelFile.Encode(decoder.Graph, [new OnnxOpset("", 21), new OnnxOpset(DecoderGraph.Domain, 1)], "edgetune", "0.1.0");
            WriteDurably(Path.Combine(temp, ModelFile), bytes);

            string type = c.HfModelType;
            var eos = tokenizer.EosTokenIds.Count > 0 ? tokenizer.EosTokenIds : c.EosTokenIds;
            if (eos.Count == 0) throw new EdgeTuneException($"{model}: no end-of-sequence token id (config.json eos_token_id or GGUF tokenizer.ggml.eos_token_id); GenAI needs one to stop");
            GenAiConfig.Write(Path.Combine(temp, "genai_config.json"), GenAiConfig.Create(c, type, tokenizer.BosTokenId ?? c.BosTokenId ?? 1, eos, ModelFile));
            var tokenizerFiles = tokenizer.WriteTo(temp);

            OnnxFolder.Validate(temp);
            // Every file on disk before the folder appears under its name, and the rename durable after.
            EdgeTune.Core.IO.FolderSwap.SyncTree(temp);
            Directory.Move(temp, target);
            EdgeTune.Core.IO.DurableFiles.SyncFolder(Path.GetDirectoryName(Path.GetFullPath(target))!);
            return new OnnxExportResult(target, type, options.Precision, bytes.Length, dataBytes, decoder.Graph.Nodes.Count, decoder.Graph.Initializers.Count, tokenizerFiles)
            {
                Warnings = tokenizer.Warnings,
            };
        }
        catch
        {
            try { Directory.Delete(temp, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    private static void WriteDurably(string path, byte[] bytes)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        stream.Write(bytes);
        stream.Flush(flushToDisk: true);
    }

    public static string Describe(OnnxExportResult r) => string.Create(CultureInfo.InvariantCulture,
        $"wrote {r.Folder}: {r.Type} {r.Precision.ToString().ToLowerInvariant()}, {r.Nodes} nodes, {r.Initializers} initializers, " +
        $"model.onnx {r.ModelBytes / 1024.0:0.#} KiB, model.onnx.data {r.DataBytes / 1048576.0:0.##} MiB, tokenizer: {(r.TokenizerFiles.Count == 0 ? "none" : string.Join(", ", r.TokenizerFiles))}");
}
