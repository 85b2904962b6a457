using System.Runtime.InteropServices;
using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Core.IO;
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
/// (flat float32, in the layout the model states) and, once early stopping has seen a best evaluation, the
/// parameters of that best step; checkpoint/trainer.json holds the step counters. The data order and dropout
/// masks are functions of (seed, step), so nothing else is needed for an exact resume.
/// Replacement is crash-safe: the new checkpoint is written whole into checkpoint.new/ (files and folder
/// fsynced), the current one is renamed to checkpoint.old/, checkpoint.new/ to checkpoint/, the run folder is
/// fsynced, and only then checkpoint.old/ goes. A crash at any point leaves checkpoint/ or checkpoint.old/
/// complete, and <see cref="Locate"/> finds it.
/// </summary>
public static class TrainingCheckpoint
{
    public const string FolderName = "checkpoint";
    private const string StateFile = "trainer.json", TensorFile = "state.safetensors", BestTensor = "best_parameters";

    /// <param name="best">The parameters of the best evaluation so far (early stopping), or null.</param>
    public static void Save(string runDir, TrainableLlama model, DeviceBuffer m, DeviceBuffer v, TrainerState state, float[]? best = null)
    {
        string current = Path.Combine(runDir, FolderName), fresh = current + ".new", old = current + ".old";
        if (Directory.Exists(fresh)) Directory.Delete(fresh, true);
        Directory.CreateDirectory(fresh);
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
        if (best is not null) writer.AddTensor(BestTensor, SafetensorsDType.F32, [n], MemoryMarshal.AsBytes(best.AsSpan()).ToArray());
        writer.Write(Path.Combine(fresh, TensorFile)); // fsynced before its rename
        CrashPoints.Pass("checkpoint.tensors-written");
        DurableFiles.WriteAllText(Path.Combine(fresh, StateFile), JsonSerializer.Serialize(state with { Layout = model.Layout.Signature }, JsonOptions));
        CrashPoints.Pass("checkpoint.written");
        if (Directory.Exists(current))
        {
            // checkpoint.old/ can only be left over from a crash after the last replacement: checkpoint/ is the newer, whole one.
            if (Directory.Exists(old)) Directory.Delete(old, true);
            Directory.Move(current, old);
            CrashPoints.Pass("checkpoint.moved-aside");
        }
        Directory.Move(fresh, current);
        DurableFiles.SyncFolder(runDir);
        CrashPoints.Pass("checkpoint.replaced");
        if (Directory.Exists(old)) Directory.Delete(old, true);
    }

    /// <summary>The folder of the last complete checkpoint of a run: checkpoint/, else (a crash mid-replacement) checkpoint.old/; null when none.</summary>
    public static string? Locate(string runDir)
    {
        string current = Path.Combine(runDir, FolderName);
        foreach (var dir in new[] { current, current + ".old" })
            if (File.Exists(Path.Combine(dir, StateFile)) && File.Exists(Path.Combine(dir, TensorFile))) return dir;
        return null;
    }

    public static bool Exists(string runDir) => Locate(runDir) is not null;

    /// <summary>Loads the last complete checkpoint into the model and moments; returns its state and the best parameters it holds (or null).</summary>
    public static (TrainerState State, float[]? Best) Load(string runDir, TrainableLlama model, DeviceBuffer m, DeviceBuffer v)
    {
        string dir = Locate(runDir) ?? throw new EdgeTuneException($"{Path.Combine(runDir, FolderName)}: no checkpoint to resume from");
        string statePath = Path.Combine(dir, StateFile);
        TrainerState state;
        try { state = JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(statePath), JsonOptions) ?? throw new EdgeTuneException($"{statePath}: empty"); }
        catch (JsonException e) { throw new EdgeTuneException($"{statePath}: line {e.LineNumber + 1}: malformed checkpoint state: {e.Message.Split('\n')[0]}", e); }
        if (state.Layout != model.Layout.Signature)
            throw new EdgeTuneException($"{statePath}: the checkpoint's parameters do not match this recipe's model and adapter (method, rank, targets or base changed); start a new run folder or restore the recipe");
        string tensors = Path.Combine(dir, TensorFile);
        using var file = SafetensorsFile.Open(tensors);
        long n = model.Layout.Total;
        float[] Read(string name)
        {
            var info = file.GetTensor(name);
            if (info.Shape is not [var len] || len != n) throw new FileFormatException(tensors, $"tensor '{name}'", $"holds [{string.Join(", ", info.Shape)}], {n} values expected");
            var values = new float[n];
            file.ReadAsFloat32(name, values);
            return values;
        }
        foreach (var (name, buffer) in new[] { ("parameters", model.Parameters), ("adam_m", m), ("adam_v", v) })
            model.Backend.Upload(Read(name), buffer.Slice(0, n));
        float[]? best = file.Contains(BestTensor) ? Read(BestTensor) : null;
        return (state, best);
    }

    internal static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };
}
