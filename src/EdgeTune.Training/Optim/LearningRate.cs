using EdgeTune.Recipes;

namespace EdgeTune.Training.Optim;

/// <summary>Linear warm-up from 0, then cosine or linear decay to 0 at the last step (or constant), as Hugging Face's schedulers.</summary>
public sealed record LearningRate(double Peak, int WarmupSteps, int TotalSteps, LrSchedule Schedule)
{
    /// <summary>The rate for optimizer step <paramref name="step"/> (0-based).</summary>
    public double At(int step)
    {
        if (step < WarmupSteps) return Peak * (step + 1) / (WarmupSteps + 1.0);
        if (Schedule == LrSchedule.Constant) return Peak;
        double progress = TotalSteps <= WarmupSteps ? 1 : (double)(step - WarmupSteps) / (TotalSteps - WarmupSteps);
        return Schedule == LrSchedule.Linear
            ? Peak * Math.Max(0, 1 - progress)
            : Peak * 0.5 * (1 + Math.Cos(Math.PI * Math.Min(1, progress)));
    }
}
