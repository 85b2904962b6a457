using System.Buffers;
using System.Runtime.InteropServices;
using EdgeTune.Core;
using EdgeTune.Core.Numerics;
using EdgeTune.Core.Quantization;
using EdgeTune.Kernels;
using EdgeTune.Models.Architectures;
using EdgeTune.Recipes;

namespace EdgeTune.Training.Model;

/// <summary>
/// The llama block stack as a trainable graph over an <see cref="IComputeBackend"/>: forward, loss and the
/// hand-written backward (reverse order of the forward, op by op). LoRA adds scale·B·(dropout(x)·Aᵀ) to every
/// targeted linear layer over a frozen base held as float32, NF4 or a GGUF block type; full fine-tuning trains
/// every weight. Rows are tokens of B sequences of T positions (right-padded; padding rows carry target −1,
/// and causal attention never lets a real position see the padding after it).
/// </summary>
public sealed class TrainableLlama : IDisposable
{
    private readonly IComputeBackend _b;
    private readonly Layer[] _layers;
    private readonly Weight _embed, _outNorm, _head;
    private readonly DeviceBuffer _invFreq;
    // [model] add_tokens under LoRA/QLoRA: the new rows of the (frozen) embedding and head are trainable. They live
    // in Parameters and are copied into the frozen tables before each forward; the head's gradient goes through a
    // full-size scratch (the fused cross-entropy writes every row) of which only the new rows are kept.
    private readonly Weight? _addedEmbed, _addedHead;
    private readonly DeviceBuffer? _headScratch;
    private readonly List<IDisposable> _owned = [];
    private Activations? _acts;

    public ModelConfig Config { get; }
    public RopeLayout Rope { get; }
    public TrainingSetup Setup { get; }
    public ParameterLayout Layout { get; }
    public DeviceBuffer Parameters { get; }
    public DeviceBuffer Gradients { get; }
    public IComputeBackend Backend => _b;

    /// <summary>Device bytes of the frozen linear weights (what QLoRA shrinks), and of everything else frozen (embeddings, head, norms).</summary>
    public long FrozenLinearBytes { get; private set; }
    public long FrozenLinearParameters { get; private set; }
    public long FrozenOtherBytes { get; private set; }
    public long ActivationBytes => _acts?.Bytes ?? 0;
    /// <summary>The head-gradient scratch that training added tokens under LoRA costs (0 otherwise).</summary>
    public long AddedTokenScratchBytes { get; }

    private sealed class Weight
    {
        public DeviceBuffer? Value;       // float32 (trainable, or frozen float32 vectors and tables)
        public DeviceBuffer? Grad;        // trainable only
        public FrozenMatrix? Frozen;      // frozen matrices
    }

    private sealed class Lora
    {
        public required Weight A;         // (r, in)
        public required Weight B;         // (out, r)
        public required int TargetIndex;  // for the dropout seed
    }

    private sealed class Linear
    {
        public required string Name;      // GGUF name of the weight, e.g. blk.0.attn_q.weight
        public required int In, Out;
        public required Weight W;
        public Weight? Bias;
        public Lora? Lora;
    }

    private sealed class Layer
    {
        public required Weight AttnNorm, FfnNorm;
        public required Linear Q, K, V, O, Gate, Up, Down;
        public IEnumerable<Linear> Linears => [Q, K, V, O, Gate, Up, Down];
    }

    /// <param name="layers">Load only the first N blocks (the time estimate measures steps of a 1- and an 8-block model
    /// and extrapolates); null: all of them.</param>
    public TrainableLlama(BaseWeights weights, TrainingSetup setup, IComputeBackend backend, IProgress<string>? progress = null, int? layers = null)
    {
        _b = backend;
        if (layers is < 1 || layers > weights.Config.Layers) throw new ArgumentOutOfRangeException(nameof(layers), layers, $"1 to {weights.Config.Layers} blocks");
        Config = layers is { } k ? weights.Config with { Layers = k } : weights.Config;
        Rope = weights.Rope;
        Setup = setup;
        var c = Config;
        bool full = setup.Method == TuningMethod.Full;

        // Lay out the trainable tensors first, so that Parameters is one allocation.
        Layout = LayoutFor(c, setup);
        Parameters = Own(_b.Allocate(Math.Max(1, Layout.Total)));
        Gradients = Own(_b.Allocate(Math.Max(1, Layout.Total)));

        Weight Trainable(string name, float[]? initial)
        {
            var slot = Layout[name];
            var w = new Weight { Value = Parameters.Slice(slot.Offset, slot.Length), Grad = Gradients.Slice(slot.Offset, slot.Length) };
            if (initial is not null) _b.Upload(initial, w.Value);
            return w;
        }
        Weight FrozenVector(string name)
        {
            var buffer = Own(_b.Allocate(weights.Spec(name).Elements));
            StreamInto(weights, name, buffer);
            FrozenOtherBytes += buffer.Length * 4L;
            return new Weight { Value = buffer };
        }
        Weight StreamedTrainable(string name)
        {
            var w = Trainable(name, null);
            StreamInto(weights, name, w.Value!);
            return w;
        }
        Weight Vector(string name) => full ? StreamedTrainable(name) : FrozenVector(name);

        progress?.Report("loading weights");
        _embed = Vector("token_embd.weight");
        _layers = new Layer[c.Layers];
        int targetIndex = 0;
        for (int l = 0; l < c.Layers; l++)
        {
            string p = $"blk.{l}.";
            Linear Lin(string shortName)
            {
                var (inDim, outDim) = Dims(shortName);
                string name = p + TrainingSetup.Stems[shortName] + ".weight";
                var lin = new Linear { Name = name, In = inDim, Out = outDim, W = full ? StreamedTrainable(name) : FrozenLinear(weights, name, outDim, inDim) };
                string biasName = p + TrainingSetup.Stems[shortName] + ".bias";
                if (c.AttentionBias && shortName is "q" or "k" or "v") lin.Bias = Vector(biasName);
                if (!full && setup.Targets.Contains(shortName))
                {
                    var a = new float[(long)setup.Rank * inDim];
                    LoraInit(a, inDim, setup.Seed, l, targetIndex);
                    lin.Lora = new Lora { A = Trainable(name + ".lora_a", a), B = Trainable(name + ".lora_b", null), TargetIndex = targetIndex };
                }
                targetIndex++;
                return lin;
            }
            _layers[l] = new Layer
            {
                AttnNorm = Vector(p + "attn_norm.weight"), FfnNorm = Vector(p + "ffn_norm.weight"),
                Q = Lin("q"), K = Lin("k"), V = Lin("v"), O = Lin("o"), Gate = Lin("gate"), Up = Lin("up"), Down = Lin("down"),
            };
            progress?.Report($"loaded block {l + 1}/{c.Layers}");
        }
        _outNorm = Vector("output_norm.weight");
        _head = c.TiedEmbeddings ? _embed : Vector("output.weight");
        if (!full && setup.AddedTokens > 0)
        {
            long rows = (long)setup.AddedTokens * c.HiddenSize, first = ((long)c.VocabSize - setup.AddedTokens) * c.HiddenSize;
            float[] Tail(string name)
            {
                var tail = new float[rows];
                weights.Read(name, first, tail);
                return tail;
            }
            _addedEmbed = Trainable("token_embd.added", Tail("token_embd.weight"));
            _addedHead = c.TiedEmbeddings ? _addedEmbed : Trainable("output.added", Tail("output.weight"));
            _headScratch = Own(_b.Allocate((long)c.VocabSize * c.HiddenSize));
            AddedTokenScratchBytes = (long)c.VocabSize * c.HiddenSize * 4;
        }
        _invFreq = Own(_b.Allocate(weights.InverseFrequencies.Length));
        _b.Upload(weights.InverseFrequencies, _invFreq);
    }

    /// <summary>The trainable tensors of <paramref name="setup"/> on a model of shape <paramref name="c"/> (what <see cref="Layout"/> will be).</summary>
    public static ParameterLayout LayoutFor(ModelConfig c, TrainingSetup setup)
    {
        var layout = new ParameterLayout();
        if (setup.Method == TuningMethod.Full)
        {
            layout.Add("token_embd.weight", c.VocabSize, c.HiddenSize);
            for (int l = 0; l < c.Layers; l++)
                foreach (var (name, shape) in LayerTensors(c, l))
                    layout.Add(name, shape);
            layout.Add("output_norm.weight", c.HiddenSize);
            if (!c.TiedEmbeddings) layout.Add("output.weight", c.VocabSize, c.HiddenSize);
            return layout;
        }
        if (setup.AddedTokens > 0)
        {
            if (setup.AddedTokens >= c.VocabSize) throw new ArgumentException($"{setup.AddedTokens} added tokens leave no vocabulary of the base", nameof(setup));
            layout.Add("token_embd.added", setup.AddedTokens, c.HiddenSize);
            if (!c.TiedEmbeddings) layout.Add("output.added", setup.AddedTokens, c.HiddenSize);
        }
        for (int l = 0; l < c.Layers; l++)
            foreach (var t in TrainingSetup.Stems.Keys.Where(setup.Targets.Contains))
            {
                var (inDim, outDim) = Dims(c, t);
                string name = $"blk.{l}.{TrainingSetup.Stems[t]}.weight";
                layout.Add(name + ".lora_a", setup.Rank, inDim);
                layout.Add(name + ".lora_b", outDim, setup.Rank);
            }
        return layout;
    }

    /// <summary>How the frozen linear weights are stored: float32 under LoRA, the QLoRA base_quant otherwise.</summary>
    public static FrozenFormat FrozenFormatOf(TrainingSetup setup) => setup.Method != TuningMethod.Qlora ? FrozenFormat.F32 : setup.BaseQuant switch
    {
        "q8_0" => FrozenFormat.Q8_0,
        "q4_0" => FrozenFormat.Q4_0,
        "q4_k" => FrozenFormat.Q4_K,
        _ => FrozenFormat.Nf4,
    };

    /// <summary>
    /// The frozen format of one linear weight. For a GGUF <c>base_quant</c> the weights that ship: a tensor the base
    /// already stores quantised is held as stored (its blocks byte for byte where the trainer has the format, else its
    /// exact values in F32, e.g. the Q6_K and Q5_0 tensors of a Q4_K_M file), since a separate export ships the base's
    /// own bytes; a float tensor is quantised to <c>base_quant</c> as it streams in.
    /// </summary>
    public static FrozenFormat FrozenFormatFor(TrainingSetup setup, GgmlType? stored)
    {
        var requested = FrozenFormatOf(setup);
        if (requested is FrozenFormat.F32 or FrozenFormat.Nf4 || stored is not { } type || !GgmlTypes.IsQuantized(type)) return requested;
        return type switch { GgmlType.Q8_0 => FrozenFormat.Q8_0, GgmlType.Q4_0 => FrozenFormat.Q4_0, GgmlType.Q4_K => FrozenFormat.Q4_K, _ => FrozenFormat.F32 };
    }

    /// <summary>The stored types of a base's frozen linear weights, where it stores any quantised (a GGUF); empty otherwise.</summary>
    public static Dictionary<string, GgmlType> StoredLinearTypes(BaseWeights weights)
    {
        var types = new Dictionary<string, GgmlType>(StringComparer.Ordinal);
        for (int l = 0; l < weights.Config.Layers; l++)
            foreach (var stem in TrainingSetup.Stems.Values)
                if (weights.StoredType($"blk.{l}.{stem}.weight") is { } t && GgmlTypes.IsQuantized(t)) types[$"blk.{l}.{stem}.weight"] = t;
        return types;
    }

    /// <summary>
    /// One line when a GGUF base_quant run holds stored weights otherwise than <c>base_quant</c> says (another block type,
    /// or F32 for a type the trainer has no kernel for), with what that costs; null when every weight is as asked.
    /// </summary>
    public static string? StoredFormatNote(TrainingSetup setup, IReadOnlyDictionary<string, GgmlType> stored, string basePath)
    {
        var requested = FrozenFormatOf(setup);
        if (requested is FrozenFormat.F32 or FrozenFormat.Nf4 || stored.Count == 0) return null;
        var other = stored.Where(p => FrozenFormatFor(setup, p.Value) != requested).GroupBy(p => p.Value).OrderByDescending(g => g.Count()).ToList();
        if (other.Count == 0) return null;
        string held = string.Join(", ", other.Select(g => $"{g.Count()} {GgmlTypes.Name(g.Key)} as {FrozenFormatFor(setup, g.Key).ToString().ToUpperInvariant()}"));
        return $"{basePath}: base_quant = \"{setup.BaseQuant}\", but the base already stores its weights quantised; training against the stored weights that ship: {held}" +
            (other.Any(g => FrozenFormatFor(setup, g.Key) == FrozenFormat.F32) ? " (no kernel for that type: exact values in F32, 4 bytes per weight)" : "");
    }

    private (int In, int Out) Dims(string target) => Dims(Config, target);

    /// <summary>(in, out) of a target's linear layer.</summary>
    public static (int In, int Out) Dims(ModelConfig c, string target) => target switch
    {
        "q" => (c.HiddenSize, c.QDim),
        "k" or "v" => (c.HiddenSize, c.KvDim),
        "o" => (c.QDim, c.HiddenSize),
        "gate" or "up" => (c.HiddenSize, c.IntermediateSize),
        "down" => (c.IntermediateSize, c.HiddenSize),
        _ => throw new ArgumentException($"unknown target '{target}'", nameof(target)),
    };

    private static IEnumerable<(string Name, long[] Shape)> LayerTensors(ModelConfig c, int l)
    {
        string p = $"blk.{l}.";
        yield return (p + "attn_norm.weight", [c.HiddenSize]);
        foreach (var t in new[] { "q", "k", "v", "o" })
        {
            var (i, o) = Dims(c, t);
            yield return ($"{p}{TrainingSetup.Stems[t]}.weight", [o, i]);
            if (c.AttentionBias && t != "o") yield return ($"{p}{TrainingSetup.Stems[t]}.bias", [o]);
        }
        yield return (p + "ffn_norm.weight", [c.HiddenSize]);
        foreach (var t in new[] { "gate", "up", "down" })
        {
            var (i, o) = Dims(c, t);
            yield return ($"{p}{TrainingSetup.Stems[t]}.weight", [o, i]);
        }
    }

    private Weight FrozenLinear(BaseWeights weights, string name, int rows, int cols)
    {
        FrozenFormat format = FrozenFormatFor(Setup, weights.StoredType(name));
        // Every format streams from the mapping: a tensor is quantised as it is read, never held in float32 whole.
        byte[] data;
        if (format == FrozenFormat.F32)
        {
            data = new byte[4L * rows * cols];
            weights.Read(name, 0, MemoryMarshal.Cast<byte, float>(data.AsSpan()));
        }
        else if (format == FrozenFormat.Nf4)
        {
            data = Nf4Codec.Quantize((long)rows * cols, (start, chunk) => weights.Read(name, start, chunk));
        }
        else
        {
            var type = format switch { FrozenFormat.Q8_0 => GgmlType.Q8_0, FrozenFormat.Q4_0 => GgmlType.Q4_0, _ => GgmlType.Q4_K };
            if (cols % GgmlTypes.BlockSize(type) != 0)
                throw new EdgeTuneException($"{weights.Path}: tensor '{name}' has rows of {cols} values, not a multiple of {GgmlTypes.Name(type)}'s block of {GgmlTypes.BlockSize(type)}; choose base_quant = \"nf4\"");
            // A GGUF base already stored in this type trains against the bytes that ship; anything else is quantised here.
            data = weights.TryRaw(name, type) ?? Quantized(type, weights, name, rows, cols);
        }
        var frozen = _b.UploadFrozenOwned(format, data, rows, cols);
        _owned.Add(frozen);
        FrozenLinearBytes += frozen.Bytes;
        FrozenLinearParameters += (long)rows * cols;
        return new Weight { Frozen = frozen };
    }

    private static byte[] Quantized(GgmlType type, BaseWeights weights, string name, int rows, int cols)
    {
        long rowBytes = GgmlTypes.RowBytes(type, cols);
        var bytes = new byte[rowBytes * rows];
        int rowsPerChunk = Math.Max(1, StreamChunk / cols);
        var chunk = ArrayPool<float>.Shared.Rent(rowsPerChunk * cols);
        try
        {
            for (int r = 0; r < rows; r += rowsPerChunk)
            {
                int n = Math.Min(rowsPerChunk, rows - r);
                var values = chunk.AsSpan(0, n * cols);
                weights.Read(name, (long)r * cols, values);
                QuantCodecs.Quantize(type, values, bytes.AsSpan((int)(r * rowBytes), (int)(n * rowBytes)));
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(chunk);
        }
        return bytes;
    }

    // Floats read from the base per chunk while loading (4 MiB): the load's host memory beyond the stored result.
    internal const int StreamChunk = 1 << 20;

    /// <summary>Copies a base tensor into a device buffer a chunk at a time, so the host never holds it in float32 whole.</summary>
    private void StreamInto(BaseWeights weights, string name, DeviceBuffer target)
    {
        long n = weights.Spec(name).Elements;
        if (n != target.Length) throw new ArgumentException($"'{name}' holds {n} values, the buffer {target.Length}", nameof(target));
        var chunk = ArrayPool<float>.Shared.Rent((int)Math.Min(StreamChunk, Math.Max(1, n)));
        try
        {
            for (long at = 0; at < n; at += StreamChunk)
            {
                var values = chunk.AsSpan(0, (int)Math.Min(StreamChunk, n - at));
                weights.Read(name, at, values);
                _b.Upload(values, target.Slice(at, values.Length));
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(chunk);
        }
    }

    // PEFT's default: A ~ kaiming_uniform(a=√5) = U(−1/√in, 1/√in), B = 0, so training starts at the base model.
    private static void LoraInit(float[] a, int inDim, ulong seed, int layer, int target)
    {
        ulong state = Mix(seed ^ Mix(0x4C6F5241UL + (ulong)layer * 131 + (ulong)target));
        float bound = 1f / MathF.Sqrt(inDim);
        for (int i = 0; i < a.Length; i++)
            a[i] = (float)((2 * SplitMix64.NextDouble(ref state) - 1) * bound);
    }

    internal static ulong Mix(ulong z) => SplitMix64.Finalize(z);

    private T Own<T>(T d) where T : IDisposable
    {
        _owned.Add(d);
        return d;
    }

    /// <summary>Reads a trainable tensor (for export and tests).</summary>
    public float[] Read(string name)
    {
        var slot = Layout[name];
        var values = new float[slot.Length];
        _b.Download(Parameters.Slice(slot.Offset, slot.Length), values);
        return values;
    }

    public void Write(string name, ReadOnlySpan<float> values)
    {
        var slot = Layout[name];
        if (values.Length != slot.Length) throw new ArgumentException($"{name} holds {slot.Length} values, not {values.Length}", nameof(values));
        _b.Upload(values, Parameters.Slice(slot.Offset, slot.Length));
    }

    public float[] ReadGradient(string name)
    {
        var slot = Layout[name];
        var values = new float[slot.Length];
        _b.Download(Gradients.Slice(slot.Offset, slot.Length), values);
        return values;
    }

    public void ZeroGradients() => _b.Zero(Gradients);

    /// <summary>
    /// Forward over a batch of <paramref name="batch"/> sequences of <paramref name="seqLen"/> tokens, loss at every
    /// row with a target ≠ −1, and (when <paramref name="train"/>) the backward, accumulating gradScale·∂loss/∂θ into
    /// <see cref="Gradients"/>. Returns the summed loss over the rows with a target.
    /// </summary>
    public double Step(int[] tokens, int[] targets, int batch, int seqLen, bool train, float gradScale, ulong dropoutSeed) =>
        Step(tokens, targets, batch, seqLen, train, gradScale, dropoutSeed, null);

    /// <summary>
    /// <see cref="Step(int[], int[], int, int, bool, float, ulong)"/> with a distillation term: with
    /// <paramref name="teacher"/> the loss at each row with a target is (1 − α)·CE + α·T²·D over the teacher's top-k
    /// entries of that row (<see cref="IComputeBackend.Distill"/>), and so are the gradients. With
    /// <paramref name="segmentStarts"/> (B,T) the sequences are packed: attention stays inside each example and RoPE
    /// positions restart at its first token (<see cref="Batching.TrainingExamples.Pack"/>).
    /// </summary>
    public double Step(int[] tokens, int[] targets, int batch, int seqLen, bool train, float gradScale, ulong dropoutSeed, TeacherRows? teacher,
        int[]? segmentStarts = null)
    {
        var c = Config;
        int n = batch * seqLen;
        if (tokens.Length != n || targets.Length != n) throw new ArgumentException($"tokens and targets must hold batch·seqLen = {n} values");
        foreach (int t in tokens)
            if ((uint)t >= (uint)c.VocabSize) throw new ArgumentException($"token id {t} is outside the vocabulary of {c.VocabSize}", nameof(tokens));
        foreach (int t in targets)
            if (t != -1 && (uint)t >= (uint)c.VocabSize) throw new ArgumentException($"target id {t} is outside the vocabulary of {c.VocabSize}", nameof(targets));
        var a = EnsureActivations(batch, seqLen);
        bool dropout = train && Setup.Dropout > 0 && Setup.Method != TuningMethod.Full;

        if (_addedEmbed is not null) CopyAddedRowsIntoTables();
        _b.EmbeddingForward(tokens, _embed.Value!, a.X(n), c.HiddenSize);
        for (int l = 0; l < c.Layers; l++)
        {
            _b.Copy(a.X(n), a.LayerInput(l, n));
            var s = a.ForLayer(l);
            LayerForward(_layers[l], s, a, batch, seqLen, dropout, dropoutSeed, l, segmentStarts);
        }
        _b.RmsNormForward(a.X(n), _outNorm.Value!, a.FinalNorm(n), a.FinalRstd(n), n, c.HiddenSize, (float)c.RmsEpsilon);
        if (train && _headScratch is not null) _b.Zero(_headScratch);
        double loss = teacher is null
            ? _b.CrossEntropy(a.FinalNorm(n), _head.Value!, targets, n, c.HiddenSize, c.VocabSize, gradScale,
                train ? a.DHidden(n) : null, train ? _head.Grad ?? _headScratch : null)
            : _b.Distill(a.FinalNorm(n), _head.Value!, targets, teacher.Ids, teacher.LogProbs, teacher.Settings, n, c.HiddenSize, c.VocabSize, gradScale,
                train ? a.DHidden(n) : null, train ? _head.Grad ?? _headScratch : null).Total(teacher.Settings.Alpha);
        if (!train) return loss;
        if (_headScratch is not null) _b.AddScaled(_addedHead!.Grad!, _headScratch.Slice(AddedRowsOffset, _addedHead.Grad!.Length), 1f);

        // Backward, in reverse order.
        var dx = a.DX(n);
        _b.Zero(dx);
        _b.RmsNormBackward(a.DHidden(n), a.X(n), _outNorm.Value!, a.FinalRstd(n), dx, _outNorm.Grad, n, c.HiddenSize);
        for (int l = c.Layers - 1; l >= 0; l--)
        {
            var s = a.ForLayer(l);
            if (Setup.ActivationCheckpointing)
            {
                _b.Copy(a.LayerInput(l, n), a.X(n));
                LayerForward(_layers[l], s, a, batch, seqLen, dropout, dropoutSeed, l, segmentStarts);
            }
            LayerBackward(_layers[l], s, a, batch, seqLen, dropout, dropoutSeed, l, segmentStarts);
        }
        if (_embed.Grad is not null) _b.EmbeddingBackward(tokens, dx, _embed.Grad, c.HiddenSize);
        else if (_addedEmbed is not null) AddedEmbeddingBackward(tokens, dx);
        return loss;
    }

    private long AddedRowsOffset => ((long)Config.VocabSize - Setup.AddedTokens) * Config.HiddenSize;

    /// <summary>The trained rows of the added tokens into the frozen embedding table and head (the same table when tied).</summary>
    private void CopyAddedRowsIntoTables()
    {
        long rows = (long)Setup.AddedTokens * Config.HiddenSize;
        _b.Copy(_addedEmbed!.Value!, _embed.Value!.Slice(AddedRowsOffset, rows));
        if (!ReferenceEquals(_addedHead, _addedEmbed)) _b.Copy(_addedHead!.Value!, _head.Value!.Slice(AddedRowsOffset, rows));
    }

    /// <summary>
    /// ∂loss/∂(embedding row) of the added tokens: the sum of dx over the positions holding them. Added tokens are
    /// template markers, a few positions per sequence, so their rows are gathered on the host rather than scattering
    /// into a vocabulary-sized gradient.
    /// </summary>
    private void AddedEmbeddingBackward(int[] tokens, DeviceBuffer dx)
    {
        int dim = Config.HiddenSize, first = Config.VocabSize - Setup.AddedTokens;
        float[]? sum = null;
        var row = new float[dim];
        for (int i = 0; i < tokens.Length; i++)
        {
            if (tokens[i] < first) continue;
            if (sum is null)
            {
                sum = new float[_addedEmbed!.Grad!.Length];
                _b.Download(_addedEmbed.Grad, sum);
            }
            _b.Download(dx.Slice((long)i * dim, dim), row);
            System.Numerics.Tensors.TensorPrimitives.Add(sum.AsSpan((tokens[i] - first) * dim, dim), row, sum.AsSpan((tokens[i] - first) * dim, dim));
        }
        if (sum is not null) _b.Upload(sum, _addedEmbed!.Grad!);
    }

    /// <summary>Logits of every position of one sequence: (T, V), as llama.cpp returns them with all logits on (for parity checks and scoring).</summary>
    public float[] Logits(int[] tokens)
    {
        var c = Config;
        int n = tokens.Length;
        Step(tokens, Enumerable.Repeat(-1, n).ToArray(), 1, n, train: false, gradScale: 0, 0);
        using var logits = _b.Allocate((long)n * c.VocabSize);
        _b.MatMul(_acts!.FinalNorm(n), _head.Value!, logits, n, c.HiddenSize, c.VocabSize, accumulate: false);
        var result = new float[(long)n * c.VocabSize];
        _b.Download(logits, result);
        return result;
    }

    private void LayerForward(Layer L, LayerActivations s, Activations a, int batch, int seqLen, bool dropout, ulong seed, int l, int[]? segmentStarts)
    {
        var c = Config;
        int n = batch * seqLen;
        var x = a.X(n);
        _b.RmsNormForward(x, L.AttnNorm.Value!, s.H1(n), s.Rstd1(n), n, c.HiddenSize, (float)c.RmsEpsilon);
        LinearForward(L.Q, s.H1(n), s.Q(n), s.LoraQ(n), a, n, dropout, seed, l);
        LinearForward(L.K, s.H1(n), s.K(n), s.LoraK(n), a, n, dropout, seed, l);
        LinearForward(L.V, s.H1(n), s.V(n), s.LoraV(n), a, n, dropout, seed, l);
        _b.Rope(s.Q(n), _invFreq, batch, seqLen, c.Heads, c.HeadDim, Rope, inverse: false, segmentStarts);
        _b.Rope(s.K(n), _invFreq, batch, seqLen, c.KvHeads, c.HeadDim, Rope, inverse: false, segmentStarts);
        _b.AttentionForward(s.Q(n), s.K(n), s.V(n), s.Att(n), s.Lse(n), batch, seqLen, c.Heads, c.KvHeads, c.HeadDim, segmentStarts);
        LinearForward(L.O, s.Att(n), a.Proj(n), s.LoraO(n), a, n, dropout, seed, l);
        _b.AddScaled(x, a.Proj(n), 1f);
        _b.Copy(x, s.XMid(n));
        _b.RmsNormForward(x, L.FfnNorm.Value!, s.H2(n), s.Rstd2(n), n, c.HiddenSize, (float)c.RmsEpsilon);
        LinearForward(L.Gate, s.H2(n), s.G(n), s.LoraGate(n), a, n, dropout, seed, l);
        LinearForward(L.Up, s.H2(n), s.U(n), s.LoraUp(n), a, n, dropout, seed, l);
        _b.SwiGluForward(s.G(n), s.U(n), s.Act(n), (long)n * c.IntermediateSize);
        LinearForward(L.Down, s.Act(n), a.Proj(n), s.LoraDown(n), a, n, dropout, seed, l);
        _b.AddScaled(x, a.Proj(n), 1f);
    }

    // dx holds ∂loss/∂(this layer's output residual) on entry and ∂loss/∂(its input residual) on exit.
    private void LayerBackward(Layer L, LayerActivations s, Activations a, int batch, int seqLen, bool dropout, ulong seed, int l, int[]? segmentStarts)
    {
        var c = Config;
        int n = batch * seqLen;
        var dx = a.DX(n);
        // x_out = x_mid + down(swiglu(gate(h2), up(h2))),  h2 = rmsnorm(x_mid)
        LinearBackward(L.Down, s.Act(n), s.LoraDown(n), dx, a.DF(n), accumulateInput: false, a, n, dropout, seed, l);
        _b.SwiGluBackward(a.DF(n), s.G(n), s.U(n), a.DGate(n), a.DUp(n), (long)n * c.IntermediateSize);
        LinearBackward(L.Gate, s.H2(n), s.LoraGate(n), a.DGate(n), a.DH(n), accumulateInput: false, a, n, dropout, seed, l);
        LinearBackward(L.Up, s.H2(n), s.LoraUp(n), a.DUp(n), a.DH(n), accumulateInput: true, a, n, dropout, seed, l);
        _b.RmsNormBackward(a.DH(n), s.XMid(n), L.FfnNorm.Value!, s.Rstd2(n), dx, L.FfnNorm.Grad, n, c.HiddenSize);
        // x_mid = x_in + o(attention(rope(q(h1)), rope(k(h1)), v(h1))),  h1 = rmsnorm(x_in)
        LinearBackward(L.O, s.Att(n), s.LoraO(n), dx, a.DAtt(n), accumulateInput: false, a, n, dropout, seed, l);
        _b.AttentionBackward(a.DAtt(n), s.Q(n), s.K(n), s.V(n), s.Att(n), s.Lse(n), a.DQ(n), a.DK(n), a.DV(n), batch, seqLen, c.Heads, c.KvHeads, c.HeadDim, segmentStarts);
        _b.Rope(a.DQ(n), _invFreq, batch, seqLen, c.Heads, c.HeadDim, Rope, inverse: true, segmentStarts);
        _b.Rope(a.DK(n), _invFreq, batch, seqLen, c.KvHeads, c.HeadDim, Rope, inverse: true, segmentStarts);
        LinearBackward(L.Q, s.H1(n), s.LoraQ(n), a.DQ(n), a.DH(n), accumulateInput: false, a, n, dropout, seed, l);
        LinearBackward(L.K, s.H1(n), s.LoraK(n), a.DK(n), a.DH(n), accumulateInput: true, a, n, dropout, seed, l);
        LinearBackward(L.V, s.H1(n), s.LoraV(n), a.DV(n), a.DH(n), accumulateInput: true, a, n, dropout, seed, l);
        _b.RmsNormBackward(a.DH(n), a.LayerInput(l, n), L.AttnNorm.Value!, s.Rstd1(n), dx, L.AttnNorm.Grad, n, c.HiddenSize);
    }

    private ulong DropoutSeed(ulong seed, int layer, int target) => Mix(seed ^ Mix(((ulong)layer << 8) | (uint)target));

    // y = x·Wᵀ (+ bias) (+ scale·(dropout(x)·Aᵀ)·Bᵀ).  x: (N,in)  y: (N,out)  xa: (N,r), kept scaled for the backward.
    private void LinearForward(Linear lin, DeviceBuffer x, DeviceBuffer y, DeviceBuffer? xa, Activations a, int n, bool dropout, ulong seed, int layer)
    {
        if (lin.W.Frozen is { } frozen) _b.FrozenMatMul(x, frozen, y, n, accumulate: false);
        else _b.MatMul(x, lin.W.Value!, y, n, lin.In, lin.Out, accumulate: false);
        if (lin.Bias is { } bias) _b.MatMul(a.Ones(n), bias.Value!, y, n, 1, lin.Out, accumulate: true);
        if (lin.Lora is not { } lora) return;
        var input = x;
        if (dropout)
        {
            input = a.Dropped(n, lin.In);
            _b.Dropout(x, input, (long)n * lin.In, (float)Setup.Dropout, DropoutSeed(seed, layer, lora.TargetIndex));
        }
        _b.MatMul(input, lora.A.Value!, xa!, n, lin.In, Setup.Rank, accumulate: false);
        _b.Scale(xa!, (float)Setup.Scale);
        _b.MatMul(xa!, lora.B.Value!, y, n, Setup.Rank, lin.Out, accumulate: true);
    }

    // dy: (N,out) → dx (N,in) (+)= dy·W (+ LoRA path); weight gradients accumulate.
    private void LinearBackward(Linear lin, DeviceBuffer x, DeviceBuffer? xa, DeviceBuffer dy, DeviceBuffer dx, bool accumulateInput, Activations a, int n, bool dropout, ulong seed, int layer)
    {
        if (lin.W.Frozen is { } frozen) _b.FrozenMatMulBackwardInput(dy, frozen, dx, n, accumulateInput);
        else _b.MatMulBackwardInput(dy, lin.W.Value!, dx, n, lin.In, lin.Out, accumulateInput);
        if (lin.W.Grad is { } dw) _b.MatMulBackwardWeight(dy, x, dw, n, lin.In, lin.Out, accumulate: true);
        if (lin.Bias?.Grad is { } db) _b.MatMulBackwardWeight(dy, a.Ones(n), db, n, 1, lin.Out, accumulate: true);
        if (lin.Lora is not { } lora) return;
        int r = Setup.Rank;
        // y += xa·Bᵀ with xa = scale·(x'·Aᵀ):  dB += dyᵀ·xa;  dxa = scale·dy·B;  dA += dxaᵀ·x';  dx' = dxa·A
        _b.MatMulBackwardWeight(dy, xa!, lora.B.Grad!, n, r, lin.Out, accumulate: true);
        var dxa = a.DLora(n);
        _b.MatMulBackwardInput(dy, lora.B.Value!, dxa, n, r, lin.Out, accumulate: false);
        _b.Scale(dxa, (float)Setup.Scale);
        var input = x;
        if (dropout)
        {
            input = a.Dropped(n, lin.In);
            _b.Dropout(x, input, (long)n * lin.In, (float)Setup.Dropout, DropoutSeed(seed, layer, lora.TargetIndex));
        }
        _b.MatMulBackwardWeight(dxa, input, lora.A.Grad!, n, lin.In, r, accumulate: true);
        if (!dropout)
        {
            _b.MatMulBackwardInput(dxa, lora.A.Value!, dx, n, lin.In, r, accumulate: true);
            return;
        }
        var dInput = a.Dropped(n, lin.In);
        _b.MatMulBackwardInput(dxa, lora.A.Value!, dInput, n, lin.In, r, accumulate: false);
        _b.Dropout(dInput, dInput, (long)n * lin.In, (float)Setup.Dropout, DropoutSeed(seed, layer, lora.TargetIndex));
        _b.AddScaled(dx, dInput, 1f);
    }

    /// <summary>Allocates the activations for a batch shape now (what the first step would), for memory accounting.</summary>
    public void ReserveActivations(int batch, int seqLen) => EnsureActivations(batch, seqLen);

    private Activations EnsureActivations(int batch, int seqLen)
    {
        long rows = (long)batch * seqLen;
        if (_acts is not null && _acts.Rows >= rows) return _acts;
        _acts?.Dispose();
        _acts = new Activations(_b, Config, Setup, rows);
        return _acts;
    }

    /// <summary>Activation memory for a batch shape, without allocating it.</summary>
    public static long ActivationBytesFor(ModelConfig c, TrainingSetup setup, long rows) => Activations.Plan(c, setup, rows).Total * 4;

    public void Dispose()
    {
        _acts?.Dispose();
        foreach (var d in _owned) d.Dispose();
    }
}

/// <summary>A batch's teacher entries for <see cref="TrainableLlama.Step(int[], int[], int, int, bool, float, ulong, TeacherRows?)"/>: (N,K) ids and log-probabilities.</summary>
public sealed record TeacherRows(int[] Ids, float[] LogProbs, DistillSettings Settings);
