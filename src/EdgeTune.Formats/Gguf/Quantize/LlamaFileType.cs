using EdgeTune.Core;

namespace EdgeTune.Formats.Gguf.Quantize;

/// <summary>llama.cpp's file types (enum llama_ftype), stored as <c>general.file_type</c>.</summary>
public enum LlamaFileType : uint
{
    AllF32 = 0,
    MostlyF16 = 1,
    MostlyQ4_0 = 2,
    MostlyQ4_1 = 3,
    MostlyQ8_0 = 7,
    MostlyQ5_0 = 8,
    MostlyQ5_1 = 9,
    MostlyQ2_K = 10,
    MostlyQ3_K_S = 11,
    MostlyQ3_K_M = 12,
    MostlyQ3_K_L = 13,
    MostlyQ4_K_S = 14,
    MostlyQ4_K_M = 15,
    MostlyQ5_K_S = 16,
    MostlyQ5_K_M = 17,
    MostlyQ6_K = 18,
    MostlyBF16 = 32,
}

public static class LlamaFileTypes
{
    /// <summary>The names llama-quantize accepts, in its order.</summary>
    public static readonly IReadOnlyList<(string Name, LlamaFileType Type, string Description)> All =
    [
        ("Q4_0", LlamaFileType.MostlyQ4_0, "4.34 bits per weight, legacy"),
        ("Q4_1", LlamaFileType.MostlyQ4_1, "4.78 bpw, legacy"),
        ("Q5_0", LlamaFileType.MostlyQ5_0, "5.21 bpw, legacy"),
        ("Q5_1", LlamaFileType.MostlyQ5_1, "5.65 bpw, legacy"),
        ("Q2_K", LlamaFileType.MostlyQ2_K, "2.96 bpw mix, large quality loss"),
        ("Q3_K_S", LlamaFileType.MostlyQ3_K_S, "3.41 bpw, Q3_K everywhere"),
        ("Q3_K_M", LlamaFileType.MostlyQ3_K_M, "3.74 bpw mix"),
        ("Q3_K_L", LlamaFileType.MostlyQ3_K_L, "4.03 bpw mix"),
        ("Q4_K_S", LlamaFileType.MostlyQ4_K_S, "4.37 bpw mix"),
        ("Q4_K_M", LlamaFileType.MostlyQ4_K_M, "4.58 bpw mix, the usual edge choice"),
        ("Q5_K_S", LlamaFileType.MostlyQ5_K_S, "5.21 bpw"),
        ("Q5_K_M", LlamaFileType.MostlyQ5_K_M, "5.33 bpw mix"),
        ("Q6_K", LlamaFileType.MostlyQ6_K, "6.56 bpw"),
        ("Q8_0", LlamaFileType.MostlyQ8_0, "8.50 bpw, near lossless"),
        ("F16", LlamaFileType.MostlyF16, "16 bpw"),
        ("BF16", LlamaFileType.MostlyBF16, "16 bpw, bfloat16"),
        ("F32", LlamaFileType.AllF32, "32 bpw, no quantisation"),
    ];

    public static bool TryParse(string name, out LlamaFileType type)
    {
        foreach (var (n, t, _) in All)
        {
            if (string.Equals(n, name, StringComparison.OrdinalIgnoreCase))
            {
                type = t;
                return true;
            }
        }
        type = default;
        return false;
    }

    public static LlamaFileType Parse(string name) =>
        TryParse(name, out var type)
            ? type
            : throw new EdgeTuneException($"unknown quantisation type '{name}'; choose one of {string.Join(", ", All.Select(t => t.Name))}");

    public static string Name(LlamaFileType type) =>
        All.FirstOrDefault(x => x.Type == type).Name ?? $"ftype {(uint)type}";

    /// <summary>The tensor type a file type starts from before the per-tensor mix rules (llama_ftype_get_default_type).</summary>
    public static GgmlType DefaultTensorType(LlamaFileType type) => type switch
    {
        LlamaFileType.AllF32 => GgmlType.F32,
        LlamaFileType.MostlyF16 => GgmlType.F16,
        LlamaFileType.MostlyBF16 => GgmlType.BF16,
        LlamaFileType.MostlyQ4_0 => GgmlType.Q4_0,
        LlamaFileType.MostlyQ4_1 => GgmlType.Q4_1,
        LlamaFileType.MostlyQ5_0 => GgmlType.Q5_0,
        LlamaFileType.MostlyQ5_1 => GgmlType.Q5_1,
        LlamaFileType.MostlyQ8_0 => GgmlType.Q8_0,
        LlamaFileType.MostlyQ2_K => GgmlType.Q2_K,
        LlamaFileType.MostlyQ3_K_S or LlamaFileType.MostlyQ3_K_M or LlamaFileType.MostlyQ3_K_L => GgmlType.Q3_K,
        LlamaFileType.MostlyQ4_K_S or LlamaFileType.MostlyQ4_K_M => GgmlType.Q4_K,
        LlamaFileType.MostlyQ5_K_S or LlamaFileType.MostlyQ5_K_M => GgmlType.Q5_K,
        LlamaFileType.MostlyQ6_K => GgmlType.Q6_K,
        _ => throw new ArgumentOutOfRangeException(nameof(type), $"file type {(uint)type} is not supported"),
    };
}
