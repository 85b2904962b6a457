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
        var buffers = new ChunkBuffers();
        foreach (var p in plan)
        {
            var item = p;
            writer.AddTensor(p.Source.Name, p.Target, p.Source.Shape, stream =>
            {
                if (item.Converts) Convert(handle, model, item, stream, threads, buffers, cancellationToken);
                else Copy(handle, model, item.Source, stream, buffers, cancellationToken);
                doneBytes += item.Source.ByteLength;
                progress?.Report(new QuantizeProgress(doneBytes, totalBytes, ++doneTensors, plan.Count, item.Source.Name));
            });
        }
        writer.Write(outputPath, cancellationToken: cancellationToken);
        return new QuantizeResult(plan, model.FileSize, new FileInfo(outputPath).Length, started.Elapsed);
    }

    private static void Copy(SafeFileHandle input, GgufFile model, GgufTensorInfo tensor, Stream output, ChunkBuffers buffers, CancellationToken ct)
    {
        buffers.Reserve(Math.Min(tensor.ByteLength, 8 << 20), 0, 0, 0);
        var buffer = buffers.Source[0];
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

    private static void Convert(SafeFileHandle input, GgufFile model, PlannedTensor plan, Stream output, int threads, ChunkBuffers buffers, CancellationToken ct)
    {
        var src = plan.Source;
        long rowLength = src.RowLength, rows = src.RowCount;
        if (rows == 0) return;
        long srcRowBytes = src.RowBytes, dstRowBytes = GgmlTypes.RowBytes(plan.Target, rowLength);
        int rowsPerChunk = (int)Math.Clamp(ChunkValues / rowLength, 1, rows);
        if ((long)rowsPerChunk * Math.Max(srcRowBytes, Math.Max(dstRowBytes, rowLength * 4)) > int.MaxValue)
            throw new EdgeTuneException($"{model.Path}: tensor '{src.Name}' has rows of {rowLength} values, too long to convert");
        buffers.Reserve(rowsPerChunk * srcRowBytes, rowsPerChunk * dstRowBytes, threads, src.Type == GgmlType.F32 ? 0 : rowLength);
        long dataStart = model.DataOffset + src.Offset;

        // A three-stage pipeline: chunk k+1 is read and chunk k-1 written while chunk k is quantised on all
        // threads, so reading from the page cache and writing out overlap with the arithmetic.
        int RowsIn(long row) => (int)Math.Min(rowsPerChunk, rows - row);
        Task Read(long row, byte[] into) => Task.Run(() =>
            ReadExactly(input, into.AsSpan(0, (int)(RowsIn(row) * srcRowBytes)), dataStart + row * srcRowBytes, model.Path), ct);

        int current = 0;
        var reading = Read(0, buffers.Source[0]);
        var writing = Task.CompletedTask;
        for (long row = 0; row < rows; row += rowsPerChunk)
        {
            ct.ThrowIfCancellationRequested();
            reading.GetAwaiter().GetResult();
            var srcBuffer = buffers.Source[current];
            var dstBuffer = buffers.Destination[current];
            if (row + rowsPerChunk < rows) reading = Read(row + rowsPerChunk, buffers.Source[1 - current]);
            int n = RowsIn(row);
            QuantizeChunk(src.Type, plan.Target, srcBuffer, dstBuffer, n, rowLength, srcRowBytes, dstRowBytes, threads, buffers, ct);
            writing.GetAwaiter().GetResult(); // the other destination buffer is free again once its write is done
            int length = (int)(n * dstRowBytes);
            writing = Task.Run(() => output.Write(dstBuffer, 0, length), ct);
            current = 1 - current;
        }
        writing.GetAwaiter().GetResult();
    }

    private static void QuantizeChunk(GgmlType from, GgmlType to, byte[] srcBuffer, byte[] dstBuffer, int n, long rowLength,
        long srcRowBytes, long dstRowBytes, int threads, ChunkBuffers buffers, CancellationToken ct)
    {
        int workers = Math.Min(threads, n);
        Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers, CancellationToken = ct }, w =>
        {
            int first = (int)((long)n * w / workers), last = (int)((long)n * (w + 1) / workers);
            if (first == last) return;
            var inBytes = srcBuffer.AsSpan((int)(first * srcRowBytes), (int)((last - first) * srcRowBytes));
            var outBytes = dstBuffer.AsSpan((int)(first * dstRowBytes), (int)((last - first) * dstRowBytes));
            if (from == GgmlType.F32)
            {
                QuantCodecs.Quantize(to, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(inBytes), outBytes);
                return;
            }
            // Decode and encode row by row so the scratch stays one row long.
            var floats = buffers.Scratch[w].AsSpan(0, (int)rowLength);
            for (int r = 0; r < last - first; r++)
            {
                QuantCodecs.Dequantize(from, inBytes.Slice((int)(r * srcRowBytes), (int)srcRowBytes), floats);
                QuantCodecs.Quantize(to, floats, outBytes.Slice((int)(r * dstRowBytes), (int)dstRowBytes));
            }
        });
    }

    /// <summary>
    /// Two source and two destination chunk buffers (for the pipeline) and a row of float scratch per thread,
    /// allocated once per run and grown only when a tensor needs more: a fresh 16 MB array per tensor would be
    /// zeroed by the runtime every time.
    /// </summary>
    private sealed class ChunkBuffers
    {
        public byte[][] Source { get; } = [[], []];
        public byte[][] Destination { get; } = [[], []];
        public float[][] Scratch { get; private set; } = [];

        public void Reserve(long sourceBytes, long destinationBytes, int threads, long scratchFloats)
        {
            for (int i = 0; i < 2; i++)
            {
                if (Source[i].Length < sourceBytes) Source[i] = GC.AllocateUninitializedArray<byte>((int)sourceBytes);
                if (Destination[i].Length < destinationBytes) Destination[i] = GC.AllocateUninitializedArray<byte>((int)destinationBytes);
            }
            if (Scratch.Length < threads) Scratch = [.. Scratch, .. Enumerable.Range(0, threads - Scratch.Length).Select(_ => Array.Empty<float>())];
            for (int t = 0; t < threads; t++)
                if (Scratch[t].Length < scratchFloats) Scratch[t] = new float[scratchFloats];
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
