using EdgeTune.Kernels;
using EdgeTune.Models.Architectures;
using EdgeTune.Recipes;

namespace EdgeTune.Training.Model;

/// <summary>What one block keeps from its forward for its backward, as views over capacity-sized buffers.</summary>
internal sealed class LayerActivations(DeviceBuffer?[] buffers, int[] widths, int batchHeadsPerRow)
{
    // Order matches Activations.LayerWidths.
    private DeviceBuffer View(int i, int n) => buffers[i]!.Slice(0, (long)n * widths[i]);

    public DeviceBuffer H1(int n) => View(0, n);
    public DeviceBuffer Rstd1(int n) => View(1, n);
    public DeviceBuffer Q(int n) => View(2, n);
    public DeviceBuffer K(int n) => View(3, n);
    public DeviceBuffer V(int n) => View(4, n);
    public DeviceBuffer Att(int n) => View(5, n);
    // logSumExp: (B,H,T) = heads values per row
    public DeviceBuffer Lse(int n) => buffers[6]!.Slice(0, (long)n * batchHeadsPerRow);
    public DeviceBuffer XMid(int n) => View(7, n);
    public DeviceBuffer H2(int n) => View(8, n);
    public DeviceBuffer Rstd2(int n) => View(9, n);
    public DeviceBuffer G(int n) => View(10, n);
    public DeviceBuffer U(int n) => View(11, n);
    public DeviceBuffer Act(int n) => View(12, n);
    public DeviceBuffer? LoraQ(int n) => Lora(13, n);
    public DeviceBuffer? LoraK(int n) => Lora(14, n);
    public DeviceBuffer? LoraV(int n) => Lora(15, n);
    public DeviceBuffer? LoraO(int n) => Lora(16, n);
    public DeviceBuffer? LoraGate(int n) => Lora(17, n);
    public DeviceBuffer? LoraUp(int n) => Lora(18, n);
    public DeviceBuffer? LoraDown(int n) => Lora(19, n);

    private DeviceBuffer? Lora(int i, int n) => widths[i] == 0 ? null : View(i, n);
}

/// <summary>
/// Activation and scratch memory for a row capacity (batch·seqLen): per block what its backward needs (one shared
/// set under activation checkpointing, when only each block's input is kept and the rest is recomputed), the
/// residual stream, and the backward's scratch. Sizes are in floats; <see cref="Plan"/> states them without allocating.
/// </summary>
internal sealed class Activations : IDisposable
{
    private readonly List<DeviceBuffer> _all = [];
    private readonly LayerActivations[] _layers;
    private readonly DeviceBuffer[] _inputs;
    private readonly DeviceBuffer _x, _proj, _finalNorm, _finalRstd, _dHidden, _dx, _dh, _df, _dGate, _dUp, _dAtt, _dq, _dk, _dv, _dLora, _dropped, _ones;
    private readonly ModelConfig _c;
    private readonly int _rank;

    public long Rows { get; }
    public long Bytes { get; }

    public sealed record Sizes(long PerLayerKept, long PerLayerInput, int Layers, int KeptSets, long Shared)
    {
        public long Total => PerLayerKept * KeptSets + PerLayerInput * Layers + Shared;
    }

    internal static int[] LayerWidths(ModelConfig c, TrainingSetup setup)
    {
        int Lora(string t) => setup.Method != TuningMethod.Full && setup.Targets.Contains(t) ? setup.Rank : 0;
        return [c.HiddenSize, 1, c.QDim, c.KvDim, c.KvDim, c.QDim, c.Heads, c.HiddenSize, c.HiddenSize, 1,
            c.IntermediateSize, c.IntermediateSize, c.IntermediateSize,
            Lora("q"), Lora("k"), Lora("v"), Lora("o"), Lora("gate"), Lora("up"), Lora("down")];
    }

    public static Sizes Plan(ModelConfig c, TrainingSetup setup, long rows)
    {
        long perLayer = LayerWidths(c, setup).Sum(w => (long)w) * rows;
        int widest = Math.Max(Math.Max(c.HiddenSize, c.QDim), c.IntermediateSize);
        long shared = rows * (3L * c.HiddenSize + 1 /* x, proj, final norm, rstd */ + 2L * c.HiddenSize /* dHidden, dx */ + c.HiddenSize /* dh */
            + 3L * c.IntermediateSize /* df, dGate, dUp */ + 2L * c.QDim /* dAtt, dq */ + 2L * c.KvDim + setup.Rank + widest + 1);
        return new Sizes(perLayer, rows * c.HiddenSize, c.Layers, setup.ActivationCheckpointing ? 1 : c.Layers, shared);
    }

    public Activations(IComputeBackend b, ModelConfig c, TrainingSetup setup, long rows)
    {
        _c = c;
        _rank = setup.Rank;
        Rows = rows;
        DeviceBuffer A(long floats)
        {
            var d = b.Allocate(Math.Max(1, floats));
            _all.Add(d);
            return d;
        }
        var widths = LayerWidths(c, setup);
        int sets = setup.ActivationCheckpointing ? 1 : c.Layers;
        var kept = new LayerActivations[sets];
        for (int i = 0; i < sets; i++)
            kept[i] = new LayerActivations(widths.Select(w => w == 0 ? null : A(w * rows)).ToArray(), widths, c.Heads); // no buffer for a width of 0 (a LoRA target not trained)
        _layers = setup.ActivationCheckpointing ? Enumerable.Repeat(kept[0], c.Layers).ToArray() : kept;
        _inputs = Enumerable.Range(0, c.Layers).Select(_ => A(rows * c.HiddenSize)).ToArray();
        _x = A(rows * c.HiddenSize);
        _proj = A(rows * c.HiddenSize);
        _finalNorm = A(rows * c.HiddenSize);
        _finalRstd = A(rows);
        _dHidden = A(rows * c.HiddenSize);
        _dx = A(rows * c.HiddenSize);
        _dh = A(rows * c.HiddenSize);
        _df = A(rows * c.IntermediateSize);
        _dGate = A(rows * c.IntermediateSize);
        _dUp = A(rows * c.IntermediateSize);
        _dAtt = A(rows * c.QDim);
        _dq = A(rows * c.QDim);
        _dk = A(rows * c.KvDim);
        _dv = A(rows * c.KvDim);
        _dLora = A(rows * setup.Rank);
        _dropped = A(rows * Math.Max(Math.Max(c.HiddenSize, c.QDim), c.IntermediateSize));
        _ones = A(rows);
        b.Upload(Enumerable.Repeat(1f, (int)rows).ToArray(), _ones);
        Bytes = _all.Sum(d => d.Length) * 4;
    }

    public LayerActivations ForLayer(int l) => _layers[l];
    public DeviceBuffer LayerInput(int l, int n) => _inputs[l].Slice(0, (long)n * _c.HiddenSize);
    public DeviceBuffer X(int n) => _x.Slice(0, (long)n * _c.HiddenSize);
    public DeviceBuffer Proj(int n) => _proj.Slice(0, (long)n * _c.HiddenSize);
    public DeviceBuffer FinalNorm(int n) => _finalNorm.Slice(0, (long)n * _c.HiddenSize);
    public DeviceBuffer FinalRstd(int n) => _finalRstd.Slice(0, n);
    public DeviceBuffer DHidden(int n) => _dHidden.Slice(0, (long)n * _c.HiddenSize);
    public DeviceBuffer DX(int n) => _dx.Slice(0, (long)n * _c.HiddenSize);
    public DeviceBuffer DH(int n) => _dh.Slice(0, (long)n * _c.HiddenSize);
    public DeviceBuffer DF(int n) => _df.Slice(0, (long)n * _c.IntermediateSize);
    public DeviceBuffer DGate(int n) => _dGate.Slice(0, (long)n * _c.IntermediateSize);
    public DeviceBuffer DUp(int n) => _dUp.Slice(0, (long)n * _c.IntermediateSize);
    public DeviceBuffer DAtt(int n) => _dAtt.Slice(0, (long)n * _c.QDim);
    public DeviceBuffer DQ(int n) => _dq.Slice(0, (long)n * _c.QDim);
    public DeviceBuffer DK(int n) => _dk.Slice(0, (long)n * _c.KvDim);
    public DeviceBuffer DV(int n) => _dv.Slice(0, (long)n * _c.KvDim);
    public DeviceBuffer DLora(int n) => _dLora.Slice(0, (long)n * _rank);
    public DeviceBuffer Dropped(int n, int width) => _dropped.Slice(0, (long)n * width);
    public DeviceBuffer Ones(int n) => _ones.Slice(0, n);

    public void Dispose()
    {
        foreach (var d in _all) d.Dispose();
    }
}
