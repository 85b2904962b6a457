using EdgeTune.Core;
using EdgeTune.Core.Quantization;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Gguf.Quantize;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Testing;
using LLama.Native;

namespace EdgeTune.Formats.Tests;

/// <summary>
/// `edgetune quantize` against llama.cpp's own llama_model_quantize, run in the test on the same F32 input:
/// the same type for every tensor, the same tensor order and metadata, and the same bytes.
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

    private static readonly TinyLlamaConfig DataModel = new()
    {
        Embedding = 512, Layers = 2, Heads = 8, KvHeads = 4, FeedForward = 1024, Seed = 5,
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

    [Theory]
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

    [Theory]
    [InlineData("Q8_0")]
    [InlineData("Q4_0")]
    [InlineData("Q4_1")]
    [InlineData("Q5_0")]
    [InlineData("Q5_1")]
    [InlineData("F16")]
    [InlineData("BF16")]
    public void Legacy_types_are_byte_identical_to_llama_cpp(string fileTypeName)
    {
        var (ours, theirs, dir) = QuantizeBoth(fileTypeName, pure: true);
        using (dir)
        using (ours)
        using (theirs)
        {
            GgufRoundTripTests.AssertSame(theirs.Metadata, ours.Metadata);
            foreach (var t in theirs.Tensors)
            {
                var o = ours.GetTensor(t.Name);
                Assert.Equal(t.Type, o.Type);
                Assert.True(theirs.GetData(t).AsSpan().SequenceEqual(ours.GetData(o).AsSpan()), $"{t.Name} ({GgmlTypes.Name(t.Type)}) differs");
            }
        }
    }

    [Theory]
    [InlineData("Q2_K")]
    [InlineData("Q3_K_S")]
    [InlineData("Q4_K_S")]
    [InlineData("Q5_K_S")]
    [InlineData("Q6_K")]
    public void K_quants_match_llama_cpp_block_for_block(string fileTypeName)
    {
        var (ours, theirs, dir) = QuantizeBoth(fileTypeName, pure: true);
        using (dir)
        using (ours)
        using (theirs)
        using (var source = GgufFile.Open(dir.File("in.gguf")))
        {
            long blocks = 0, identical = 0;
            var worse = new List<string>();
            foreach (var t in theirs.Tensors)
            {
                var o = ours.GetTensor(t.Name);
                Assert.Equal(t.Type, o.Type);
                if (!GgmlTypes.IsQuantized(t.Type)) continue;
                int blockBytes = GgmlTypes.BlockBytes(t.Type), blockSize = GgmlTypes.BlockSize(t.Type);
                var a = theirs.GetData(t).AsSpan();
                var b = ours.GetData(o).AsSpan();
                var original = new float[t.ElementCount];
                source.ReadRows(source.GetTensor(t.Name), 0, original);
                var da = new float[blockSize];
                var db = new float[blockSize];
                for (int i = 0; i < a.Length / blockBytes; i++)
                {
                    blocks++;
                    var ba = a.Slice(i * blockBytes, blockBytes);
                    var bb = b.Slice(i * blockBytes, blockBytes);
                    if (ba.SequenceEqual(bb)) { identical++; continue; }
                    QuantCodecs.Dequantize(t.Type, ba, da);
                    QuantCodecs.Dequantize(t.Type, bb, db);
                    var x = original.AsSpan(i * blockSize, blockSize);
                    double errTheirs = 0, errOurs = 0;
                    for (int j = 0; j < blockSize; j++)
                    {
                        errTheirs += Math.Pow(x[j] - da[j], 2);
                        errOurs += Math.Pow(x[j] - db[j], 2);
                    }
                    if (errOurs > errTheirs * (1 + 1e-6)) worse.Add($"{t.Name} block {i}: {errOurs:G4} > {errTheirs:G4}");
                }
            }
            Assert.True(blocks > 1000, $"only {blocks} blocks compared");
            double share = (double)identical / blocks;
            Assert.True(share >= 0.999, $"{identical} of {blocks} blocks identical ({share:P3})");
            Assert.True(worse.Count == 0, string.Join("\n", worse.Take(10)));
        }
    }

    [Fact]
    public void Q4_K_M_mix_output_matches_llama_cpp_tensor_by_tensor()
    {
        var (ours, theirs, dir) = QuantizeBoth("Q4_K_M", pure: false);
        using (dir)
        using (ours)
        using (theirs)
        {
            Assert.Equal(theirs.Tensors.Select(t => (t.Name, t.Type)), ours.Tensors.Select(t => (t.Name, t.Type)));
            GgufRoundTripTests.AssertSame(theirs.Metadata, ours.Metadata);
        }
    }

    private static (GgufFile Ours, GgufFile Theirs, TempDir Dir) QuantizeBoth(string fileTypeName, bool pure)
    {
        Assert.True(LlamaFileTypes.TryParse(fileTypeName, out var fileType));
        var dir = new TempDir();
        string input = dir.File("in.gguf");
        TinyLlama.WriteGguf(input, DataModel);
        LlamaCpp.Quantize(input, dir.File("llama.gguf"), (LLamaFtype)(int)fileType, pure, threads: 2);
        GgufQuantizer.Run(input, dir.File("ours.gguf"), fileType, new QuantizeOptions { Pure = pure, Threads = 2 });
        return (GgufFile.Open(dir.File("ours.gguf")), GgufFile.Open(dir.File("llama.gguf")), dir);
    }
}
