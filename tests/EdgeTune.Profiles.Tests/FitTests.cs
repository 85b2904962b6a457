using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Profiles.Fit;
using EdgeTune.Testing;
using LLama;
using LLama.Common;
using LLama.Native;

namespace EdgeTune.Profiles.Tests;

public class FitTests
{
    private static readonly ProfileLoader Shipped = new(new ProfileCatalog([TestProfiles.ShippedProfiles]));

    internal static long LlamaCppModelSize(string path)
    {
        LlamaCpp.EnsureLoaded();
        using var weights = LLamaWeights.LoadFromFile(new ModelParams(path) { GpuLayerCount = 0, ContextSize = 64 });
        return (long)weights.SizeInBytes;
    }

    [Theory]
    [InlineData(GgmlType.F32, "F32")]
    [InlineData(GgmlType.F16, "F16")]
    public void Weight_bytes_of_the_file_are_its_real_tensor_bytes(GgmlType type, string name)
    {
        using var dir = new TempDir();
        string path = dir.File("tiny.gguf");
        TinyLlama.WriteGguf(path, new TinyLlamaConfig(), type);
        var report = FitPlanner.Plan(Shipped.Load("x86-64-generic"), path, null, new FitOptions { Context = 256 });
        var file = report.Rows[0];
        Assert.True(file.IsFile);
        Assert.Equal(name, file.Type);

        long dataSection;
        long tensorBytes;
        using (var gguf = GgufFile.Open(path))
        {
            dataSection = gguf.FileSize - gguf.DataOffset; // every tensor here is a multiple of the 32-byte alignment: no padding
            tensorBytes = gguf.Tensors.Sum(t => t.ByteLength);
        }
        Assert.Equal(dataSection, file.WeightBytes);
        Assert.Equal(tensorBytes, file.WeightBytes);
        Assert.Equal(LlamaCppModelSize(path), file.WeightBytes); // llama_model_size: what llama.cpp allocates
        Assert.Equal(type == GgmlType.F32 ? 5_299_200 : 2_652_160, file.WeightBytes); // by hand, see Kv_cache_and_bandwidth_bound_are_the_hand_worked_numbers
        Assert.DoesNotContain(report.Rows.Skip(1), r => r.Type == name); // the file's own type is not planned again
    }

    [Fact]
    public void A_planned_F16_is_the_size_of_the_F16_file_llama_cpp_writes()
    {
        using var dir = new TempDir();
        string f32 = dir.File("tiny-f32.gguf"), f16 = dir.File("tiny-f16.gguf");
        TinyLlama.WriteGguf(f32, new TinyLlamaConfig { TiedEmbeddings = true });
        LlamaCpp.Quantize(f32, f16, LLamaFtype.MOSTLY_F16);
        var report = FitPlanner.Plan(Shipped.Load("jetson-orin-nano-8gb"), f32, null, new FitOptions { Context = 256 });
        var planned = report.Rows.Single(r => r.Type == "F16");
        Assert.False(planned.IsFile);
        Assert.Equal(LlamaCppModelSize(f16), planned.WeightBytes);
        using var written = GgufFile.Open(f16);
        Assert.Equal(written.Tensors.Sum(t => t.ByteLength), planned.WeightBytes);
    }

    [Fact]
    public void Kv_cache_and_bandwidth_bound_are_the_hand_worked_numbers()
    {
        // KV: layers x 2 x kv heads x head dim x N x bytes = 2 x 2 x 2 x 64 x 1024 x 2 (f16).
        Assert.Equal(1_048_576, MemoryMath.KvCacheBytes(layers: 2, kvHeads: 2, keyLength: 64, valueLength: 64, context: 1024, GgmlType.F16));
        Assert.Equal(2_097_152, MemoryMath.KvCacheBytes(2, 2, 64, 64, 1024, GgmlType.F32));
        // q8_0: a 128-wide row is 4 blocks of 34 bytes; 2 layers x 1024 positions x (K + V) x 136 bytes.
        Assert.Equal(557_056, MemoryMath.KvCacheBytes(2, 2, 64, 64, 1024, GgmlType.Q8_0));
        // Llama 3.2 1B: 16 layers, 8 KV heads of 64, 4096 positions, f16: 128 MiB.
        Assert.Equal(134_217_728, MemoryMath.KvCacheBytes(16, 8, 64, 64, 4096, GgmlType.F16));

        // Bytes read per token: every tensor, but one row of the (untied) token embedding.
        Assert.Equal(100 + 1000 + 500, MemoryMath.WeightBytesReadPerToken([("token_embd.weight", 1000, 10), ("output.weight", 1000, 10), ("blk.0.attn_q.weight", 500, 5)]));
        // Tied: the embedding is the output matrix and is read whole.
        Assert.Equal(1000 + 500, MemoryMath.WeightBytesReadPerToken([("token_embd.weight", 1000, 10), ("blk.0.attn_q.weight", 500, 5)]));

        // The default tiny llama (256 wide, 2 layers, 4 heads / 2 KV heads of 64, feed-forward 512, vocabulary 281), F32:
        //   token_embd and output 256 x 281 x 4 = 287,744 each; per layer: 2 norms 1,024 each, q and o 262,144 each,
        //   k and v 131,072 each, gate, up and down 524,288 each = 2,361,344; output_norm 1,024.
        //   Weights 287,744 + 2 x 2,361,344 + 1,024 + 287,744 = 5,299,200.
        //   Read per token: 5,299,200 - 287,744 + 1,024 (one embedding row) = 5,012,480; KV at 1024 positions 1,048,576.
        //   6,061,056 bytes per token at 68 GB/s: 68e9 / 6,061,056 = 11,219.17 tokens/s.
        using var dir = new TempDir();
        string path = dir.File("tiny.gguf");
        TinyLlama.WriteGguf(path, new TinyLlamaConfig());
        var report = FitPlanner.Plan(Shipped.Load("jetson-orin-nano-8gb"), path, null, new FitOptions { Context = 1024 });
        var row = report.Rows[0];
        Assert.Equal(1024, report.Context);
        Assert.Equal(5_299_200, row.WeightBytes);
        Assert.Equal(1_048_576, row.KvCacheBytes);
        Assert.Equal(6_061_056, row.BytesPerToken);
        Assert.Equal(11_219.17, row.DecodeBoundTokensPerSecond, 0.01);
        Assert.Equal(68e9 / 6_061_056, row.DecodeBoundTokensPerSecond, 9);
        Assert.Equal(row.WeightBytes + row.KvCacheBytes + row.OverheadBytes, row.TotalBytes);

        // The Super profile's 102 GB/s raises the bound by exactly 102/68.
        var super = FitPlanner.Plan(Shipped.Load("jetson-orin-nano-8gb-super"), path, null, new FitOptions { Context = 1024 });
        Assert.Equal(row.DecodeBoundTokensPerSecond * 102 / 68, super.Rows[0].DecodeBoundTokensPerSecond, 6);
    }

    [Fact]
    public void The_context_defaults_to_4096_or_the_trained_context()
    {
        using var dir = new TempDir();
        string path = dir.File("tiny.gguf");
        TinyLlama.WriteGguf(path, new TinyLlamaConfig { ContextLength = 128 });
        var profile = Shipped.Load("x86-64-generic");
        Assert.Equal(128, FitPlanner.Plan(profile, path, null, new FitOptions()).Context);
        TinyLlama.WriteGguf(path, new TinyLlamaConfig { ContextLength = 32768 });
        Assert.Equal(4096, FitPlanner.Plan(profile, path, null, new FitOptions()).Context);
    }

    [Fact]
    public void The_recommendation_is_the_most_precise_type_that_fits_and_is_fast_enough()
    {
        using var dir = new TempDir();
        string model = dir.File("tiny.gguf");
        TinyLlama.WriteGguf(model, new TinyLlamaConfig());
        var options = new FitOptions { Context = 256 };

        // Plenty of room: F16, never F32 (same model, twice the bytes per token).
        var roomy = FitPlanner.Plan(Shipped.Load("x86-64-generic"), model, null, options);
        Assert.Equal("F16", roomy.Recommended?.Type);

        // Only a few megabytes usable: the largest type whose total fits.
        var reference = FitPlanner.Plan(Shipped.Load("x86-64-generic"), model, null, options);
        long limit = reference.Rows.Single(r => r.Type == "Q6_K").TotalBytes + 1000;
        string small = TestProfiles.Write(dir, "small", TestProfiles.Line(18, $"usable_for_model = {{ value = {limit}, unit = \"B\", source = \"estimate: a test\" }}"));
        var tight = FitPlanner.Plan(TestProfiles.Loader(dir).Load(small), model, null, options);
        Assert.Equal("Q6_K", tight.Recommended?.Type);
        Assert.All(tight.Rows.Where(r => r.WeightBytes > tight.Recommended!.WeightBytes), r => Assert.False(r.FitsMemory));

        // A decode budget no type can reach even at its bound: the fastest type that fits, said so.
        string slow = TestProfiles.Write(dir, "slow", TestProfiles.Append("", "[budgets]", "min_decode_tokens_per_s = { value = 1000000, unit = \"tokens/s\", source = \"policy: impossible\" }"));
        var impossible = FitPlanner.Plan(TestProfiles.Loader(dir).Load(slow), model, null, options);
        Assert.Equal(impossible.Rows.Where(r => r.FitsMemory).MinBy(r => r.BytesPerToken)!.Type, impossible.Recommended?.Type);
        Assert.StartsWith("no type that fits reaches the 1000000 tokens/s decode budget", impossible.Reason);

        // Nothing fits.
        string tiny = TestProfiles.Write(dir, "tiny", TestProfiles.Line(18, "usable_for_model = { value = 1, unit = \"MB\", source = \"estimate: a test\" }"));
        var none = FitPlanner.Plan(TestProfiles.Loader(dir).Load(tiny), model, null, options);
        Assert.Null(none.Recommended);
        Assert.StartsWith("no type fits the 1 MB usable memory", none.Reason);
    }

    [Fact]
    public void An_adapter_adds_its_bytes_to_memory_and_to_every_token()
    {
        using var dir = new TempDir();
        string model = dir.File("tiny.gguf"), adapter = dir.File("lora.gguf");
        var config = new TinyLlamaConfig();
        TinyLlama.WriteGguf(model, config);
        long adapterBytes = WriteLora(adapter, config, rank: 8);
        Assert.Equal(2 * (256 * 8 + 8 * 256) * 4, adapterBytes); // 2 layers x (A: 256 x 8, B: 8 x 256) of attn_q, F32: 32,768

        var profile = Shipped.Load("jetson-orin-nano-8gb");
        var plain = FitPlanner.Plan(profile, model, null, new FitOptions { Context = 512 });
        var with = FitPlanner.Plan(profile, model, adapter, new FitOptions { Context = 512 });
        Assert.Equal(8, with.Adapter!.Rank);
        Assert.Equal(adapterBytes, with.Rows[0].AdapterBytes);
        Assert.Equal(plain.Rows[0].TotalBytes + adapterBytes, with.Rows[0].TotalBytes);
        Assert.Equal(plain.Rows[0].BytesPerToken + adapterBytes, with.Rows[0].BytesPerToken);

        var swapped = Assert.Throws<EdgeTuneException>(() => FitPlanner.Plan(profile, adapter, null, new FitOptions()));
        Assert.Equal($"{adapter}: this is a LoRA adapter, not a model; pass it with --adapter", swapped.Message);
        var notAdapter = Assert.Throws<FileFormatException>(() => FitPlanner.Plan(profile, model, model, new FitOptions()));
        Assert.StartsWith($"{model}: key 'general.type': not a GGUF LoRA adapter", notAdapter.Message);
    }

    /// <summary>A GGUF LoRA adapter on attn_q of every layer (convert_lora_to_gguf.py's layout); returns its tensor bytes.</summary>
    internal static long WriteLora(string path, TinyLlamaConfig config, int rank, float scale = 0.01f)
    {
        var writer = new GgufWriter();
        writer.Metadata.Set("general.architecture", GgufValue.String("llama"));
        writer.Metadata.Set("general.type", GgufValue.String("adapter"));
        writer.Metadata.Set("adapter.type", GgufValue.String("lora"));
        writer.Metadata.Set("adapter.lora.alpha", GgufValue.F32(rank));
        var rng = new Random(5);
        long bytes = 0;
        for (int layer = 0; layer < config.Layers; layer++)
        {
            foreach (var (suffix, shape) in new[] { ("lora_a", new long[] { config.Embedding, rank }), ("lora_b", new long[] { rank, config.Embedding }) })
            {
                var values = new float[shape[0] * shape[1]];
                for (int i = 0; i < values.Length; i++) values[i] = (float)(rng.NextDouble() - 0.5) * scale;
                var data = new byte[values.Length * 4];
                Buffer.BlockCopy(values, 0, data, 0, data.Length);
                writer.AddTensor($"blk.{layer}.attn_q.weight.{suffix}", GgmlType.F32, shape, data);
                bytes += data.Length;
            }
        }
        writer.Write(path);
        return bytes;
    }
}

/// <summary>Tests that read llama.cpp's log run alone: the log callback is global to the process.</summary>
[CollectionDefinition("llama.cpp log", DisableParallelization = true)]
public sealed class LlamaLogCollection;

[Collection("llama.cpp log")]
public class LlamaCppBufferTests
{
    private static List<string> LoadAndLog(string path, uint context, bool flashAttention)
    {
        LlamaCpp.EnsureLoaded();
        var log = new List<string>();
        NativeLogConfig.llama_log_set((_, message) => { lock (log) log.Add(message); });
        try
        {
            var parameters = new ModelParams(path) { ContextSize = context, GpuLayerCount = 0, Threads = 1, FlashAttention = flashAttention, BatchSize = 512, UBatchSize = 512 };
            using var weights = LLamaWeights.LoadFromFile(parameters);
            using var ctx = weights.CreateContext(parameters);
        }
        finally
        {
            NativeLogConfig.llama_log_set((_, _) => { });
        }
        lock (log) return log.ToList();
    }

    private static double MiB(List<string> log, string marker)
    {
        var line = log.First(l => l.Contains(marker, StringComparison.Ordinal));
        var m = System.Text.RegularExpressions.Regex.Match(line[line.IndexOf(marker, StringComparison.Ordinal)..], @"([0-9.]+) MiB");
        return double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) * 1024 * 1024;
    }

    [Theory]
    [InlineData(256, 2, 281, 2048u, false)]
    [InlineData(256, 2, 281, 2048u, true)]
    [InlineData(512, 4, 4096, 1024u, false)]
    [InlineData(512, 4, 32000, 1024u, true)]
    public void Kv_cache_is_exact_and_the_buffer_estimate_bounds_what_llama_cpp_reserves(int embedding, int layers, int vocabulary, uint context, bool flashAttention)
    {
        using var dir = new TempDir();
        string path = dir.File("m.gguf");
        var config = new TinyLlamaConfig { Embedding = embedding, Layers = layers, Heads = 8, KvHeads = 2, FeedForward = 3 * embedding, ExtraTokens = vocabulary - 281, ContextLength = 4096 };
        TinyLlama.WriteGguf(path, config, GgmlType.F16);
        var log = LoadAndLog(path, context, flashAttention);
        var shape = ModelShape.Read(path);

        // "llama_kv_cache: CPU KV buffer size = 2.00 MiB": ours, to the byte.
        Assert.Equal(MiB(log, "KV buffer size"), MemoryMath.KvCacheBytes(shape, context, GgmlType.F16));

        // "CPU compute buffer size" + "CPU  output buffer size": the estimate is an upper bound within 30%.
        double reserved = MiB(log, "compute buffer size") + MiB(log, "output buffer size");
        long estimate = MemoryMath.ComputeBufferBytes(shape, context, 512, flashAttention);
        Assert.InRange(estimate, reserved, reserved * 1.3);
    }
}
