using System.Text.Json;
using EdgeTune.Models.Reference;
using EdgeTune.Testing;
using Xunit.Abstractions;
using EdgeTune.Core.Numerics;

namespace EdgeTune.Models.Tests;

/// <summary>
/// Our reference forward against an independent PyTorch implementation of the Hugging Face forward.
/// Fixtures: tests/assets/golden/&lt;model&gt;/ (config.json, model.safetensors, expected.json), written by
/// tests/assets/golden/hf_forward.py with Debian's python3-torch 1.13 (float64 logits of float32 weights).
/// </summary>
public sealed class GoldenTests(ITestOutputHelper output)
{
    public static TheoryData<string> Models => new("llama-gqa-llama3rope", "qwen2-mha-tied");

    private static string Folder(string name)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "tests", "assets", "golden", name);
            if (Directory.Exists(candidate)) return candidate;
        }
        throw new DirectoryNotFoundException($"tests/assets/golden/{name} not found above {AppContext.BaseDirectory}");
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void Reference_logits_equal_pytorch(string name)
    {
        string folder = Folder(name);
        using var expected = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(folder, "expected.json")));
        int[] tokens = expected.RootElement.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        float[] torchLogits = expected.RootElement.GetProperty("logits").EnumerateArray().Select(e => e.GetSingle()).ToArray();

        double f32 = LogitDistance.RelativeL2(ReferenceModel.FromHuggingFace(folder).Forward(tokens), torchLogits);
        double f64 = LogitDistance.RelativeL2(ReferenceModel.FromHuggingFace(folder, ReferencePrecision.Float64).Forward(tokens), torchLogits);
        output.WriteLine($"{name}: ours vs PyTorch, relative L2 over {tokens.Length} positions: f32 {f32:E2}, f64 {f64:E2}");
        Assert.True(f32 <= 1e-4, $"f32 {f32:E2}");
        // f64 is limited by the fixture's 9 significant digits and by the rope factors, kept float32 as llama.cpp stores them.
        Assert.True(f64 <= 1e-7, $"f64 {f64:E2}");
    }
}

public sealed class OpsTests
{
    [Fact]
    public void Vector_dot_matches_the_scalar_reference_for_every_remainder()
    {
        var rng = new Random(3);
        for (int n = 0; n <= 67; n++)
        {
            var a = Enumerable.Range(0, n).Select(_ => rng.NextDouble() - 0.5).ToArray();
            var b = Enumerable.Range(0, n).Select(_ => rng.NextDouble() - 0.5).ToArray();
            Assert.InRange(Ops.Dot<double>(a, b) - Ops.DotScalar<double>(a, b), -1e-12, 1e-12);
            var af = Array.ConvertAll(a, x => (float)x);
            var bf = Array.ConvertAll(b, x => (float)x);
            Assert.InRange(Ops.Dot<float>(af, bf) - Ops.DotScalar<float>(af, bf), -1e-5f, 1e-5f);
        }
    }
}
