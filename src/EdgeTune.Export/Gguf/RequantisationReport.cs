using System.Globalization;
using System.Text.RegularExpressions;
using EdgeTune.Core;
using EdgeTune.Core.Numerics;
using EdgeTune.Evaluation.Runners;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Gguf.Quantize;

namespace EdgeTune.Export.Gguf;

/// <summary>One tensor group's re-quantisation error: ‖dequant(shipped) − merged‖₂ / ‖merged‖₂ over all its tensors.</summary>
public sealed record TensorGroupError(string Group, string Types, int Tensors, long Elements, double RelativeRms);

/// <summary>
/// What quantising the merged model cost, against the merged float32 weights it was made from: per tensor group (attn_q,
/// ffn_down, token_embd, ...) and, when the base was itself quantised (a QLoRA run over a GGUF base trains against those
/// blocks, and the merge dequantises exactly those blocks), llama.cpp's logits of the shipped file against the merged
/// float32 model on the first test prompts. <see cref="SameTypeAsBase"/>: the shipped type is the base's own, the case
/// of a QLoRA run trained on the shipped type.
/// </summary>
public sealed record RequantisationReport(
    string Type,
    string? BaseType,
    bool BaseQuantised,
    bool SameTypeAsBase,
    IReadOnlyList<TensorGroupError> Groups,
    double? LogitsRelativeL2,
    int LogitPrompts)
{
    /// <summary>Test prompts whose logits are compared (each a full forward of two models; a few are enough to see the size).</summary>
    public const int MaxLogitPrompts = 4;

    // Values compared per read: 1 Mi floats (4 MiB) from each file, so the check never holds a whole tensor.
    private const int ChunkValues = 1 << 20;

    private static readonly Regex Block = new(@"^blk\.\d+\.", RegexOptions.CultureInvariant);

    /// <summary>"blk.3.attn_q.weight" → "attn_q"; "token_embd.weight" → "token_embd".</summary>
    public static string GroupOf(string tensorName)
    {
        string name = Block.Replace(tensorName, "");
        return name.EndsWith(".weight", StringComparison.Ordinal) ? name[..^".weight".Length] : name;
    }

    /// <summary>
    /// Compares every tensor <paramref name="shipped"/> stores in another type than F32 with the same tensor of
    /// <paramref name="mergedF32"/>. <paramref name="prompts"/> (rendered, tokenised by the callee) are scored for logits
    /// only when the base was quantised.
    /// </summary>
    public static RequantisationReport Measure(string baseModel, string mergedF32, string shipped, string type,
        Func<Inference.IInferenceModel, IReadOnlyList<int[]>> prompts, int threads, CancellationToken cancellationToken)
    {
        string? baseType;
        bool baseQuantised;
        using (var b = GgufFile.Open(baseModel))
        {
            baseQuantised = b.Tensors.Any(t => GgmlTypes.IsQuantized(t.Type));
            baseType = null;
            if (b.Metadata.Get("general.file_type") is { Type: GgufValueType.UInt32 } ft)
                foreach (var known in LlamaFileTypes.All)
                    if ((uint)known.Type == (uint)ft.Value) baseType = known.Name;
        }

        var sums = new Dictionary<string, (HashSet<string> Types, int Tensors, long Elements, double Diff, double Norm)>(StringComparer.Ordinal);
        using (var exact = GgufFile.Open(mergedF32))
        using (var quantised = GgufFile.Open(shipped))
        {
            var a = new float[ChunkValues];
            var q = new float[ChunkValues];
            foreach (var t in quantised.Tensors.Where(t => t.Type != GgmlType.F32))
            {
                cancellationToken.ThrowIfCancellationRequested();
                var e = exact.FindTensor(t.Name) ?? throw new EdgeTuneException($"{mergedF32}: tensor '{t.Name}' of {shipped} is missing (a bug: please report it)");
                if (t.RowLength > ChunkValues) throw new EdgeTuneException($"{shipped}: tensor '{t.Name}' has rows of {t.RowLength} values, too long to compare");
                int rowsPerChunk = (int)(ChunkValues / t.RowLength);
                double diff = 0, norm = 0;
                for (long row = 0; row < t.RowCount; row += rowsPerChunk)
                {
                    int n = (int)(Math.Min(rowsPerChunk, t.RowCount - row) * t.RowLength);
                    exact.ReadRows(e, row, a.AsSpan(0, n));
                    quantised.ReadRows(t, row, q.AsSpan(0, n));
                    for (int i = 0; i < n; i++)
                    {
                        double d = (double)q[i] - a[i];
                        diff += d * d;
                        norm += (double)a[i] * a[i];
                    }
                }
                string group = GroupOf(t.Name);
                var s = sums.TryGetValue(group, out var found) ? found : ([], 0, 0, 0, 0);
                s.Types.Add(GgmlTypes.Name(t.Type));
                sums[group] = (s.Types, s.Tensors + 1, s.Elements + t.ElementCount, s.Diff + diff, s.Norm + norm);
            }
        }
        var groups = sums.Select(p => new TensorGroupError(p.Key, string.Join("/", p.Value.Types.Order(StringComparer.Ordinal)), p.Value.Tensors, p.Value.Elements,
                p.Value.Norm == 0 ? 0 : Math.Sqrt(p.Value.Diff / p.Value.Norm)))
            .OrderBy(g => GroupOrder(g.Group)).ThenBy(g => g.Group, StringComparer.Ordinal).ToList();

        double? logits = null;
        int count = 0;
        if (baseQuantised && groups.Count > 0)
        {
            double diff = 0, norm = 0;
            using var exactModel = Engines.LlamaCpp(mergedF32, threads: threads);
            using var shippedModel = Engines.LlamaCpp(shipped, threads: threads);
            foreach (var tokens in prompts(exactModel).Take(MaxLogitPrompts))
            {
                cancellationToken.ThrowIfCancellationRequested();
                var reference = exactModel.Logits(tokens);
                var got = shippedModel.Logits(tokens);
                double d = LogitDistance.RelativeL2(got, reference);
                double r = Norm2(reference);
                diff += d * d * r;
                norm += r;
                count++;
            }
            if (count > 0) logits = Math.Sqrt(diff / norm);
        }
        return new RequantisationReport(type, baseType, baseQuantised, baseQuantised && baseType == type, groups, logits, count);
    }

    private static double Norm2(float[] v)
    {
        double s = 0;
        foreach (float x in v) s += (double)x * x;
        return s;
    }

    private static readonly string[] Order = ["token_embd", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "output"];

    private static int GroupOrder(string group) => Array.IndexOf(Order, group) is var i and >= 0 ? i : Order.Length;

    /// <summary>The report as Markdown lines (the table printed by the command, fit.md and the model card).</summary>
    public string Markdown()
    {
        var c = CultureInfo.InvariantCulture;
        var b = new System.Text.StringBuilder();
        string why = SameTypeAsBase
            ? $"the base is {BaseType} and so is the shipped file: a QLoRA run trained on these blocks; the merge dequantised them exactly, and re-quantising the merged weights costs"
            : BaseQuantised
                ? $"the base is {BaseType ?? "quantised"}; the merge dequantised its blocks exactly, and quantising the merged weights to {Type} costs"
                : $"quantising the merged float32 weights to {Type} costs";
        b.AppendLine(c, $"Re-quantisation error ({why}, relative RMS against the merged float32 weights):");
        b.AppendLine();
        b.AppendLine("| tensor group | types | tensors | relative RMS error |");
        b.AppendLine("|---|---|---:|---:|");
        foreach (var g in Groups) b.AppendLine(c, $"| {g.Group} | {g.Types} | {g.Tensors} | {g.RelativeRms:0.####E+0} |");
        if (LogitsRelativeL2 is { } l)
            b.AppendLine(c, $"\nllama.cpp logits of the shipped file vs the merged float32 model on {LogitPrompts} test prompts: relative L2 {l:0.####E+0}.");
        return b.ToString();
    }
}
