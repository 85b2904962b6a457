using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Gguf.Quantize;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Testing;
using LLama.Native;

namespace EdgeTune.Formats.Tests;

/// <summary>
/// `edgetune quantize` against llama.cpp's own llama_model_quantize, run in the test on the same F32 input:
/// on x86-64 the same file, byte for byte; on other machines (where llama.cpp's build fuses multiply-adds) the
/// same type for every tensor in the same order.
/// </summary>
public class QuantizeLlamaCppTests
{
    // 12 layers make the _M mixes pick different types in different layers; 8 heads over 2 KV heads is
    // the grouped-query factor 4 that changes Q2_K's choice; ffn_down rows of 288 values are not whole
    // 256-blocks, so K-quants must fall back as llama.cpp does.
    private static readonly TinyLlamaConfig MixModel = new()
    {
        Embedding = 256, Layers = 12, Heads = 8, KvHeads = 2, FeedForward = 288, Seed = 11,
    };

    public static TheoryData<string, bool> MixCases()
    {
        var data = new TheoryData<string, bool>();
        foreach (var (name, type, _) in LlamaFileTypes.All)
        {
            if (type == LlamaFileType.AllF32) continue;
            data.Add(name, false);
            if (name.EndsWith("_M", StringComparison.Ordinal) || name == "Q2_K") data.Add(name, true);
        }
        return data;
    }

    [ElsewhereThanX64Theory]
    [MemberData(nameof(MixCases))]
    public void Every_tensor_gets_the_type_llama_cpp_chooses(string fileTypeName, bool tied)
    {
        Assert.True(LlamaFileTypes.TryParse(fileTypeName, out var fileType));
        using var dir = new TempDir();
        string input = dir.File("in.gguf"), theirs = dir.File("llama.gguf");
        TinyLlama.WriteGguf(input, MixModel with { TiedEmbeddings = tied });
        LlamaCpp.Quantize(input, theirs, (LLamaFtype)(int)fileType);

        using var model = GgufFile.Open(input);
        using var reference = GgufFile.Open(theirs);
        var plan = QuantPlan.Create(model, fileType);
        Assert.Equal(reference.Tensors.Select(t => t.Name), plan.Select(p => p.Source.Name));
        var mismatches = plan.Zip(reference.Tensors)
            .Where(x => x.First.Target != x.Second.Type)
            .Select(x => $"{x.First.Source.Name}: ours {GgmlTypes.Name(x.First.Target)}, llama.cpp {GgmlTypes.Name(x.Second.Type)}")
            .ToList();
        Assert.True(mismatches.Count == 0, string.Join("\n", mismatches));
    }

    /// <summary>
    /// Every file type, as a mix and pure (one type for every tensor), and the mixes with tied embeddings: the
    /// whole output file — header, metadata, tensor order, padding and every quantised block — is llama.cpp's.
    /// </summary>
    public static TheoryData<string, bool, bool> ByteCases()
    {
        var data = new TheoryData<string, bool, bool>();
        foreach (var (name, type, _) in LlamaFileTypes.All)
        {
            if (type == LlamaFileType.AllF32) continue;
            data.Add(name, false, false);
            data.Add(name, true, false);
            if (name.EndsWith("_M", StringComparison.Ordinal) || name == "Q2_K") data.Add(name, false, true);
        }
        return data;
    }

    [X64Theory]
    [MemberData(nameof(ByteCases))]
    public void Output_file_is_byte_identical_to_llama_cpp(string fileTypeName, bool pure, bool tied)
    {
        Assert.True(LlamaFileTypes.TryParse(fileTypeName, out var fileType));
        using var dir = new TempDir();
        string input = dir.File("in.gguf"), theirs = dir.File("llama.gguf"), ours = dir.File("ours.gguf");
        TinyLlama.WriteGguf(input, MixModel with { TiedEmbeddings = tied });
        LlamaCpp.Quantize(input, theirs, (LLamaFtype)(int)fileType, pure, threads: 2);
        GgufQuantizer.Run(input, ours, fileType, new QuantizeOptions { Pure = pure, Threads = 2 });

        byte[] a = File.ReadAllBytes(theirs), b = File.ReadAllBytes(ours);
        if (a.AsSpan().SequenceEqual(b)) return;
        Assert.Fail($"{fileTypeName} (pure {pure}, tied {tied}): {FirstDifference(theirs, ours, a, b)}");
    }

    /// <summary>Where two GGUF files first differ, named by tensor when it is in the data.</summary>
    private static string FirstDifference(string theirsPath, string oursPath, byte[] a, byte[] b)
    {
        long at = a.AsSpan().CommonPrefixLength(b);
        using var theirs = GgufFile.Open(theirsPath);
        using var ours = GgufFile.Open(oursPath);
        string sizes = $"llama.cpp {a.Length} bytes, ours {b.Length}";
        if (at < theirs.DataOffset)
        {
            var types = theirs.Tensors.Zip(ours.Tensors).Where(x => x.First.Name != x.Second.Name || x.First.Type != x.Second.Type)
                .Select(x => $"{x.First.Name} {GgmlTypes.Name(x.First.Type)} / ours {x.Second.Name} {GgmlTypes.Name(x.Second.Type)}");
            return $"first difference at byte {at}, in the header ({sizes}); tensors that differ: {string.Join(", ", types.DefaultIfEmpty("none"))}";
        }
        var tensor = theirs.Tensors.OrderBy(t => t.Offset).LastOrDefault(t => theirs.DataOffset + t.Offset <= at);
        if (tensor is null) return $"first difference at byte {at} ({sizes})";
        long within = at - theirs.DataOffset - tensor.Offset;
        int blockBytes = GgmlTypes.IsQuantized(tensor.Type) ? GgmlTypes.BlockBytes(tensor.Type) : 1;
        return $"first difference at byte {at}: tensor {tensor.Name} ({GgmlTypes.Name(tensor.Type)}), block {within / blockBytes}, byte {within % blockBytes} of it ({sizes})";
    }
}

/// <summary>
/// A theory that runs on x86-64 only. Elsewhere it is skipped with the reason: llama.cpp built for arm64 lets the
/// C compiler fuse a multiply and an add into one FMA instruction (one rounding instead of two) inside the reference
/// quantisers, so the last bit of a block scale can differ from the x86-64 build, and byte identity is not expected.
/// </summary>
public sealed class X64TheoryAttribute : TheoryAttribute
{
    public X64TheoryAttribute()
    {
        if (System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture != System.Runtime.InteropServices.Architecture.X64)
            Skip = "byte identity with llama.cpp is asserted on x86-64 only: llama.cpp's arm64 build fuses multiply-adds (FMA) in its " +
                   "quantisers, which can change the last bit of a block scale";
    }
}

/// <summary>A theory that checks on other machines what an <see cref="X64TheoryAttribute"/> test covers on x86-64.</summary>
public sealed class ElsewhereThanX64TheoryAttribute : TheoryAttribute
{
    public ElsewhereThanX64TheoryAttribute()
    {
        if (System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture == System.Runtime.InteropServices.Architecture.X64)
            Skip = "on x86-64 Output_file_is_byte_identical_to_llama_cpp covers every tensor's type with its bytes";
    }
}
