using System.Text.Json;
using EdgeTune.Testing;

namespace EdgeTune.Benchmarks.Tests;

/// <summary>
/// The chain benchmark (quantise → QLoRA on the GGUF type → adapter export → llama.cpp) at a tiny shape given as a
/// config.json, through the same code as `chain --shape qwen2.5-0.5b`: it passes on a sound chain, and its checks fail
/// with one line on an adapter exported with the wrong scale and on an adapter llama.cpp never attached.
/// </summary>
public class ChainBenchmarkTests
{
    private static (int Code, string Stdout, string Stderr) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = ChainBenchmark.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private static string[] Tiny(TempDir dir, params string[] extra)
    {
        string config = dir.File("config.json");
        File.WriteAllText(config, """
            {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
             "tie_word_embeddings": false, "max_position_embeddings": 256, "hidden_act": "silu"}
            """);
        return ["--shape", config, "--type", "q8_0", "--steps", "3", "--seq", "64", "--work", dir.File("work"), "--json", .. extra];
    }

    [Fact]
    public void A_sound_chain_passes_with_llama_cpp_equal_to_the_trainer_and_the_adapter_moving_the_logits()
    {
        using var dir = new TempDir();
        var (code, stdout, stderr) = Run(Tiny(dir));
        Assert.True(code == 0, stderr);
        var report = JsonDocument.Parse(stdout).RootElement;
        Assert.Equal(["quantise", "train", "export adapter", "llama.cpp", "trainer forward"],
            report.GetProperty("stages").EnumerateArray().Select(s => s.GetProperty("name").GetString()));
        double parity = report.GetProperty("parity_relative_l2").GetDouble(), effect = report.GetProperty("adapter_effect_relative_l2").GetDouble();
        Assert.InRange(parity, 1e-7, ChainBenchmark.Tolerance);
        Assert.True(effect >= ChainBenchmark.EffectOverTolerance * ChainBenchmark.Tolerance, $"adapter effect {effect}");
        var losses = report.GetProperty("stages")[1].GetProperty("figures").GetProperty("losses").EnumerateArray().Select(l => l.GetDouble()).ToList();
        Assert.Equal(3, losses.Count);
        Assert.True(losses[^1] < losses[0], string.Join(", ", losses));
    }

    [Theory]
    [InlineData("wrong-scale")]
    [InlineData("detached")]
    public void The_parity_check_fails_with_one_line_on_a_broken_adapter(string fault)
    {
        using var dir = new TempDir();
        var (code, _, stderr) = Run(Tiny(dir, "--fault", fault));
        Assert.Equal(1, code);
        string last = stderr.Trim().Split('\n')[^1];
        Assert.StartsWith("chain: llama.cpp with the adapter vs the trainer's forward: relative L2 ", last, StringComparison.Ordinal);
    }

    [Fact]
    public void Help_prints_the_usage_and_bad_input_is_one_line()
    {
        var help = Run("--help");
        Assert.Equal(0, help.Code);
        Assert.Contains("qwen2.5-0.5b", help.Stdout, StringComparison.Ordinal);
        var bad = Run("--shape", "qwen2.5-0.5b", "--type", "q5_k");
        Assert.Equal(1, bad.Code);
        Assert.Equal("chain: --type q5_k: one of q4_k, q8_0, q4_0 (the GGUF types QLoRA trains on)", bad.Stderr.Trim());
        Assert.Equal("chain: --step: not an option of chain (see --help)", Run("--shape", "qwen2.5-0.5b", "--step", "3").Stderr.Trim());
        var unknown = Run("--shape", "no-such-model");
        Assert.Equal(1, unknown.Code);
        Assert.StartsWith("chain: no-such-model: not a built-in shape", unknown.Stderr.Trim(), StringComparison.Ordinal);
    }
}
