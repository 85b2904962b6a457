using EdgeTune.Core;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Inference;
using EdgeTune.Profiles.Bench;
using EdgeTune.Testing;

namespace EdgeTune.Profiles.Tests;

/// <summary>A clock that moves only when the fake runtime does work: every figure of a run is known in advance.</summary>
internal sealed class FakeClock : TimeProvider
{
    private long _now = 1_000_000;

    public override long TimestampFrequency => 1_000_000; // microseconds
    public override long GetTimestamp() => Interlocked.Read(ref _now);
    public void Advance(long microseconds) => Interlocked.Add(ref _now, microseconds);
}

/// <summary>
/// A runtime whose costs are fixed: 100 µs per prompt token, 50 µs to pick a token (reading the logits), and decode
/// steps of 1000 µs plus 100 µs per repetition (so repetitions differ and the spread is known).
/// </summary>
internal sealed class FakeRuntime(FakeClock clock, int vocabulary = 281) : IInferenceRuntime
{
    public string Key => "llama_cpp_cpu";
    public string Description => "fake runtime";
    public bool UsesDeviceMemory => false;
    public List<int[]> Prompts { get; } = [];
    public ModelOptions? Options { get; private set; }

    public IInferenceModel Open(ModelOptions options, CancellationToken cancellationToken = default)
    {
        Options = options;
        return new FakeModel(this, clock, vocabulary);
    }

    private sealed class FakeModel(FakeRuntime runtime, FakeClock clock, int vocabulary) : InferenceModel
    {
        private readonly Session _session = new(runtime, clock, vocabulary);
        public override string ModelName => "fake";
        public override string Description => "fake model";
        public override IInferenceRuntime Runtime => runtime;
        public override InferenceCapabilities Capabilities => new(false, false);
        public override int ContextSize => 1 << 20;
        public override int VocabularySize => vocabulary;
        public override int? BosId => null;
        public override string ApplyChatTemplate(IReadOnlyList<EdgeTune.Models.Chat.ChatMessage> messages, bool addAssistant = true) => throw new NotSupportedException();
        public override int[] Tokenize(string text, bool addSpecial = true, bool parseSpecial = true) => throw new NotSupportedException();
        protected override IDecodeSession Session => _session;
        protected override float[] ComputeLogits(int[] tokens, int from) => throw new NotSupportedException();
        protected override void Release() { }
    }

    private sealed class Session(FakeRuntime runtime, FakeClock clock, int vocabulary) : IDecodeSession
    {
        private int _repetition = -1;
        private readonly float[] _logits = new float[vocabulary];

        public int Position { get; private set; }
        public RuntimeTimings? Timings => null;
        public IReadOnlyDictionary<string, string> Details { get; } = new Dictionary<string, string> { ["fake"] = "yes" };

        public void Reset()
        {
            _repetition++;
            Position = 0;
        }

        public void Prompt(ReadOnlySpan<int> tokens)
        {
            runtime.Prompts.Add(tokens.ToArray());
            clock.Advance(100L * tokens.Length);
            Position = tokens.Length;
        }

        public ReadOnlySpan<float> LastLogits()
        {
            clock.Advance(50);
            Array.Clear(_logits);
            _logits[Position % vocabulary] = 1; // the "prediction": the position, as a token
            return _logits;
        }

        public void Decode(int token)
        {
            clock.Advance(950 + 100L * _repetition); // + 50 for the pick: 1000 + 100 r per step
            Position++;
        }

        public bool IsEndOfGeneration(int token) => false;
        public ITextDecoder NewTextDecoder() => throw new NotSupportedException();
    }
}

public class BenchHarnessTests
{
    [Fact]
    public void Summary_statistics_are_the_hand_worked_values()
    {
        var s = Summary.Of([5, 1, 4, 2, 3]);
        Assert.Equal(5, s.Count);
        Assert.Equal(3, s.Mean);
        Assert.Equal(Math.Sqrt(2.5), s.StandardDeviation, 12);   // sample sd: sum of squares 10 over 4
        Assert.Equal(1, s.Min);
        Assert.Equal(5, s.Max);
        Assert.Equal(3, s.P50);
        Assert.Equal(4.8, s.P95, 12);                             // h = 4 x 0.95 = 3.8: 4 + 0.8 x (5 - 4)
        Assert.Equal(4.96, s.P99, 12);
        Assert.Equal(2.776 * Math.Sqrt(2.5) / Math.Sqrt(5), s.Ci95, 12);
        Assert.Equal(100 * Math.Sqrt(2.5) / 3, s.CvPercent, 12);

        var one = Summary.Of([7]);
        Assert.Equal(0, one.StandardDeviation);
        Assert.Equal(7, one.P99);
        Assert.Equal(0, one.Ci95);
        Assert.Equal(2.5, Summary.Percentile([1, 2, 3, 4], 50));
        Assert.Throws<ArgumentException>(() => Summary.Of([]));
    }

    [Fact]
    public void The_runner_times_prompt_first_token_and_each_step_and_leaves_out_the_warm_up()
    {
        var clock = new FakeClock();
        var runtime = new FakeRuntime(clock);
        using var model = runtime.Open(new ModelOptions { Path = "m", ContextSize = 256 });
        var settings = new BenchSettings { PromptTokens = 100, GenTokens = 10, Repetitions = 3, Warmup = 1 };
        var runs = model.Run(session => BenchRunner.Run(session, model.VocabularySize, settings, clock));

        Assert.Equal(4, runs.Count);
        Assert.True(runs[0].Warmup);
        Assert.Equal([-1, 0, 1, 2], runs.Select(r => r.Index));
        foreach (var r in runs)
        {
            Assert.Equal(0.010, r.PromptSeconds, 12);               // 100 tokens x 100 µs
            Assert.Equal(0.01005, r.TtftSeconds, 12);               // + 50 µs to pick the first token
            Assert.Equal(10, r.TokenSeconds.Count);
        }
        // Repetition r (warm-up is 0) decodes at 1000 + 100 r µs per step.
        Assert.All(runs[2].TokenSeconds, t => Assert.Equal(0.0012, t, 12));
        Assert.Equal(10 / 0.012, runs[2].GenTokensPerSecond, 9);
        Assert.Equal(100 / 0.010, runs[1].PromptTokensPerSecond(100), 9);
        Assert.Equal(runs[1].FirstToken + 10 * 1100, runs[1].End);

        // The same seeded prompt each time, inside the vocabulary.
        Assert.All(runtime.Prompts, p => Assert.Equal(runtime.Prompts[0], p));
        Assert.All(runtime.Prompts[0], t => Assert.InRange(t, 0, 280));
        Assert.Equal(BenchRunner.PromptTokens(settings, 281), runtime.Prompts[0]);
        Assert.NotEqual(BenchRunner.PromptTokens(settings with { Seed = 7 }, 281), runtime.Prompts[0]);
    }

    [Fact]
    public void Bad_settings_are_refused()
    {
        Assert.Equal("--gen-tokens must be at least 1, got 0", Assert.Throws<EdgeTuneException>(() => new BenchSettings { GenTokens = 0 }.Validate()).Message);
        Assert.Equal("--repetitions must be at least 1, got 0", Assert.Throws<EdgeTuneException>(() => new BenchSettings { Repetitions = 0 }.Validate()).Message);
    }

    internal static (BenchReport Report, FakeRuntime Runtime) RunOnFakeOrin(TempDir dir, FakeBoard board, BenchSettings? settings = null)
    {
        string model = dir.File("tiny.gguf");
        if (!File.Exists(model)) TinyLlama.WriteGguf(model, new TinyLlamaConfig());
        var loader = new ProfileLoader(new ProfileCatalog([TestProfiles.ShippedProfiles]));
        var clock = new FakeClock();
        var runtime = new FakeRuntime(clock);
        var report = Benchmark.Run(runtime, new BenchmarkRequest
        {
            Profile = loader.Load("jetson-orin-nano-8gb-super"),
            ModelPath = model,
            Settings = settings ?? new BenchSettings { PromptTokens = 100, GenTokens = 10, Repetitions = 3, Warmup = 1 },
            Board = board.Root,
            Time = clock,
            Threads = 2,
            SampleInterval = TimeSpan.FromMilliseconds(2),
        });
        return (report, runtime);
    }

    [Fact]
    public void A_run_on_a_fake_orin_reports_every_figure_against_budget_and_bound()
    {
        using var dir = new TempDir();
        using var board = FakeBoard.OrinNanoSuper();
        var (r, runtime) = RunOnFakeOrin(dir, board);
        var res = r.Results;

        Assert.Equal(256, runtime.Options!.ContextSize);                    // 100 + 10 + 1 tokens, rounded up to a multiple of 256
        Assert.Equal(3, r.Repetitions.Count);
        Assert.Equal(10_000, res.PromptTokensPerSecond.Mean, 6);
        Assert.Equal(0, res.PromptTokensPerSecond.StandardDeviation, 6);
        // Generation: 10 steps of 1.1, 1.2, 1.3 ms.
        Assert.Equal((1 / 1.1e-3 + 1 / 1.2e-3 + 1 / 1.3e-3) / 3, res.GenTokensPerSecond.Mean, 6);
        Assert.Equal(10.05, res.TtftMs.P95, 9);
        Assert.Equal(1.2, res.TokenLatencyMs.P50, 9);
        Assert.Equal(1.3, res.TokenLatencyMs.P99, 9);
        Assert.Equal(30, res.TokenLatencyMs.Count);

        // Power: VDD_IN is 5 V x 1.2 A = 6 W throughout, so energy per token is 6 W x its time.
        Assert.NotNull(res.Power);
        Assert.Equal(6.0, res.Power!.AverageWatts, 9);
        Assert.Equal(6.0 * 0.0360 / 30, res.Power.GenJoulesPerToken, 9);       // 36 ms of generation over 30 tokens
        Assert.Equal(6.0 * 3 * 0.01005 / 300, res.Power.PromptJoulesPerToken!.Value, 9);
        Assert.Equal(6.0, res.Power.RailWatts["VDD_IN"], 9);
        Assert.Equal(45.5, res.TemperaturesC!["cpu-thermal"].Max);
        Assert.Equal(73.4, res.GpuLoadPercent!.Value, 9);
        Assert.False(res.Throttling.Noticed);
        Assert.Contains("passive trip points of cpu-thermal, gpu-thermal, tj-thermal", res.Throttling.Checked);
        Assert.Equal(100 * (1 / 1.3e-3 - 1 / 1.1e-3) / (1 / 1.1e-3), res.Throttling.GenDriftPercent, 6);
        Assert.Equal("MAXN_SUPER", r.Profile.PowerMode);
        Assert.Null(r.Profile.PowerModeWatts);

        // Bound: 5,012,480 weight bytes read per token (see FitTests) + 1,024 KV bytes per position x
        // 105.5 positions on average (100 prompt + 11 / 2) = 5,120,512 bytes per token at 102 GB/s.
        Assert.Equal(5_120_512, r.Bound.BytesPerToken);
        Assert.Equal(102e9 / 5_120_512, r.Bound.GenTokensPerSecondBound, 6);
        Assert.Equal(100 * res.GenTokensPerSecond.Mean / (102e9 / 5_120_512), r.Bound.GenPercentOfBound, 6);

        // Budgets of the Super profile: >= 10 tokens/s, TTFT p95 <= 2 s, <= 25 W, <= 5 GB.
        Assert.Equal(["max_model_memory", "min_decode_tokens_per_s", "max_ttft_p95", "max_watts"], r.Budgets.Select(b => b.Name));
        Assert.All(r.Budgets, b => Assert.Equal("pass", b.Status));
        Assert.Equal(2000, r.Budgets.Single(b => b.Name == "max_ttft_p95").Limit);
        Assert.Equal(6.0, r.Budgets.Single(b => b.Name == "max_watts").Measured!.Value, 9);

        // Spread: the run reports its own run-to-run variation.
        Assert.Equal(res.GenTokensPerSecond.CvPercent, r.Spread.GenCvPercent);
        Assert.True(r.Spread.GenCvPercent > 5);
        Assert.False(r.Spread.Stable);
        Assert.Contains("noisy", r.Spread.Verdict);
        Assert.Equal(0, r.Spread.PromptCvPercent, 9);
    }

    [Fact]
    public void Heat_past_a_trip_point_is_reported_as_throttling_and_missing_sensors_as_not_measured()
    {
        using var dir = new TempDir();
        using (var hot = FakeBoard.OrinNanoSuper().ThermalZone(1, "gpu-thermal", 99500, 99000))
        {
            var (r, _) = RunOnFakeOrin(dir, hot);
            Assert.True(r.Results.Throttling.Noticed);
            Assert.StartsWith("gpu-thermal at 99.5 °C (limit 99 °C) after ", Assert.Single(r.Results.Throttling.Events));
        }
        using var bare = new FakeBoard();
        var (plain, _) = RunOnFakeOrin(dir, bare);
        Assert.Null(plain.Results.Power);
        Assert.Null(plain.Results.TemperaturesC);
        Assert.Empty(plain.Results.Throttling.Checked);
        Assert.Equal("not measured", plain.Budgets.Single(b => b.Name == "max_watts").Status);
        Assert.Contains("power: no ina3221 under /sys/bus/i2c/devices (or /sys/class/hwmon)", plain.Host.Sensors);
    }

    [Fact]
    public void Reports_round_trip_through_json_and_render_as_markdown_and_comparisons()
    {
        using var dir = new TempDir();
        using var board = FakeBoard.OrinNanoSuper();
        var (r, _) = RunOnFakeOrin(dir, board);
        string path = dir.File("a.json");
        File.WriteAllText(path, r.ToJson());
        var back = BenchReport.Read(path);
        Assert.Equal(r.Results.GenTokensPerSecond, back.Results.GenTokensPerSecond);
        Assert.Equal(r.Bound, back.Bound);
        Assert.Equal(r.Budgets, back.Budgets);
        Assert.Equal(r.Repetitions.Select(x => x.TokenLatenciesMs), back.Repetitions.Select(x => x.TokenLatenciesMs));
        Assert.Contains("\"cv_percent\":", File.ReadAllText(path));

        string md = BenchMarkdown.Write(r);
        Assert.Contains("# edgetune bench: tiny-llama-test on jetson-orin-nano-8gb-super", md);
        Assert.Contains("| Generation | ", md);
        Assert.Contains("| Average power | 6 W | ≤ 25 W | pass |", md);
        Assert.Contains("## Run-to-run spread", md);

        var slower = back with { Results = back.Results with { GenTokensPerSecond = back.Results.GenTokensPerSecond with { Mean = back.Results.GenTokensPerSecond.Mean / 2 } } };
        string text = BenchComparison.Text(["before", "after"], [back, slower]);
        Assert.Contains("generation tokens/s", text);
        Assert.Contains("(-50%, worse)", text);
        var same = BenchComparison.Rows([back, back]).Single(x => x.Figure == "generation tokens/s");
        Assert.EndsWith("(0%, within noise)", same.Cells[1]);
    }

    [Fact]
    public void Bad_result_files_fail_with_the_file_and_place()
    {
        using var dir = new TempDir();
        string broken = dir.File("broken.json");
        File.WriteAllText(broken, "{\n  \"schema\": \"edgetune.bench/1\",\n  \"created\": oops\n}");
        var e = Assert.Throws<EdgeTuneException>(() => BenchReport.Read(broken));
        Assert.StartsWith($"{broken}:3:", e.Message);

        string other = dir.File("other.json");
        File.WriteAllText(other, "{\"name\": \"x\"}");
        Assert.Equal($"{other}: not an edgetune bench result (expected \"schema\": \"edgetune.bench/1\")", Assert.Throws<EdgeTuneException>(() => BenchReport.Read(other)).Message);
        Assert.Equal($"{dir.File("none.json")}: no such file", Assert.Throws<EdgeTuneException>(() => BenchReport.Read(dir.File("none.json"))).Message);
    }
}
