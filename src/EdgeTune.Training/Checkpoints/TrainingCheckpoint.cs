using System.Runtime.InteropServices;
using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Formats.Safetensors;
using EdgeTune.Kernels;
using EdgeTune.Training.Model;

namespace EdgeTune.Training.Checkpoints;

/// <summary>Where training stands after an optimizer step: enough to continue exactly as if never stopped.</summary>
public sealed record TrainerState
{
    /// <summary>Optimizer steps completed.</summary>
    public int Step { get; init; }
    public int TotalSteps { get; init; }
    public double BestEvalLoss { get; init; } = double.PositiveInfinity;
    public int BestStep { get; init; }
    public int EvalsWithoutImprovement { get; init; }
    public double LossMean { get; init; }
    public string Layout { get; init; } = "";
}

/// <summary>
/// A resumable checkpoint: checkpoint/state.safetensors holds the trainable parameters and both AdamW moments
/// (flat float32, in the layout the model states), and checkpoint/trainer.json the step counters. The data order
/// and dropout masks are functions of (seed, step), so nothing else is needed for an exact resume. Written to a
/// temporary folder and renamed, so a crash mid-write leaves the previous checkpoint intact.
/// </summary>
public static class TrainingCheckpoint
{
    public const string FolderName = "checkpoint";

    public static void Save(string runDir, TrainableLlama model, DeviceBuffer m, DeviceBuffer v, TrainerState state)
    {
        string final = Path.Combine(runDir, FolderName);
        string temp = final + ".tmp";
        if (Directory.Exists(temp)) Directory.Delete(temp, true);
        Directory.CreateDirectory(temp);
        var b = model.Backend;
        long n = model.Layout.Total;
        var writer = new SafetensorsWriter();
        writer.Metadata["format"] = "edgetune-checkpoint";
        foreach (var (name, buffer) in new[] { ("parameters", model.Parameters), ("adam_m", m), ("adam_v", v) })
        {
            var values = new float[n];
            b.Download(buffer.Slice(0, n), values);
            writer.AddTensor(name, SafetensorsDType.F32, [n], MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
        }
        writer.Write(Path.Combine(temp, "state.safetensors"));
        File.WriteAllText(Path.Combine(temp, "trainer.json"), JsonSerializer.Serialize(state with { Layout = model.Layout.Signature }, JsonOptions));
        if (Directory.Exists(final)) Directory.Delete(final, true);
        Directory.Move(temp, final);
    }

    public static bool Exists(string runDir) => File.Exists(Path.Combine(runDir, FolderName, "trainer.json"));

    public static TrainerState Load(string runDir, TrainableLlama model, DeviceBuffer m, DeviceBuffer v)
    {
        string dir = Path.Combine(runDir, FolderName);
        string statePath = Path.Combine(dir, "trainer.json");
        TrainerState state;
        try { state = JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(statePath), JsonOptions) ?? throw new EdgeTuneException($"{statePath}: empty"); }
        catch (JsonException e) { throw new EdgeTuneException($"{statePath}: line {e.LineNumber + 1}: malformed checkpoint state: {e.Message.Split('\n')[0]}", e); }
        if (state.Layout != model.Layout.Signature)
            throw new EdgeTuneException($"{statePath}: the checkpoint's parameters do not match this recipe's model and adapter (method, rank, targets or base changed); start a new run folder or restore the recipe");
        string tensors = Path.Combine(dir, "state.safetensors");
        using var file = SafetensorsFile.Open(tensors);
        long n = model.Layout.Total;
        var values = new float[n];
        foreach (var (name, buffer) in new[] { ("parameters", model.Parameters), ("adam_m", m), ("adam_v", v) })
        {
            var info = file.GetTensor(name);
            if (info.Shape is not [var len] || len != n) throw new FileFormatException(tensors, $"tensor '{name}'", $"holds [{string.Join(", ", info.Shape)}], {n} values expected");
            file.ReadAsFloat32(name, values);
            model.Backend.Upload(values, buffer.Slice(0, n));
        }
        return state;
    }

    internal static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };
}
