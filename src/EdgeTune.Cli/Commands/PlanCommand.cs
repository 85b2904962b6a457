using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Kernels;
using EdgeTune.Models.Architectures;
using EdgeTune.Profiles;
using EdgeTune.Profiles.Schema;
using EdgeTune.Recipes;
using EdgeTune.Training;
using EdgeTune.Training.Model;

namespace EdgeTune.Cli.Commands;

/// <summary>
/// <c>edgetune plan RECIPE --device PROFILE|cpu</c>: memory of every part, tokens, time and cost of a training run, and
/// whether it fits, before it runs. On <c>cpu</c> (this machine) the step time is measured at the recipe's shape; on a
/// GPU profile it is the step's floating-point operations over the card's FP32 throughput at a stated efficiency.
/// </summary>
internal static class PlanCommand
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;
    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    /// <summary>
    /// The fraction of the card's FP32 peak EdgeTune's CUDA kernels are assumed to reach. They are plain FP32 GEMMs
    /// (no tensor cores, no BF16 yet); 0.3 is what tiled FP32 GEMMs without tensor cores typically reach on training
    /// shapes. An estimate: not yet measured on any of these cards.
    /// </summary>
    public const double GpuFp32Efficiency = 0.3;

    /// <summary>CUDA context, ILGPU's kernels and allocator slack on the card, beside the model's parts (estimate).</summary>
    public const long GpuRuntimeBytes = 600L << 20;

    public static Command Create(CliConsole console)
    {
        var recipe = new Argument<string>("RECIPE.toml") { Description = "The training recipe" };
        var device = new Option<string>("--device") { Description = "cpu (this machine, measured) or a profile with a GPU (workstation-rtx-4090, server-a100-80gb, server-h100-sxm, server-h200, or a .toml)", Required = true };
        var threads = new Option<int>("--threads") { Description = "CPU threads for --device cpu (default: the recipe's [train] threads, else all cores)" };
        var price = new Option<double?>("--price-per-hour") { Description = "What an hour of the device costs (any currency): the plan prints the run's cost" };
        price.Validators.Add(r => { if (r.GetValueOrDefault<double?>() is < 0) r.AddError("--price-per-hour must not be negative"); });
        var json = new Option<bool>("--json") { Description = "Print the plan as JSON" };
        var command = new Command("plan",
            "Before training: memory of every part (the accounting 'edgetune bench train' checks against measured runs), tokens to train, " +
            "estimated time and cost, and whether the run fits the device.\n\n" +
            "--device cpu measures this machine: steps of the recipe's model cut to 1 and 8 blocks at its batch shape, extrapolated to every block. " +
            $"A GPU profile divides each step's floating-point operations by the card's FP32 throughput at {GpuFp32Efficiency:0.##} efficiency (an estimate).\n\n" +
            "Examples:\n  edgetune plan recipe.toml --device cpu\n  edgetune plan recipe.toml --device workstation-rtx-4090 --price-per-hour 0.6 --json")
        {
            recipe, device, threads, price, json,
        };
        command.SetAction((parse, cancel) =>
        {
            var r = Recipe.Load(parse.GetValue(recipe)!);
            string deviceName = parse.GetValue(device)!;
            DeviceProfile? profile = null;
            if (deviceName != "cpu")
            {
                profile = new ProfileLoader().Load(deviceName);
                if (profile.Gpu?.Memory is null || !profile.Compute.ContainsKey("fp32_tflops"))
                    throw new EdgeTuneException($"{profile.File}: the profile has no gpu.memory or compute.fp32_tflops to plan training with; use --device cpu to measure this machine, or a GPU profile");
            }
            console.Error.WriteLine($"plan: reading {r.Data.Train} through {r.Model.Base}'s template");
            var schedule = TrainingSchedule.For(r);
            var memory = schedule.Memory();
            Plan plan;
            if (profile is null)
            {
                using var backend = Backends.Create("cpu", parse.GetValue(threads) is > 0 and var t ? t : r.Train.Threads, line => console.Error.WriteLine(line));
                plan = OnCpu(r, schedule, backend, line => console.Error.WriteLine(line));
            }
            else plan = PlanOnGpu(profile, schedule, memory);
            if (parse.GetValue(price) is { } perHour) plan = plan with { PricePerHour = perHour, Cost = perHour * plan.Seconds / 3600 };

            if (parse.GetValue(json)) console.Out.WriteLine(JsonSerializer.Serialize(plan, JsonOptions));
            else Write(console.Out, r, plan);
            return Task.FromResult(plan.Fits ? CliApp.Success : CliApp.Failure);
        });
        return command;
    }

    internal sealed record Plan(string Recipe, string Device, string DeviceDescription, string Base, long Parameters, string Method,
        int Examples, int Steps, int MicroBatches, long ProcessedTokens, long TrainedTokens, IReadOnlyList<MemoryPart> Memory, long MemoryBytes,
        long AvailableBytes, string AvailableBasis, bool Fits, double StepSeconds, double Seconds, string TimeBasis)
    {
        /// <summary>Eval passes over the eval split during the run, and their part of <see cref="Seconds"/>.</summary>
        public int EvalPasses { get; init; }
        public int EvalExamples { get; init; }
        public double EvalSeconds { get; init; }
        public double? PricePerHour { get; init; }
        public double? Cost { get; init; }
    }

    /// <summary>The plan on this machine's CPU backend (the demo calls it with its own backend).</summary>
    internal static Plan OnCpu(Recipe r, TrainingSchedule s, IComputeBackend backend, Action<string> say)
    {
        var memory = s.Memory();
        var (batch, seqLen) = MedianShape(s);
        say($"plan: measuring steps of the model cut to 1 and 8 blocks at batch {batch} × {seqLen} tokens on {backend.Name}");
        using var weights = BaseWeights.Open(s.BasePath);
        var model = TrainingEstimate.Calibrate(weights, s.Setup, backend, batch, seqLen, progress: new SyncProgress<string>(l => say("  " + l)));
        double ms = s.MicroBatches.Sum(m => model.PredictMs(s.Config.Layers, (long)m.Batch * m.SeqLen));
        // An eval batch is a forward pass: the step's time at that shape scaled by forward over step operations.
        double evalMs = s.EvalPasses * s.EvalMicroBatches.Sum(m => model.PredictMs(s.Config.Layers, (long)m.Batch * m.SeqLen)
            * TrainingEstimate.ForwardFlops(s.Config, s.Setup, m.Batch, m.SeqLen) / TrainingEstimate.StepFlops(s.Config, s.Setup, m.Batch, m.SeqLen));
        long available = AvailableMemory();
        return Build(r, "cpu", $"this machine: {Environment.ProcessorCount} cores, {backend.Name}", s, memory, available,
            "MemAvailable of /proc/meminfo now", ms / 1000, evalMs / 1000, model.Basis);
    }

    private static Plan PlanOnGpu(DeviceProfile p, TrainingSchedule s, TrainingMemoryPlan memory)
    {
        double flopsPerSecond = p.Compute["fp32_tflops"].Value * GpuFp32Efficiency;
        double seconds = s.MicroBatches.Sum(m => TrainingEstimate.StepFlops(s.Config, s.Setup, m.Batch, m.SeqLen)) / flopsPerSecond;
        double evalSeconds = s.EvalPasses * s.EvalMicroBatches.Sum(m => TrainingEstimate.ForwardFlops(s.Config, s.Setup, m.Batch, m.SeqLen)) / flopsPerSecond;
        // On the card the runtime part is the CUDA context and the allocator, not the .NET process.
        var parts = memory.Parts.Where(x => x.Name != TrainingEstimate.Runtime)
            .Append(new MemoryPart(TrainingEstimate.Runtime, GpuRuntimeBytes, "estimate: CUDA context, kernels and allocator slack")).ToList();
        string basis = string.Create(C, $"the steps' floating-point operations over {p.Compute["fp32_tflops"].Value / 1e12:0.#} TFLOPS FP32 ({p.Compute["fp32_tflops"].Provenance}) × {GpuFp32Efficiency:0.##} (estimate: plain FP32 kernels, not measured on this card)");
        return Build(null, p.Name, $"{p.DisplayName}: {Units.FormatBytes((long)p.Gpu!.Memory!.Value)} at {p.Gpu.MemoryBandwidth?.ToString() ?? "unknown bandwidth"}", s,
            new TrainingMemoryPlan(parts), (long)p.Gpu.Memory.Value, $"gpu.memory of {p.File}", seconds, evalSeconds, basis);
    }

    private static Plan Build(Recipe? r, string device, string description, TrainingSchedule s, TrainingMemoryPlan memory, long available, string availableBasis,
        double trainSeconds, double evalSeconds, string basis) =>
        new(r?.File ?? "", device, description, s.BasePath, KnownShape.ParameterCount(s.Config), Describe(s.Setup), s.Examples, s.Steps, s.MicroBatches.Count,
            s.ProcessedTokens, s.TrainedTokens, memory.Parts, memory.Total, available, availableBasis, memory.Total <= available,
            trainSeconds / Math.Max(1, s.Steps), trainSeconds + evalSeconds, basis)
        {
            EvalPasses = s.EvalPasses, EvalExamples = s.EvalExamples, EvalSeconds = evalSeconds,
        };

    private static string Describe(TrainingSetup s) => s.Method switch
    {
        TuningMethod.Full => "full fine-tuning",
        TuningMethod.Qlora => $"QLoRA over {s.BaseQuant}, rank {s.Rank} on {string.Join(" ", s.Targets)}",
        _ => $"LoRA rank {s.Rank} on {string.Join(" ", s.Targets)}",
    } + (s.ActivationCheckpointing ? ", activation checkpointing" : "");

    // The calibration runs at a typical micro-batch (the median by tokens), not the largest: the estimate scales by rows.
    private static (int Batch, int SeqLen) MedianShape(TrainingSchedule s) =>
        s.MicroBatches.OrderBy(m => (long)m.Batch * m.SeqLen).ElementAt(s.MicroBatches.Count / 2);

    private static long AvailableMemory()
    {
        try
        {
            var line = File.ReadLines("/proc/meminfo").FirstOrDefault(l => l.StartsWith("MemAvailable:", StringComparison.Ordinal));
            if (line is not null && long.TryParse(line.Split(':', 2)[1].Trim().Split(' ')[0], NumberStyles.Integer, C, out long kb)) return kb * 1024;
        }
        catch (IOException)
        {
        }
        return GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
    }

    internal static void Write(TextWriter o, Recipe r, Plan p)
    {
        static string Mib(long b) => (b / 1048576.0).ToString("N0", C);
        o.WriteLine($"plan {r.File} on {p.Device} ({p.DeviceDescription})");
        o.WriteLine(string.Create(C, $"  model    {p.Base}: {p.Parameters:N0} parameters; {p.Method}"));
        o.WriteLine(string.Create(C, $"  data     {p.Examples:N0} training examples → {p.Steps:N0} optimizer steps ({p.MicroBatches:N0} micro-batches); {p.ProcessedTokens:N0} tokens processed, {p.TrainedTokens:N0} trained (loss tokens)"));
        o.WriteLine("  memory");
        int width = p.Memory.Max(m => m.Name.Length);
        foreach (var m in p.Memory)
            o.WriteLine($"    {m.Name.PadRight(width)}  {Mib(m.Bytes),9} MiB  {m.Basis}");
        o.WriteLine(string.Create(C, $"    {"total".PadRight(width)}  {Mib(p.MemoryBytes),9} MiB  {(p.Fits ? "fits" : "DOES NOT FIT")} in {Mib(p.AvailableBytes)} MiB ({p.AvailableBasis}; {p.MemoryBytes * 100.0 / Math.Max(1, p.AvailableBytes):0.#}%)"));
        string total = p.Seconds < 60 ? string.Create(C, $"{p.Seconds:0.#} s") : TimeSpan.FromSeconds(Math.Round(p.Seconds)).ToString("g", C);
        string eval = p.EvalPasses == 0 ? "" : string.Create(C, $"; {p.EvalPasses} eval pass{(p.EvalPasses > 1 ? "es" : "")} over {p.EvalExamples:N0} examples, {p.EvalSeconds:0.#} s in all");
        o.WriteLine(string.Create(C, $"  time     {total} ({p.StepSeconds * 1000:0.#} ms per optimizer step{eval}; {p.TimeBasis})"));
        if (p.Cost is { } cost) o.WriteLine(string.Create(C, $"  cost     {cost:0.00} at {p.PricePerHour:0.##} per hour"));
        if (!p.Fits) o.WriteLine("  the run does not fit: use QLoRA (method = \"qlora\"), activation checkpointing, a smaller batch or max_seq_len, or a device with more memory");
    }
}
