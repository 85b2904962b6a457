using EdgeTune.Core;
using EdgeTune.Core.Quantization;
using Microsoft.Win32.SafeHandles;

namespace EdgeTune.Formats.Gguf.Quantize;

public sealed record QuantizeOptions
{
    /// <summary>Every quantisable tensor gets the file type's base type: no mix rules (llama-quantize --pure).</summary>
    public bool Pure { get; init; }

    /// <summary>Worker threads; 0 means one per core.</summary>
    public int Threads { get; init; }

    /// <summary>Allow tensors that are already quantised to be dequantised and quantised again.</summary>
    public bool AllowRequantize { get; init; }
}

/// <summary>Progress of a quantisation in source bytes.</summary>
public readonly record struct QuantizeProgress(long BytesDone, long BytesTotal, int TensorsDone, int TensorCount, string Tensor);

public sealed record QuantizeResult(IReadOnlyList<PlannedTensor> Plan, long InputBytes, long OutputBytes, TimeSpan Elapsed);

/// <summary>
/// GGUF → GGUF quantisation with llama.cpp's type choices and llama.cpp-identical block bytes. Streams:
/// source rows are read in chunks (never a whole tensor at once), quantised on all threads, and written
/// in order, so memory stays at a few chunk buffers whatever the model size.
/// </summary>
public static class GgufQuantizer
{
    // Rows are processed in chunks of about this many values (16 MB of float32), split across the threads.
    private const int ChunkValues = 4 << 20;

    public static QuantizeResult Run(string inputPath, string outputPath, LlamaFileType fileType, QuantizeOptions? options = null,
        IProgress<QuantizeProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        options ??= new QuantizeOptions();
        int threads = options.Threads > 0 ? options.Threads : Environment.ProcessorCount;
        if (Path.GetFullPath(inputPath) == Path.GetFullPath(outputPath))
            throw new EdgeTuneException($"{outputPath}: output would overwrite the input");
        var started = System.Diagnostics.Stopwatch.StartNew();

        using var model = GgufFile.Open(inputPath);
        var plan = QuantPlan.Create(model, fileType, options.Pure);
        foreach (var p in plan)
        {
            if (!p.Converts) continue;
            if (!QuantCodecs.CanDequantize(p.Source.Type))
                throw new EdgeTuneException($"{inputPath}: tensor '{p.Source.Name}' is {GgmlTypes.Name(p.Source.Type)}, which EdgeTune cannot read back to convert");
            if (GgmlTypes.IsQuantized(p.Source.Type) && !options.AllowRequantize)
                throw new EdgeTuneException($"{inputPath}: tensor '{p.Source.Name}' is already quantised ({GgmlTypes.Name(p.Source.Type)}); requantising loses quality, pass --allow-requantize to do it anyway");
            if (!QuantCodecs.CanQuantize(p.Target))
                throw new EdgeTuneException($"{inputPath}: tensor '{p.Source.Name}' would need {GgmlTypes.Name(p.Target)}, which EdgeTune cannot write");
        }

        var writer = new GgufWriter();
        foreach (var (key, value) in model.Metadata) writer.Metadata.Set(key, value);
        foreach (var key in new[] { "split.no", "split.count", "split.tensors.count" }) writer.Metadata.Remove(key);
        // llama.cpp removes and re-adds these two, so they end up last; doing the same keeps the files alike.
        writer.Metadata.Remove("general.quantization_version");
        writer.Metadata.Set("general.quantization_version", GgufValue.U32(2));
        writer.Metadata.Remove("general.file_type");
        writer.Metadata.Set("general.file_type", GgufValue.U32((uint)fileType));

        long totalBytes = plan.Sum(p => p.Source.ByteLength), doneBytes = 0;
        int doneTensors = 0;
        using var handle = File.OpenHandle(inputPath, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
        foreach (var p in plan)
        {
            var item = p;
            writer.AddTensor(p.Source.Name, p.Target, p.Source.Shape, stream =>
            {
                if (item.Converts) Convert(handle, model, item, stream, threads, cancellationToken);
                else Copy(handle, model, item.Source, stream, cancellationToken);
                doneBytes += item.Source.ByteLength;
                progress?.Report(new QuantizeProgress(doneBytes, totalBytes, ++doneTensors, plan.Count, item.Source.Name));
            });
        }
        writer.Write(outputPath, cancellationToken: cancellationToken);
        return new QuantizeResult(plan, model.FileSize, new FileInfo(outputPath).Length, started.Elapsed);
    }

    private static void Copy(SafeFileHandle input, GgufFile model, GgufTensorInfo tensor, Stream output, CancellationToken ct)
    {
        var buffer = new byte[Math.Min(tensor.ByteLength, 8 << 20)];
        long offset = model.DataOffset + tensor.Offset, remaining = tensor.ByteLength;
        while (remaining > 0)
        {
            ct.ThrowIfCancellationRequested();
            int n = (int)Math.Min(remaining, buffer.Length);
            ReadExactly(input, buffer.AsSpan(0, n), offset, model.Path);
            output.Write(buffer, 0, n);
            offset += n;
            remaining -= n;
        }
    }

    private static void Convert(SafeFileHandle input, GgufFile model, PlannedTensor plan, Stream output, int threads, CancellationToken ct)
    {
        var src = plan.Source;
        long rowLength = src.RowLength, rows = src.RowCount;
        if (rows == 0) return;
        long srcRowBytes = src.RowBytes, dstRowBytes = GgmlTypes.RowBytes(plan.Target, rowLength);
        int rowsPerChunk = (int)Math.Clamp(ChunkValues / rowLength, 1, rows);
        if ((long)rowsPerChunk * Math.Max(srcRowBytes, Math.Max(dstRowBytes, rowLength * 4)) > int.MaxValue)
            throw new EdgeTuneException($"{model.Path}: tensor '{src.Name}' has rows of {rowLength} values, too long to convert");

        bool sourceIsFloat = src.Type == GgmlType.F32;
        var srcBuffer = new byte[rowsPerChunk * srcRowBytes];
        var dstBuffer = new byte[rowsPerChunk * dstRowBytes];
        // A float scratch row block per thread, only when the source must be decoded first.
        var scratch = sourceIsFloat ? null : new float[threads][];

        for (long row = 0; row < rows; row += rowsPerChunk)
        {
            ct.ThrowIfCancellationRequested();
            int n = (int)Math.Min(rowsPerChunk, rows - row);
            ReadExactly(input, srcBuffer.AsSpan(0, (int)(n * srcRowBytes)), model.DataOffset + src.Offset + row * srcRowBytes, model.Path);
            int workers = Math.Min(threads, n);
            Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers, CancellationToken = ct }, w =>
            {
                int first = (int)((long)n * w / workers), last = (int)((long)n * (w + 1) / workers);
                if (first == last) return;
                var inBytes = srcBuffer.AsSpan((int)(first * srcRowBytes), (int)((last - first) * srcRowBytes));
                var outBytes = dstBuffer.AsSpan((int)(first * dstRowBytes), (int)((last - first) * dstRowBytes));
                if (sourceIsFloat)
                {
                    QuantCodecs.Quantize(plan.Target, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(inBytes), outBytes);
                    return;
                }
                // Decode and encode row by row so the scratch stays one row long.
                var floats = scratch![w] ??= new float[rowLength];
                for (int r = 0; r < last - first; r++)
                {
                    QuantCodecs.Dequantize(src.Type, inBytes.Slice((int)(r * srcRowBytes), (int)srcRowBytes), floats);
                    QuantCodecs.Quantize(plan.Target, floats, outBytes.Slice((int)(r * dstRowBytes), (int)dstRowBytes));
                }
            });
            output.Write(dstBuffer, 0, (int)(n * dstRowBytes));
        }
    }

    private static void ReadExactly(SafeFileHandle handle, Span<byte> buffer, long offset, string path)
    {
        while (!buffer.IsEmpty)
        {
            int read = RandomAccess.Read(handle, buffer, offset);
            if (read == 0) throw FileFormatException.AtOffset(path, offset, "file ended early (was it truncated while being read?)");
            buffer = buffer[read..];
            offset += read;
        }
    }
}
