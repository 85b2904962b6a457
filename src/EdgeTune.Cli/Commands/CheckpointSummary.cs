namespace EdgeTune.Cli.Commands;

internal static class CheckpointSummary
{
    public static ModelSummary FromFolder(string path) => throw new Core.EdgeTuneException($"{path}: checkpoint folders: pending safetensors reader");
    public static ModelSummary FromSafetensors(string path) => throw new Core.EdgeTuneException($"{path}: pending safetensors reader");
}
