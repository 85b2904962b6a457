using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Testing;

namespace EdgeTune.Cli.Tests;

/// <summary>
/// What `edgetune bench` writes and how it turns step times into figures. How fast it measures against a direct
/// LLamaSharp decode loop is a benchmark, not a test: `dotnet run -c Release --project tests/EdgeTune.Benchmarks -- bench-agreement`.
/// </summary>
public class BenchCommandTests
{
    internal static string TinyModel(TempDir dir, string name = "tiny.gguf")
    {
        string path = dir.File(name);
        TinyLlama.WriteGguf(path, new TinyLlamaConfig());
        return path;
    }

    [Fact]
    public void Bench_on_the_x86_profile_writes_json_markdown_and_png()
    {
        using var dir = new TempDir();
        string model = TinyModel(dir);
        string outDir = Path.Combine(dir.Path, "out");
        var r = CliRunner.Run("bench", "--profile", "x86-64-generic", "--model", model,
            "--prompt-tokens", "32", "--gen-tokens", "16", "--repetitions", "3", "--threads", "1", "--out", outDir);
        Assert.Equal(0, r.ExitCode);

        string stem = Path.Combine(outDir, "tiny-x86-64-generic");
        Assert.Contains($"wrote {stem}.json, {stem}.md, {stem}.png", r.Stderr);
        var png = File.ReadAllBytes(stem + ".png");
        Assert.True(png.Length > 10_000, $"{png.Length} bytes");
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);

        using var doc = JsonDocument.Parse(File.ReadAllText(stem + ".json"));
        var root = doc.RootElement;
        Assert.Equal("edgetune.bench/1", root.GetProperty("schema").GetString());
        Assert.Equal("x86-64-generic", root.GetProperty("profile").GetProperty("name").GetString());
        Assert.Equal("llama_cpp_cpu", root.GetProperty("runtime").GetProperty("key").GetString());
        Assert.Equal(1, root.GetProperty("runtime").GetProperty("threads").GetInt32());
        var results = root.GetProperty("results");
        var gen = results.GetProperty("gen_tokens_per_second");
        Assert.Equal(3, gen.GetProperty("count").GetInt32());
        Assert.True(gen.GetProperty("mean").GetDouble() > 0);
        Assert.True(gen.GetProperty("standard_deviation").GetDouble() >= 0);
        Assert.True(results.GetProperty("ttft_ms").GetProperty("p95").GetDouble() >= results.GetProperty("ttft_ms").GetProperty("p50").GetDouble());
        var latency = results.GetProperty("token_latency_ms");
        Assert.Equal(48, latency.GetProperty("count").GetInt32());                       // 3 repetitions x 16 steps, warm-up left out
        Assert.True(latency.GetProperty("p99").GetDouble() >= latency.GetProperty("p95").GetDouble());
        Assert.True(results.GetProperty("peak_memory_bytes").GetInt64() > 0);
        Assert.False(results.TryGetProperty("power", out _));                              // no power monitor on this machine
        Assert.Contains("power: the profile names no power monitor", root.GetProperty("host").GetProperty("sensors").EnumerateArray().Select(e => e.GetString()));
        Assert.True(results.GetProperty("runtime_reported").GetProperty("gen_tokens_per_second").GetDouble() > 0);

        // Every repetition with its steps; the spread of the run itself.
        Assert.Equal(3, root.GetProperty("repetitions").GetArrayLength());
        Assert.All(root.GetProperty("repetitions").EnumerateArray(), rep => Assert.Equal(16, rep.GetProperty("token_latencies_ms").GetArrayLength()));
        // Each repetition's rate is its tokens over the sum of its step times; the reported mean is their mean.
        var reps = root.GetProperty("repetitions").EnumerateArray().ToList();
        foreach (var rep in reps)
        {
            double stepSeconds = rep.GetProperty("token_latencies_ms").EnumerateArray().Sum(v => v.GetDouble()) / 1e3;
            Assert.Equal(16 / stepSeconds, rep.GetProperty("gen_tokens_per_second").GetDouble(), 6);
        }
        Assert.Equal(reps.Average(x => x.GetProperty("gen_tokens_per_second").GetDouble()), gen.GetProperty("mean").GetDouble(), 6);
        var spread = root.GetProperty("spread");
        Assert.Equal(gen.GetProperty("cv_percent").GetDouble(), spread.GetProperty("gen_cv_percent").GetDouble(), 9);
        Assert.Contains("over 3 repetitions", spread.GetProperty("verdict").GetString());

        // Against the budgets (x86-64-generic has no power budget) and the bandwidth bound.
        var budgets = root.GetProperty("budgets").EnumerateArray().ToDictionary(b => b.GetProperty("name").GetString()!, b => b.GetProperty("status").GetString());
        Assert.Equal(["max_model_memory", "min_decode_tokens_per_s", "max_ttft_p95"], budgets.Keys);
        Assert.All(budgets.Values, s => Assert.Contains(s, new[] { "pass", "fail" }));
        var bound = root.GetProperty("bound");
        Assert.Equal(100 * gen.GetProperty("mean").GetDouble() / bound.GetProperty("gen_tokens_per_second_bound").GetDouble(), bound.GetProperty("gen_percent_of_bound").GetDouble(), 6);

        string md = File.ReadAllText(stem + ".md");
        Assert.Contains("# edgetune bench: tiny-llama-test on x86-64-generic", md);
        Assert.Contains("| Generation | ", md);
        Assert.Contains("| Average power | not measured: the profile names no power monitor", md);
        Assert.Contains("## Run-to-run spread", md);

        Assert.Contains("generation ", r.Stdout);
        Assert.Contains("of the ", r.Stdout);
        Assert.Contains("bandwidth bound", r.Stdout);
        Assert.Contains("power          not measured (the profile names no power monitor)", r.Stdout);
        Assert.Contains("spread         generation varies ", r.Stdout);
    }

    [Fact]
    public void Compare_puts_results_side_by_side()
    {
        using var dir = new TempDir();
        string f32 = TinyModel(dir, "tiny-f32.gguf");
        string f16 = dir.File("tiny-f16.gguf");
        TinyLlama.WriteGguf(f16, new TinyLlamaConfig(), GgmlType.F16);
        string outDir = Path.Combine(dir.Path, "out");
        foreach (var model in new[] { f32, f16 })
            Assert.Equal(0, CliRunner.Run("bench", "--profile", "x86-64-generic", "--model", model, "--prompt-tokens", "16", "--gen-tokens", "8",
                "--repetitions", "2", "--warmup", "0", "--threads", "1", "--out", outDir).ExitCode);
        string a = Path.Combine(outDir, "tiny-f32-x86-64-generic.json"), b = Path.Combine(outDir, "tiny-f16-x86-64-generic.json");

        var text = CliRunner.Run("bench", "compare", a, b);
        Assert.Equal(0, text.ExitCode);
        var lines = text.Stdout.Split('\n');
        Assert.Contains("tiny-f32-x86-64-generic", lines[0]);
        Assert.Contains("tiny-f16-x86-64-generic", lines[0]);
        Assert.Contains(lines, l => l.StartsWith("model ", StringComparison.Ordinal) && l.Contains("(F32)") && l.Contains("(F16)"));
        Assert.Contains(lines, l => l.StartsWith("generation tokens/s", StringComparison.Ordinal) && l.Contains('%'));

        var md = CliRunner.Run("bench", "compare", a, b, "--markdown");
        Assert.StartsWith("| | tiny-f32-x86-64-generic | tiny-f16-x86-64-generic |", md.Stdout);
        var json = CliRunner.Run("bench", "compare", a, b, "--json");
        using var doc = JsonDocument.Parse(json.Stdout);
        Assert.Equal(2, doc.RootElement.GetProperty("gen_tokens_per_s").GetArrayLength());

        string other = dir.File("other.json");
        File.WriteAllText(other, "{\"name\": \"not a bench\"}");
        var bad = CliRunner.Run("bench", "compare", a, other);
        Assert.Equal(1, bad.ExitCode);
        Assert.Equal($"edgetune: {other}: not an edgetune bench result (expected \"schema\": \"edgetune.bench/1\")", bad.Stderr.TrimEnd());
        Assert.Equal(2, CliRunner.Run("bench", "compare", a).ExitCode);
    }

    [Fact]
    public void A_missed_budget_fails_the_run_only_when_asked()
    {
        using var dir = new TempDir();
        string model = TinyModel(dir);
        string profile = dir.File("impossible.toml");
        string text = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "profiles", "x86-64-generic.toml"))
            .Replace("name = \"x86-64-generic\"", "name = \"impossible\"", StringComparison.Ordinal)
            .Replace("min_decode_tokens_per_s = { value = 10,", "min_decode_tokens_per_s = { value = 1000000,", StringComparison.Ordinal);
        File.WriteAllText(profile, text);
        string[] args = ["bench", "--profile", profile, "--model", model, "--prompt-tokens", "8", "--gen-tokens", "4", "--repetitions", "2", "--threads", "1", "--out", Path.Combine(dir.Path, "out")];

        var lenient = CliRunner.Run(args);
        Assert.Equal(0, lenient.ExitCode);
        Assert.Contains("budget >= 1000000 tokens/s: fail", lenient.Stdout);

        var strict = CliRunner.Run([.. args, "--fail-on-budget"]);
        Assert.Equal(1, strict.ExitCode);
        Assert.Contains($"edgetune: {model}: misses the impossible budget min_decode_tokens_per_s (", strict.Stderr);
    }

    [Fact]
    public void A_lora_adapter_is_applied_and_counted()
    {
        using var dir = new TempDir();
        string model = TinyModel(dir);
        string adapter = dir.File("lora.gguf");
        long adapterBytes = WriteLora(adapter, new TinyLlamaConfig(), rank: 4);
        var r = CliRunner.Run("bench", "--profile", "x86-64-generic", "--model", model, "--adapter", adapter,
            "--prompt-tokens", "8", "--gen-tokens", "4", "--repetitions", "1", "--threads", "1", "--out", Path.Combine(dir.Path, "out"), "--json");
        Assert.Equal(0, r.ExitCode);
        using var doc = JsonDocument.Parse(r.Stdout);
        Assert.Equal(adapterBytes, doc.RootElement.GetProperty("model").GetProperty("adapter_bytes").GetInt64());
        Assert.Contains("one repetition", doc.RootElement.GetProperty("spread").GetProperty("verdict").GetString());

        var swapped = CliRunner.Run("bench", "--profile", "x86-64-generic", "--model", model, "--adapter", model, "--out", Path.Combine(dir.Path, "out"));
        Assert.Equal(1, swapped.ExitCode);
        Assert.StartsWith($"edgetune: {model}: key 'general.type': not a GGUF LoRA adapter", swapped.Stderr);
    }

    [Fact]
    public void Bad_input_exits_1_and_bad_usage_exits_2()
    {
        using var dir = new TempDir();
        var missing = CliRunner.RunProcess("bench", "--profile", "x86-64-generic", "--model", dir.File("nope.gguf"), "--out", dir.Path);
        Assert.Equal(1, missing.ExitCode);
        Assert.Equal($"edgetune: {dir.File("nope.gguf")}: no such file", missing.Stderr.TrimEnd());
        Assert.Equal("", missing.Stdout);

        string model = TinyModel(dir);
        Assert.Equal(1, CliRunner.Run("bench", "--profile", "no-such-board", "--model", model).ExitCode);
        Assert.Equal(2, CliRunner.Run("bench", "--profile", "x86-64-generic").ExitCode);
        Assert.Equal(2, CliRunner.Run("bench", "--profile", "x86-64-generic", "--model", model, "--repetitions", "0").ExitCode);
        Assert.Equal(2, CliRunner.Run("bench", "--profile", "x86-64-generic", "--model", model, "--gen-tokens", "-3").ExitCode);
        Assert.Equal(0, CliRunner.Run("bench", "--help").ExitCode);
        Assert.Equal(0, CliRunner.Run("bench", "compare", "--help").ExitCode);
    }

    [Theory]
    [InlineData("fp32", "ONNX fp32", "f32")]
    [InlineData("int4", "ONNX int4 (block 32)", "f32")]
    public void Bench_runs_an_exported_onnx_folder_through_onnx_runtime_genai(string precision, string type, string kvType)
    {
        using var dir = new TempDir();
        string onnx = dir.File($"tiny-{precision}");
        var export = CliRunner.Run("export", "onnx", TinyModel(dir), "--out", onnx, "--precision", precision, "--block-size", "32");
        Assert.True(export.ExitCode == 0, export.Stderr);
        string outDir = Path.Combine(dir.Path, "out");

        // No --runtime: a folder with genai_config.json is ONNX Runtime GenAI's; the trailing slash is a user's habit.
        var r = CliRunner.Run("bench", "--profile", "x86-64-generic", "--model", onnx + Path.DirectorySeparatorChar,
            "--prompt-tokens", "32", "--gen-tokens", "16", "--repetitions", "2", "--threads", "1", "--out", outDir, "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        string stem = Path.Combine(outDir, $"tiny-{precision}-x86-64-generic");
        Assert.Contains($"wrote {stem}.json, {stem}.md, {stem}.png", r.Stderr);
        Assert.Equal(r.Stdout.Trim(), File.ReadAllText(stem + ".json").Trim());

        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        var runtime = root.GetProperty("runtime");
        Assert.Equal("onnxruntime_cpu", runtime.GetProperty("key").GetString());
        Assert.StartsWith("ONNX Runtime GenAI ", runtime.GetProperty("description").GetString());
        Assert.Equal(kvType, runtime.GetProperty("kv_type").GetString());
        var model = root.GetProperty("model");
        Assert.Equal(type, model.GetProperty("type").GetString());
        Assert.Equal("llama", model.GetProperty("architecture").GetString());
        Assert.True(model.GetProperty("weight_bytes").GetInt64() > 0);
        Assert.True(model.GetProperty("file_bytes").GetInt64() >= model.GetProperty("weight_bytes").GetInt64());

        var results = root.GetProperty("results");
        Assert.True(results.GetProperty("gen_tokens_per_second").GetProperty("mean").GetDouble() > 0);
        Assert.True(results.GetProperty("prompt_tokens_per_second").GetProperty("mean").GetDouble() > 0);
        Assert.True(results.GetProperty("ttft_ms").GetProperty("p50").GetDouble() > 0);
        Assert.Equal(32, results.GetProperty("token_latency_ms").GetProperty("count").GetInt32()); // 2 repetitions x 16 steps
        Assert.True(results.GetProperty("peak_memory_bytes").GetInt64() > 0);
        Assert.False(results.TryGetProperty("runtime_reported", out _));                         // GenAI keeps no timings of its own
        Assert.True(root.GetProperty("bound").GetProperty("gen_tokens_per_second_bound").GetDouble() > 0);
        Assert.DoesNotContain(root.GetProperty("notes").EnumerateArray(), n => n.GetString()!.Contains("does not list the runtime"));

        // The same folder named explicitly; the text summary names the runtime.
        var text = CliRunner.Run("bench", "--profile", "x86-64-generic", "--model", onnx, "--runtime", "onnx",
            "--prompt-tokens", "8", "--gen-tokens", "4", "--repetitions", "1", "--warmup", "0", "--threads", "1", "--out", outDir);
        Assert.True(text.ExitCode == 0, text.Stderr);
        Assert.Contains($"bench tiny-{precision} ({type}) on x86-64-generic: ONNX Runtime GenAI ", text.Stdout);
    }

    [Fact]
    public void A_runtime_that_does_not_fit_the_model_is_a_usage_error_in_one_line()
    {
        using var dir = new TempDir();
        string gguf = TinyModel(dir);
        string onnx = dir.File("tiny-onnx");
        Assert.Equal(0, CliRunner.Run("export", "onnx", gguf, "--out", onnx, "--precision", "fp32").ExitCode);
        string[] common = ["--profile", "x86-64-generic", "--out", Path.Combine(dir.Path, "out")];

        var onnxOnGguf = CliRunner.Run(["bench", .. common, "--model", gguf, "--runtime", "onnx"]);
        Assert.Equal(2, onnxOnGguf.ExitCode);
        Assert.Equal($"edgetune: {gguf}: --runtime onnx cannot run a GGUF file (use --runtime llama.cpp)", onnxOnGguf.Stderr.TrimEnd());

        var llamaOnOnnx = CliRunner.Run(["bench", .. common, "--model", onnx, "--runtime", "llama.cpp"]);
        Assert.Equal(2, llamaOnOnnx.ExitCode);
        Assert.Equal($"edgetune: {onnx}: --runtime llama.cpp cannot run an ONNX folder (use --runtime onnx)", llamaOnOnnx.Stderr.TrimEnd());

        var plainFolder = CliRunner.Run(["bench", .. common, "--model", dir.Path]);
        Assert.Equal(2, plainFolder.ExitCode);
        Assert.Equal($"edgetune: {dir.Path}: a folder without genai_config.json; --model takes a .gguf file or a folder written by 'edgetune export onnx'", plainFolder.Stderr.TrimEnd());

        Assert.Equal(2, CliRunner.Run(["bench", .. common, "--model", gguf, "--runtime", "tensorrt"]).ExitCode);

        // The exported folder keeps the model's trained context (128 for the tiny model); a longer run is refused in one line.
        var tooLong = CliRunner.Run(["bench", .. common, "--model", onnx, "--prompt-tokens", "128", "--gen-tokens", "64", "--repetitions", "1", "--threads", "1"]);
        Assert.Equal(1, tooLong.ExitCode);
        Assert.EndsWith($"edgetune: {onnx}: --prompt-tokens 128 + --gen-tokens 64 exceed the model's context of 128 tokens", tooLong.Stderr.TrimEnd());
    }

    /// <summary>A GGUF LoRA adapter on attn_q of every layer (convert_lora_to_gguf.py's layout); returns its tensor bytes.</summary>
    internal static long WriteLora(string path, TinyLlamaConfig config, int rank)
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
                for (int i = 0; i < values.Length; i++) values[i] = (float)(rng.NextDouble() - 0.5) * 0.01f;
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
