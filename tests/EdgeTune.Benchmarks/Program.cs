using System.Diagnostics;
using System.Globalization;
using EdgeTune.Formats.Gguf.Quantize;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Testing;
using LLama.Native;

// Quantiser benchmark: EdgeTune against llama.cpp's llama_model_quantize (the code behind llama-quantize,
// loaded from LLamaSharp's CPU backend) on the same F32 GGUF with the same thread count. Each run happens in
// a child process so that its peak resident memory (VmHWM) is its own.
//
//   dotnet run -c Release --project tests/EdgeTune.Benchmarks -- quantize [--threads N] [--types Q8_0,Q4_0,Q4_K_M,Q6_K] [--repeat R] [--dir D]

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
if (args.Length >= 1 && args[0] == "child") return Child(args[1..]);
if (args.Length >= 1 && args[0] is "convert" or "convert-child") return EdgeTune.Benchmarks.ConvertBenchmark.Run(args);
if (args.Length >= 1 && args[0] == "data") return EdgeTune.Benchmarks.DataBenchmark.Run(args);
if (args.Length >= 1 && args[0] == "kernels") return EdgeTune.Benchmarks.KernelsBenchmark.Run(args);
if (args.Length >= 1 && args[0] == "fuzz") return EdgeTune.Benchmarks.FuzzBenchmark.Run(args);
if (args.Length >= 1 && args[0] == "runtimes") return EdgeTune.Benchmarks.RuntimesBenchmark.Run(args);
if (args.Length >= 1 && args[0] == "scaling") return EdgeTune.Benchmarks.ScalingBenchmark.Run(args);
if (args.Length >= 1 && args[0] is "packing" or "distill") return EdgeTune.Benchmarks.TrainingDataBenchmark.Run(args);
if (args.Length >= 1 && args[0] is "export" or "export-child") return EdgeTune.Benchmarks.ExportBenchmark.Run(args);
if (args.Length >= 1 && args[0] == "chain") return EdgeTune.Benchmarks.ChainBenchmark.Run(args[1..]);
if (args.Length >= 1 && args[0] == "bench-agreement") return EdgeTune.Benchmarks.BenchAgreementBenchmark.Run(args);
if (args.Length == 0 || args[0] is "--help" or "-h" || args[0] != "quantize")
{
    Console.WriteLine("usage: EdgeTune.Benchmarks quantize [--threads N] [--types Q8_0,Q4_0,Q4_K_M,Q6_K] [--repeat R] [--dir DIR]\n       EdgeTune.Benchmarks convert [--layers N] [--types F32,F16,BF16,Q8_0] [--dir DIR]\n       EdgeTune.Benchmarks data [--mb 1024] [--dir DIR]\n       EdgeTune.Benchmarks kernels [--device cpu|cuda] [--threads N] [--repeat R]\n       EdgeTune.Benchmarks export [--layers 24] [--rank 16] [--threads N] [--dir DIR]\n       EdgeTune.Benchmarks chain --shape NAME|CONFIG.json [--type q4_k|q8_0|q4_0] [--steps 3] [--seq 128] [--threads 2] [--keep DIR] [--json]\n       EdgeTune.Benchmarks bench-agreement [--rounds 4] [--gen-tokens 64] [--dir DIR]\n       EdgeTune.Benchmarks runtimes [--threads N] [--rounds 4] [--prompt-tokens 128] [--gen-tokens 64] [--shape small|medium] [--dir DIR]\n       EdgeTune.Benchmarks packing [--threads N] [--steps 12] [--batch 8]\n       EdgeTune.Benchmarks distill [--threads N] [--steps 5] [--top-k 64]\n       EdgeTune.Benchmarks scaling [--shapes S1,S2] [--methods lora,qlora] [--seq 256] [--batch 1] [--steps 2] [--threads 2] [--out DIR] [--chart-only]\n       EdgeTune.Benchmarks fuzz [--format gguf|safetensors|jsonl|csv|recipe|profile] [--count 10000] [--seed 1] [--dir DIR]");
    return args.Length == 0 || args[0] is "--help" or "-h" ? 0 : 2;
}

string Opt(string name, string fallback)
{
    int i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
}
int threads = int.Parse(Opt("--threads", Environment.ProcessorCount.ToString()));
var types = Opt("--types", "Q8_0,Q4_0,Q4_K_M,Q6_K").Split(',');
int repeat = int.Parse(Opt("--repeat", "1"));
string dir = Opt("--dir", Path.Combine(Path.GetTempPath(), "edgetune-bench"));
Directory.CreateDirectory(dir);

// ~350 MB of F32 weights in llama shapes: 1024 wide, 16 heads over 4 KV heads, 2816 FFN, 6 layers, 12k vocabulary.
var config = new TinyLlamaConfig { Embedding = 1024, Heads = 16, KvHeads = 4, FeedForward = 2816, Layers = 6, ExtraTokens = 12000 - 281, Seed = 3 };
string input = Path.Combine(dir, "bench-f32.gguf");
if (!File.Exists(input))
{
    Console.Error.WriteLine($"writing {input} ...");
    TinyLlama.WriteGguf(input, config);
}
long inputBytes = new FileInfo(input).Length;
// Warm the page cache so neither side pays for the first read.
using (var f = File.OpenRead(input)) f.CopyTo(Stream.Null);

Console.WriteLine($"machine: {Environment.ProcessorCount} cores, {EdgeTune.Core.MachineFacts.CpuName()}, {System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription}, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}");
Console.WriteLine($"input:   {input} ({inputBytes / 1e6:0.0} MB F32), threads {threads}, best of {repeat}");
Console.WriteLine();
Console.WriteLine($"{"type",-8} {"edgetune MB/s",14} {"llama.cpp MB/s",15} {"speed-up",9} {"edgetune peak",14} {"llama.cpp peak",15}");
foreach (var type in types)
{
    var ours = Best(() => RunChild("ours", type));
    var theirs = Best(() => RunChild("llama", type));
    Console.WriteLine($"{type,-8} {inputBytes / 1e6 / ours.Seconds,14:0.0} {inputBytes / 1e6 / theirs.Seconds,15:0.0} {theirs.Seconds / ours.Seconds,8:0.00}x {ours.PeakMb,11:0} MB {theirs.PeakMb,12:0} MB");
}
return 0;

(double Seconds, double PeakMb) Best(Func<(double, double)> run)
{
    var results = Enumerable.Range(0, repeat).Select(_ => run()).ToList();
    return (results.Min(r => r.Item1), results.Min(r => r.Item2));
}

(double Seconds, double PeakMb) RunChild(string impl, string type)
{
    var psi = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true };
    // Under `dotnet EdgeTune.Benchmarks.dll` the process is the dotnet host: pass it the program again.
    if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") psi.ArgumentList.Add(System.Reflection.Assembly.GetEntryAssembly()!.Location);
    foreach (var a in new[] { "child", impl, input, Path.Combine(dir, $"out-{impl}-{type}.gguf"), type, threads.ToString() }) psi.ArgumentList.Add(a);
    using var p = Process.Start(psi)!;
    string output = p.StandardOutput.ReadToEnd();
    p.WaitForExit();
    if (p.ExitCode != 0) throw new InvalidOperationException($"{impl} {type} failed: {output}");
    var parts = output.Trim().Split(' ');
    return (double.Parse(parts[0]), double.Parse(parts[1]) / 1024.0);
}

static int Child(string[] a)
{
    string impl = a[0], input = a[1], output = a[2], type = a[3];
    int threads = int.Parse(a[4]);
    if (!LlamaFileTypes.TryParse(type, out var fileType)) throw new ArgumentException(type);
    if (impl == "llama") LlamaCpp.EnsureLoaded(); // load the native library outside the timed region
    var sw = Stopwatch.StartNew();
    if (impl == "ours") GgufQuantizer.Run(input, output, fileType, new QuantizeOptions { Threads = threads });
    else LlamaCpp.Quantize(input, output, (LLamaFtype)(int)fileType, threads: threads);
    sw.Stop();
    Console.WriteLine($"{sw.Elapsed.TotalSeconds:0.000} {PeakKb()}");
    File.Delete(output);
    return 0;
}

static long PeakKb()
{
    foreach (var line in File.ReadLines("/proc/self/status"))
        if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
            return long.Parse(line[6..].Trim().Split(' ')[0]);
    return -1;
}

