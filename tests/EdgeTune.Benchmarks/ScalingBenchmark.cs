using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using EdgeTune.Core;
using EdgeTune.Models.Architectures;
using ScottPlot;

namespace EdgeTune.Benchmarks;

/// <summary>
/// Training speed and memory against parameter count at real models' shapes: `edgetune bench train --shape S` (LoRA and
/// QLoRA) beside the PyTorch baseline (tests/assets/bench/torch_train_bench.py, LoRA) on the same shape, sequence, batch
/// and threads. Every run is its own child process, so each peak is its own; per shape the order alternates (ours first,
/// then PyTorch first) so a drift in the machine's load does not always favour one side. Writes scaling.md (the table),
/// scaling.json (every figure) and scaling.png (tokens/s and peak memory against parameters) into --out.
///
///   dotnet run -c Release --project tests/EdgeTune.Benchmarks -- scaling [--shapes qwen2.5-0.5b,tinyllama-1.1b,...]
///       [--methods lora,qlora] [--seq 256] [--batch 1] [--steps 2] [--threads 2] [--python /usr/bin/python3] [--out DIR]
///   ... -- scaling --chart-only --out DIR      (the table and chart again from DIR/scaling.json)
/// </summary>
internal static class ScalingBenchmark
{
    private sealed record Row(string Shape, long Parameters, string Side, string Method, double TokensPerSecond, double StepMs,
        long PeakBytes, string PeakKind, double LoadAverage, string Started);

    public static int Run(string[] args)
    {
        try
        {
            return Measure(args);
        }
        catch (Exception e) when (e is EdgeTuneException or InvalidOperationException or IOException)
        {
            Console.Error.WriteLine($"scaling: {e.Message}");
            return 1;
        }
    }

    private static int Measure(string[] args)
    {
        string Opt(string name, string fallback) { int i = Array.IndexOf(args, name); return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback; }
        if (args.Contains("--help") || args.Contains("-h"))
        {
            Console.WriteLine("usage: EdgeTune.Benchmarks scaling [--shapes S1,S2,...] [--methods lora,qlora] [--seq 256] [--batch 1] [--steps 2] [--threads 2] [--python /usr/bin/python3] [--out DIR] [--chart-only]");
            Console.WriteLine($"  shapes: {string.Join(", ", KnownShapes.All.Select(k => k.Name))}");
            return 0;
        }
        string output = Opt("--out", Path.Combine(Path.GetTempPath(), "edgetune-bench-scaling"));
        Directory.CreateDirectory(output);
        string jsonPath = Path.Combine(output, "scaling.json");
        string machine;
        List<Row> rows;
        if (args.Contains("--chart-only"))
        {
            var saved = JsonSerializer.Deserialize<Saved>(File.ReadAllText(jsonPath))!;
            (machine, rows) = (saved.Machine, saved.Rows);
        }
        else
        {
            // A built-in name or a config.json path, passed on to `bench train --shape` as given.
            var shapes = Opt("--shapes", string.Join(",", KnownShapes.All.Select(k => k.Name))).Split(',')
                .Select(spec => (Spec: spec, Shape: KnownShapes.Resolve(spec))).OrderBy(s => s.Shape.Parameters).ToList();
            var methods = Opt("--methods", "lora,qlora").Split(',');
            int seq = int.Parse(Opt("--seq", "256"), CultureInfo.InvariantCulture), batch = int.Parse(Opt("--batch", "1"), CultureInfo.InvariantCulture);
            int steps = int.Parse(Opt("--steps", "2"), CultureInfo.InvariantCulture), threads = int.Parse(Opt("--threads", "2"), CultureInfo.InvariantCulture);
            string python = Opt("--python", "/usr/bin/python3");
            string script = FindTorchScript();
            machine = $"{Environment.ProcessorCount} cores, {MachineFacts.CpuName()}, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}; {threads} threads, sequence {seq}, batch {batch}, LoRA rank 8 on q k v o gate up down, {steps} timed steps after 1 warm-up";
            Console.Error.WriteLine($"machine: {machine}");
            rows = [];
            for (int s = 0; s < shapes.Count; s++)
            {
                var (spec, shape) = shapes[s];
                var runs = new List<Func<Row>>();
                foreach (var method in methods)
                    runs.Add(() => Ours(spec, shape, method, seq, batch, steps, threads));
                Func<Row> torchRun = () => Torch(python, script, shape, seq, batch, steps, threads);
                // Alternate who goes first, shape by shape.
                if (s % 2 == 0) runs.Add(torchRun); else runs.Insert(0, torchRun);
                foreach (var run in runs)
                {
                    var row = run();
                    rows.Add(row);
                    Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {row.Shape} {row.Side} {row.Method}: {row.TokensPerSecond:F1} tokens/s, peak {row.PeakBytes / 1048576.0:F0} MiB, load {row.LoadAverage:F1}"));
                    if (s_torchBlas is { } blas && !machine.Contains("PyTorch BLAS", StringComparison.Ordinal)) machine += $"; PyTorch BLAS: {blas}";
                    File.WriteAllText(jsonPath, JsonSerializer.Serialize(new Saved(machine, rows), new JsonSerializerOptions { WriteIndented = true }));
                }
            }
        }
        string table = Table(machine, rows);
        File.WriteAllText(Path.Combine(output, "scaling.md"), table);
        Chart(rows, Path.Combine(output, "scaling.png"));
        Console.Write(table);
        Console.WriteLine($"\nwritten: {Path.Combine(output, "scaling.md")}, {jsonPath}, {Path.Combine(output, "scaling.png")}");
        return 0;
    }

    private sealed record Saved(string Machine, List<Row> Rows);

    /// <summary>The BLAS library the PyTorch baseline ran on (a reference BLAS makes it ~10× slower: named in the table).</summary>
    private static string? s_torchBlas;

    private static Row Ours(string spec, KnownShape shape, string method, int seq, int batch, int steps, int threads)
    {
        Console.Error.WriteLine($"{shape.Name}: edgetune {method} ...");
        double load = MachineFacts.LoadAverage();
        string started = DateTime.UtcNow.ToString("HH:mm", CultureInfo.InvariantCulture);
        string json = RunChild("dotnet", [Path.Combine(AppContext.BaseDirectory, "edgetune.dll"), "bench", "train", "--shape", spec, "--method", method,
            "--device", "cpu", "--threads", $"{threads}", "--seq", $"{seq}", "--batch", $"{batch}", "--steps", $"{steps}", "--json"]);
        var r = JsonNode.Parse(json)!.AsArray()[0]!;
        return new Row(shape.Name, shape.Parameters, "edgetune", method, r["tokens_per_second"]!.GetValue<double>(), r["step_milliseconds"]!.GetValue<double>(),
            r["peak_anonymous_bytes"]?.GetValue<long>() ?? 0, "anonymous", load, started);
    }

    private static Row Torch(string python, string script, KnownShape shape, int seq, int batch, int steps, int threads)
    {
        Console.Error.WriteLine($"{shape.Name}: PyTorch lora ...");
        double load = MachineFacts.LoadAverage();
        string started = DateTime.UtcNow.ToString("HH:mm", CultureInfo.InvariantCulture);
        // The dimensions, not the name: a config.json shape has no name the script knows.
        var c = shape.Config;
        string[] dims = ["--dim", $"{c.HiddenSize}", "--layers", $"{c.Layers}", "--heads", $"{c.Heads}", "--kv-heads", $"{c.KvHeads}", "--ffn", $"{c.IntermediateSize}", "--vocab", $"{c.VocabSize}"];
        string json = RunChild(python, [script, .. dims, .. c.TiedEmbeddings ? ["--tied"] : Array.Empty<string>(), "--method", "lora", "--threads", $"{threads}",
            "--seq", $"{seq}", "--batch", $"{batch}", "--steps", $"{steps}", "--warmup", "1", "--json"]);
        var r = JsonNode.Parse(json.Trim().Split('\n')[^1])!;
        s_torchBlas = r["blas"]?.GetValue<string>();
        return new Row(shape.Name, shape.Parameters, "pytorch", "lora", r["tokens_per_second"]!.GetValue<double>(), r["mean_step_ms"]!.GetValue<double>(),
            r["peak_anonymous_bytes"]!.GetValue<long>(), "anonymous", load, started);
    }

    private static string Table(string machine, List<Row> rows)
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine($"machine: {machine}").AppendLine();
        sb.AppendLine("| shape | parameters | EdgeTune LoRA tokens/s | PyTorch LoRA tokens/s | ratio | EdgeTune QLoRA (NF4) tokens/s | EdgeTune LoRA peak MiB | EdgeTune QLoRA peak MiB | PyTorch LoRA peak MiB | load average |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        foreach (var shape in rows.GroupBy(r => r.Shape).OrderBy(g => g.First().Parameters))
        {
            Row? Get(string side, string method) => shape.FirstOrDefault(r => r.Side == side && r.Method == method);
            var (lora, qlora, torch) = (Get("edgetune", "lora"), Get("edgetune", "qlora"), Get("pytorch", "lora"));
            string Tps(Row? r) => r is null ? "" : r.TokensPerSecond.ToString("F1", c);
            string Mib(Row? r) => r is null ? "" : (r.PeakBytes / 1048576.0).ToString("N0", c);
            string ratio = lora is not null && torch is not null ? $"{lora.TokensPerSecond / torch.TokensPerSecond:F2}×".ToString(c) : "";
            sb.AppendLine(string.Create(c, $"| {shape.Key} | {shape.First().Parameters / 1e9:F2} B | {Tps(lora)} | {Tps(torch)} | {ratio} | {Tps(qlora)} | {Mib(lora)} | {Mib(qlora)} | {Mib(torch)} | {string.Join(" / ", shape.Select(r => r.LoadAverage.ToString("F1", c)))} |"));
        }
        sb.AppendLine().AppendLine("Peak memory: the process's anonymous memory (RssAnon sampled every 2 ms on both sides): EdgeTune maps the F32 model file, whose pages are not counted; PyTorch holds its weights in anonymous memory; neither counts code pages of its libraries.");
        return sb.ToString();
    }

    private static void Chart(List<Row> rows, string path)
    {
        var multiplot = new Multiplot();
        multiplot.AddPlots(2);
        multiplot.Layout = new ScottPlot.MultiplotLayouts.Rows();
        var series = rows.GroupBy(r => (r.Side, r.Method)).OrderBy(g => g.Key.Side).ThenBy(g => g.Key.Method).ToList();
        string Label((string Side, string Method) k) => k.Side == "pytorch" ? "PyTorch 1.13 LoRA" : $"EdgeTune {(k.Method == "qlora" ? "QLoRA (NF4)" : "LoRA")}";
        var speed = multiplot.GetPlot(0);
        var memory = multiplot.GetPlot(1);
        foreach (var s in series)
        {
            var points = s.OrderBy(r => r.Parameters).ToList();
            double[] xs = points.Select(r => r.Parameters / 1e9).ToArray();
            var a = speed.Add.ScatterLine(xs, points.Select(r => r.TokensPerSecond).ToArray());
            a.LegendText = Label(s.Key);
            a.MarkerSize = 8;
            var b = memory.Add.ScatterLine(xs, points.Select(r => r.PeakBytes / 1073741824.0).ToArray());
            b.LegendText = Label(s.Key);
            b.MarkerSize = 8;
        }
        speed.Title("training tokens/s against parameters (CPU, same shape, threads, sequence and batch)");
        speed.XLabel("parameters (billions)");
        speed.YLabel("tokens/s");
        double right = rows.Max(r => r.Parameters / 1e9) * 1.1;
        speed.Axes.SetLimits(0, right, 0, rows.Max(r => r.TokensPerSecond) * 1.15);
        speed.ShowLegend(Alignment.UpperRight);
        memory.Title("peak memory of the training process");
        memory.XLabel("parameters (billions)");
        memory.YLabel("GiB");
        memory.Axes.SetLimits(0, right, 0, rows.Max(r => r.PeakBytes / 1073741824.0) * 1.15);
        memory.ShowLegend(Alignment.UpperLeft);
        multiplot.SavePng(path, 1000, 900);
    }

    private static string RunChild(string program, string[] args)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        // Progress lines of the child go through, so a long run shows where it is.
        string? line;
        var errors = new StringBuilder();
        while ((line = process.StandardError.ReadLine()) is not null)
        {
            Console.Error.WriteLine("    " + line);
            errors.AppendLine(line);
        }
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"{program} {string.Join(' ', args)} exited {process.ExitCode}: {errors}");
        return stdout.Result;
    }

    /// <summary>The PyTorch baseline script, from the repository this benchmark was built in.</summary>
    private static string FindTorchScript()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "tests", "assets", "bench", "torch_train_bench.py");
            if (File.Exists(candidate)) return candidate;
        }
        throw new FileNotFoundException("tests/assets/bench/torch_train_bench.py not found above " + AppContext.BaseDirectory);
    }
}
