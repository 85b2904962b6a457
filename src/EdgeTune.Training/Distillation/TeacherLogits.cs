using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Core.IO;
using EdgeTune.Core.Runs;
using EdgeTune.Inference;
using EdgeTune.Inference.LlamaCpp;
using EdgeTune.Inference.Reference;
using EdgeTune.Kernels;
using EdgeTune.Recipes;
using EdgeTune.Training.Batching;

namespace EdgeTune.Training.Distillation;

/// <summary>
/// What a teacher-logits file was computed from. A file is reused only when every field equals the run's:
/// the training file's SHA-256, the teacher's (and its adapter's), the templated token ids and loss masks of every
/// example (this covers the chat template, max_seq_len, train_on_inputs and the field mapping) and top_k.
/// </summary>
public sealed record TeacherLogitsKey(string TrainSha256, string TeacherSha256, string? TeacherAdapterSha256, string TemplateSha256, int TopK, int Vocabulary)
{
    /// <summary>The first field that differs, in words; null when the keys are equal.</summary>
    public string? Difference(TeacherLogitsKey other) =>
        TrainSha256 != other.TrainSha256 ? "the training file changed" :
        TeacherSha256 != other.TeacherSha256 ? "the teacher changed" :
        TeacherAdapterSha256 != other.TeacherAdapterSha256 ? "the teacher adapter changed" :
        TemplateSha256 != other.TemplateSha256 ? "the templated examples changed (chat template, max_seq_len, train_on_inputs or field mapping)" :
        TopK != other.TopK ? $"top_k changed ({other.TopK} in the file, {TopK} now)" :
        Vocabulary != other.Vocabulary ? $"the vocabulary changed ({other.Vocabulary} in the file, {Vocabulary} now)" : null;
}

/// <summary>
/// The teacher's top-k tokens and log-probabilities at every trained position of every training example, the
/// log-probabilities renormalised over the k (at temperature 1; the loss applies the temperature). Per example the
/// rows follow the positions whose target is not −1, in order.
/// <para>File layout (little-endian): "ETTOPK01"; u32 header length; the header (JSON: the key, the teacher's path,
/// counts); then per example a u32 row count and, per row, k i32 ids then k f32 log-probabilities.</para>
/// </summary>
public sealed class TeacherLogits
{
    private static readonly byte[] Magic = "ETTOPK01"u8.ToArray();
    private const int MaxHeaderBytes = 1 << 20;

    public required TeacherLogitsKey Key { get; init; }
    public required string Teacher { get; init; }
    public required int TopK { get; init; }
    /// <summary>Per example: (rows·k) ids and log-probabilities.</summary>
    public required IReadOnlyList<(int[] Ids, float[] LogProbs)> Examples { get; init; }

    public long Positions => Examples.Sum(e => (long)e.Ids.Length / TopK);

    /// <summary>Bytes a position takes in the file: k ids and k log-probabilities.</summary>
    public static int BytesPerPosition(int topK) => topK * 8;

    public void Write(string path)
    {
        var header = JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, object?>
        {
            ["version"] = 1, ["teacher"] = Teacher, ["train_sha256"] = Key.TrainSha256, ["teacher_sha256"] = Key.TeacherSha256,
            ["teacher_adapter_sha256"] = Key.TeacherAdapterSha256, ["template_sha256"] = Key.TemplateSha256, ["top_k"] = TopK,
            ["vocab"] = Key.Vocabulary, ["examples"] = Examples.Count, ["positions"] = Positions,
        });
        using var buffer = new MemoryStream();
        var w = new BinaryWriter(buffer);
        w.Write(Magic);
        w.Write((uint)header.Length);
        w.Write(header);
        foreach (var (ids, logProbs) in Examples)
        {
            w.Write((uint)(ids.Length / TopK));
            for (int r = 0; r < ids.Length / TopK; r++)
            {
                for (int i = 0; i < TopK; i++) w.Write(ids[r * TopK + i]);
                for (int i = 0; i < TopK; i++) w.Write(logProbs[r * TopK + i]);
            }
        }
        w.Flush();
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        DurableFiles.WriteAllBytes(path, buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
    }

    /// <summary>Reads a file; a damaged one is an <see cref="EdgeTuneException"/> naming the file and the byte offset.</summary>
    public static TeacherLogits Read(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        EdgeTuneException Bad(long offset, string why) => new($"{path}: not a teacher-logits file at byte {offset}: {why} (delete it and run `edgetune distill teacher`)");
        if (bytes.Length < 12 || !bytes.AsSpan(0, 8).SequenceEqual(Magic)) throw Bad(0, "no ETTOPK01 signature");
        uint headerLength = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(8));
        if (headerLength > MaxHeaderBytes || 12 + headerLength > bytes.Length) throw Bad(8, $"header length {headerLength} does not fit the file");
        JsonElement h;
        try { h = JsonDocument.Parse(bytes.AsMemory(12, (int)headerLength)).RootElement; }
        catch (JsonException e) { throw Bad(12, "the header is not JSON: " + e.Message); }
        int k, vocab, count;
        TeacherLogitsKey key;
        string teacher;
        try
        {
            k = h.GetProperty("top_k").GetInt32();
            vocab = h.GetProperty("vocab").GetInt32();
            count = h.GetProperty("examples").GetInt32();
            teacher = h.GetProperty("teacher").GetString() ?? "";
            key = new TeacherLogitsKey(h.GetProperty("train_sha256").GetString()!, h.GetProperty("teacher_sha256").GetString()!,
                h.GetProperty("teacher_adapter_sha256").GetString(), h.GetProperty("template_sha256").GetString()!, k, vocab);
        }
        catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw Bad(12, "the header lacks a field: " + e.Message);
        }
        if (k <= 0 || vocab <= 0 || count < 0) throw Bad(12, $"top_k {k}, vocab {vocab}, examples {count}");
        long at = 12 + headerLength;
        // Each example takes at least its 4-byte row count: a count beyond that is a damaged header, not an allocation.
        if (count > (bytes.Length - at) / 4) throw Bad(12, $"{count} examples cannot fit the {bytes.Length - at} bytes left");
        var examples = new List<(int[], float[])>(count);
        for (int e = 0; e < count; e++)
        {
            if (at + 4 > bytes.Length) throw Bad(at, $"the file ends inside example {e}");
            long rows = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan((int)at));
            long need = rows * BytesPerPosition(k);
            if (at + 4 + need > bytes.Length) throw Bad(at, $"example {e} claims {rows} rows, more than the file holds");
            at += 4;
            var ids = new int[rows * k];
            var lp = new float[rows * k];
            for (long r = 0; r < rows; r++)
            {
                for (int i = 0; i < k; i++, at += 4)
                {
                    int id = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan((int)at));
                    if ((uint)id >= (uint)vocab) throw Bad(at, $"token id {id} outside the vocabulary of {vocab}");
                    ids[r * k + i] = id;
                }
                for (int i = 0; i < k; i++, at += 4) lp[r * k + i] = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan((int)at));
            }
            examples.Add((ids, lp));
        }
        if (at != bytes.Length) throw Bad(at, $"{bytes.Length - at} bytes after the last example");
        return new TeacherLogits { Key = key, Teacher = teacher, TopK = k, Examples = examples };
    }

    /// <summary>SHA-256 over every example's token ids and loss mask, in order: the templating the file's rows follow.</summary>
    public static string TemplateHash(IReadOnlyList<TrainingExample> examples)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> four = stackalloc byte[4];
        foreach (var e in examples)
        {
            BinaryPrimitives.WriteInt32LittleEndian(four, e.Ids.Length);
            sha.AppendData(four);
            for (int t = 0; t < e.Ids.Length; t++)
            {
                BinaryPrimitives.WriteInt32LittleEndian(four, e.Ids[t]);
                sha.AppendData(four);
                BinaryPrimitives.WriteInt32LittleEndian(four, e.Targets[t]);
                sha.AppendData(four);
            }
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    /// <summary>The key of a recipe's teacher over its training examples (the hashes of big files are cached in the run folder).</summary>
    public static TeacherLogitsKey KeyFor(Recipe recipe, IReadOnlyList<TrainingExample> examples, int vocabulary)
    {
        var d = recipe.Distill ?? throw new InvalidOperationException("the recipe has no [distill] section");
        var hashes = new RunRegistry(recipe.Output.Dir);
        return new TeacherLogitsKey(hashes.HashOf(recipe.Data.Train) ?? "", hashes.HashOf(d.Teacher) ?? "", hashes.HashOf(d.TeacherAdapter),
            TemplateHash(examples), d.TopK, vocabulary);
    }

    /// <summary>
    /// Runs the teacher over the examples: llama.cpp for a GGUF teacher, EdgeTune's reference forward for a
    /// Hugging Face folder. A teacher that cannot load is one error naming it.
    /// </summary>
    public static TeacherLogits Compute(Recipe recipe, IReadOnlyList<TrainingExample> examples, TeacherLogitsKey key, Action<string>? say,
        CancellationToken cancel = default)
    {
        var d = recipe.Distill!;
        int k = d.TopK, maxLength = examples.Max(e => e.Ids.Length);
        var options = new ModelOptions
        {
            Path = d.Teacher,
            Adapters = d.TeacherAdapter is null ? [] : [d.TeacherAdapter],
            ContextSize = maxLength,
            MaxContext = Math.Max(maxLength, 1),
            Threads = recipe.Train.Threads > 0 ? recipe.Train.Threads : Math.Max(1, Environment.ProcessorCount),
        };
        IInferenceModel model;
        try
        {
            model = Directory.Exists(d.Teacher) ? ReferenceRuntime.Instance.Open(options, cancel) : LlamaCppRuntime.Default.Open(options, cancel);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw new EdgeTuneException($"{d.Teacher}: the teacher cannot be loaded: {MessageText.OneLine(e.Message)}");
        }
        using (model as IDisposable)
        {
            if (model.VocabularySize != key.Vocabulary)
                throw new EdgeTuneException($"{d.Teacher}: the teacher's logits have {model.VocabularySize} entries, the student's vocabulary {key.Vocabulary}");
            var clock = Stopwatch.StartNew();
            var lastReport = TimeSpan.Zero;
            long tokens = 0;
            var rows = new List<(int[], float[])>(examples.Count);
            for (int n = 0; n < examples.Count; n++)
            {
                cancel.ThrowIfCancellationRequested();
                var e = examples[n];
                int first = Array.FindIndex(e.Targets, t => t >= 0);
                float[] logits = model.Logits(e.Ids, first);
                int count = e.Targets.Count(t => t >= 0);
                var ids = new int[count * k];
                var lp = new float[count * k];
                int row = 0;
                for (int t = first; t < e.Ids.Length; t++)
                {
                    if (e.Targets[t] < 0) continue;
                    TopKRenormalised(logits.AsSpan((t - first) * key.Vocabulary, key.Vocabulary), ids.AsSpan(row * k, k), lp.AsSpan(row * k, k));
                    row++;
                }
                rows.Add((ids, lp));
                tokens += e.Ids.Length;
                if (say is not null && (clock.Elapsed - lastReport > TimeSpan.FromSeconds(5) || n == examples.Count - 1))
                {
                    lastReport = clock.Elapsed;
                    say(string.Create(CultureInfo.InvariantCulture, $"teacher: {n + 1}/{examples.Count} examples, {tokens / Math.Max(1e-9, clock.Elapsed.TotalSeconds):F0} tokens/s"));
                }
            }
            return new TeacherLogits { Key = key, Teacher = d.Teacher, TopK = k, Examples = rows };
        }
    }

    /// <summary>The k largest logits' ids (largest first, ties to the lower id) and their log-softmax over those k.</summary>
    public static void TopKRenormalised(ReadOnlySpan<float> logits, Span<int> ids, Span<float> logProbs)
    {
        int k = ids.Length;
        // A min-heap of the k best would be O(V log k); k ≤ 64 over V ≤ 256k is a few ms per position either way.
        int filled = 0;
        for (int v = 0; v < logits.Length; v++)
        {
            float x = logits[v];
            if (filled == k && !(x > logits[ids[k - 1]])) continue;
            int at = filled < k ? filled++ : k - 1;
            while (at > 0 && x > logits[ids[at - 1]]) { ids[at] = ids[at - 1]; at--; }
            ids[at] = v;
        }
        double max = logits[ids[0]], sum = 0;
        for (int i = 0; i < k; i++) sum += Math.Exp(logits[ids[i]] - max);
        double lse = max + Math.Log(sum);
        for (int i = 0; i < k; i++) logProbs[i] = (float)(logits[ids[i]] - lse);
    }

    /// <summary>
    /// The file for a recipe: read when its key matches, computed and written when it is missing; a file computed
    /// from other inputs is refused (one line naming it and what changed) unless <paramref name="rebuild"/>.
    /// </summary>
    public static TeacherLogits Ensure(Recipe recipe, IReadOnlyList<TrainingExample> examples, int vocabulary, bool rebuild, Action<string>? say,
        CancellationToken cancel = default)
    {
        var d = recipe.Distill!;
        var key = KeyFor(recipe, examples, vocabulary);
        if (File.Exists(d.Logits))
        {
            var existing = Read(d.Logits);
            string? difference = key.Difference(existing.Key);
            if (difference is null && existing.Examples.Count != examples.Count) difference = $"the number of examples changed ({existing.Examples.Count} in the file, {examples.Count} now)";
            for (int e = 0; difference is null && e < examples.Count; e++)
                if (existing.Examples[e].Ids.Length != examples[e].TrainedTokens * existing.TopK)
                    difference = $"example {e + 1} ({examples[e].File}:{examples[e].Line}) has {examples[e].TrainedTokens} trained positions, the file {existing.Examples[e].Ids.Length / existing.TopK}";
            if (difference is null)
            {
                say?.Invoke($"teacher logits: {d.Logits} is up to date ({existing.Positions} positions, top {existing.TopK})");
                return existing;
            }
            if (!rebuild)
                throw new EdgeTuneException($"{d.Logits}: stale teacher logits: {difference}; run `edgetune distill teacher {recipe.File}` to recompute them");
            say?.Invoke($"teacher logits: {d.Logits} is stale ({difference}); recomputing");
        }
        var computed = Compute(recipe, examples, key, say, cancel);
        computed.Write(d.Logits);
        say?.Invoke($"teacher logits: {computed.Positions} positions × top {d.TopK} → {d.Logits} ({new FileInfo(d.Logits).Length:N0} bytes)");
        return computed;
    }

    /// <summary>
    /// The batch's rows of teacher entries, aligned with the batch's layout (<see cref="TrainingExamples.Collate"/> or
    /// <see cref="TrainingExamples.Pack"/>): row offsets[i] + t holds example i's entry for position t when t is
    /// trained; other rows are zeros (the loss skips them).
    /// </summary>
    public (int[] Ids, float[] LogProbs) Collate(IReadOnlyList<int> exampleIndices, IReadOnlyList<TrainingExample> examples, Batch batch)
    {
        int k = TopK;
        var ids = new int[batch.Tokens.Length * k];
        var lp = new float[ids.Length];
        for (int b = 0; b < exampleIndices.Count; b++)
        {
            var e = examples[exampleIndices[b]];
            var (eIds, eLp) = Examples[exampleIndices[b]];
            int row = 0, offset = batch.Offsets[b];
            for (int t = 0; t < e.Targets.Length; t++)
            {
                if (e.Targets[t] < 0) continue;
                eIds.AsSpan(row * k, k).CopyTo(ids.AsSpan((offset + t) * k, k));
                eLp.AsSpan(row * k, k).CopyTo(lp.AsSpan((offset + t) * k, k));
                row++;
            }
        }
        return (ids, lp);
    }

    /// <summary>The kernel settings of a recipe's [distill] section.</summary>
    public static DistillSettings Settings(DistillSection d) => new(d.Loss switch
    {
        DistillLoss.ReverseKl => DistillDivergence.ReverseKl,
        DistillLoss.Jsd => DistillDivergence.Jsd,
        _ => DistillDivergence.ForwardKl,
    }, d.Loss == DistillLoss.Jsd ? d.Beta : d.Loss == DistillLoss.ReverseKl ? 1 : 0, d.Temperature, d.Alpha, d.TopK);
}
