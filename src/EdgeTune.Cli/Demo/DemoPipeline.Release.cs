using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using EdgeTune.Agent.Bundles;
using EdgeTune.Bundles;
using EdgeTune.Core;
using EdgeTune.Data.Synthetic;
using EdgeTune.Export.Onnx;
using EdgeTune.Formats.Onnx;
using EdgeTune.Inference;
using EdgeTune.Inference.Onnx;
using EdgeTune.Models.Adapters;
using EdgeTune.Models.Reference;
using MQTTnet.Server;
using EdgeTune.Core.Numerics;

namespace EdgeTune.Cli.Demo;

/// <summary>
/// The demo's release half: the ONNX export and its check, the signed bundle installed on the demo's agent, and
/// the fleet path (the agent's MQTT outbox, an in-process broker, <c>edgetune fleet collect</c>). Each step runs
/// the code a user runs (the exporter, the CLI verbs, the agent's admin endpoint) and fails the demo when its
/// check fails.
/// </summary>
internal sealed partial class DemoPipeline
{
    private const string DeviceId = "demo-orin-nano-01";
    private const string FleetName = "demo";
    /// <summary>The board the demo's device stands for: its profile names the bundles it accepts; its CPU runs ONNX int4.</summary>
    private const string Board = "jetson-orin-nano-8gb";
    private const string CanaryPrompt = "Printer on floor 3 jams every morning, please send someone.";
    /// <summary>ONNX Runtime against our forward over the same dequantised int4 weights (issue 14's bound).</summary>
    private const double Int4Bound = 1e-3;

    private string ExportOnnx(string basePath, string adapter, string models, CancellationToken cancel)
    {
        string folder = Path.Combine(models, "tuned-onnx-int4");
        var options = new OnnxExportOptions { Precision = OnnxPrecision.Int4, BlockSize = 32, Adapter = adapter };
        var timer = Stopwatch.StartNew();
        var result = console.WithProgress("export onnx int4", report => OnnxExporter.Export(basePath, folder, options,
            new SyncProgress<(int Done, int Total, string Name)>(p => report((double)p.Done / Math.Max(1, p.Total), p.Name)), cancel));
        _o.WriteLine("  " + OnnxExporter.Describe(result) + string.Create(C, $", in {timer.Elapsed.TotalSeconds:0.0} s"));

        // What `edgetune export check-onnx` checks: the folder as ONNX Runtime GenAI would load it.
        var (config, graph) = OnnxFolder.Validate(folder);
        _o.WriteLine($"  check-onnx: ok: {config.Type}, {config.Layers} layers, vocabulary {config.VocabSize}, {graph.Nodes.Count} nodes " +
                     $"({graph.Nodes.Count(n => n.OpType == "MatMulNBits")} MatMulNBits)");

        // The real consumer: ONNX Runtime's logits on a ticket prompt against our forward over the same weights
        // (adapter merged, every quantised matrix through the int4 round trip), and the cost of int4 against fp32.
        using var onnx = OnnxGenAiRuntime.Default.Open(new ModelOptions { Path = folder, Threads = threads }, cancel);
        var ticket = SupportTickets.Generate(new Random(5));
        int[] prompt = onnx.Tokenize(onnx.ApplyChatTemplate([new("system", SupportTickets.SystemPrompt), new("user", ticket.Text)]));
        var actual = onnx.Logits(prompt);
        using var weights = ModelWeights.Open(basePath, LoraAdapter.Open(adapter));
        var dequantised = Int4Blocks.DequantisedReference(weights, options.BlockSize).Forward(prompt);
        var fp32 = ReferenceModel.FromWeights(weights).Forward(prompt);
        double error = LogitDistance.RelativeL2(actual, dequantised);
        double kl = LogitDistance.MeanKl(fp32, actual, weights.Config.VocabSize);
        _o.WriteLine(string.Create(C, $"  ONNX Runtime vs our forward over the dequantised int4 weights, {prompt.Length} positions: relative L2 {error:E2} (bound {Int4Bound:0e0}); " +
                                      $"int4 vs fp32: mean KL {kl:E2} nats"));
        if (!(error <= Int4Bound))
            throw new EdgeTuneException($"{folder}: ONNX Runtime's logits differ from our forward by relative L2 {error:E2} (> {Int4Bound:0e0})");
        return folder;
    }

    /// <summary>A throw-away signing key for this run (`edgetune bundle keygen`); the device trusts its public half.</summary>
    private string MakeSigningKey()
    {
        string keys = Path.Combine(work, "keys");
        Directory.CreateDirectory(keys);
        string stem = Path.Combine(keys, "demo-signing");
        RunCli("bundle", "keygen", "--out", stem);
        return stem;
    }

    private void InstallBundles(HttpClient http, string stateDir, string model, string adapter, string signingKey, CancellationToken cancel)
    {
        string release = Path.Combine(work, "release");
        Directory.CreateDirectory(release);
        // The author's [model] settings the bundle carries (its paths are replaced by the bundle's own).
        string authorConfig = Path.Combine(release, "agent.toml");
        File.WriteAllText(authorConfig, string.Create(C, $"[model]\npath = \"{Path.GetFileName(model)}\"\nname = \"support-triage\"\ncontext = 512\nthreads = {threads}\n"));

        string good = Path.Combine(release, "support-triage-1.0.0.etb");
        CreateAndSign(model, adapter, authorConfig, "1.0.0", good, signingKey);
        var installed = Install(http, good, cancel);
        if (!installed.Ok) throw new EdgeTuneException($"{good}: the agent did not install the bundle: {BundleEndpoints.Line(installed)}");
        // Read back from the device's slots what is now current, and ask the canary the health check asked.
        var slots = new SlotStore(stateDir);
        string current = slots.Active ?? throw new EdgeTuneException($"{stateDir}: no current slot after the install");
        string version = BundleManifest.Parse(File.ReadAllBytes(Path.Combine(slots.SlotPath(current), BundleManifest.FileName)), current).Version;
        _o.WriteLine($"  installed version {version} in slot {current} (good: {slots.Read().Good}); health check passed: model loaded, canary answered");
        if (version != "1.0.0" || slots.Read().Good != current) throw new EdgeTuneException($"{stateDir}: slot {current} holds version {version}, not the good 1.0.0");
        string canary = Ask(http, null, CanaryPrompt, cancel);
        _o.WriteLine($"  canary \"{Shorten(CanaryPrompt)}\" → {Shorten(canary.Trim())}");
        if (canary.Trim().Length == 0) throw new EdgeTuneException("the installed bundle answers the canary prompt with nothing");

        // A deliberately broken bundle, correctly signed: its model file is cut in half, so the switch fails its
        // health check and the agent goes back to the slot it served before.
        string brokenModel = Path.Combine(release, "broken", Path.GetFileName(model));
        Directory.CreateDirectory(Path.GetDirectoryName(brokenModel)!);
        using (var source = File.OpenRead(model))
        using (var target = File.Create(brokenModel))
        {
            var half = new byte[source.Length / 2];
            source.ReadExactly(half);
            target.Write(half);
        }
        string broken = Path.Combine(release, "support-triage-1.0.1-broken.etb");
        CreateAndSign(brokenModel, adapter, authorConfig, "1.0.1", broken, signingKey);
        var rolled = Install(http, broken, cancel);
        string after = slots.Active ?? "none";
        _o.WriteLine($"  broken bundle 1.0.1: {BundleEndpoints.Line(rolled)}");
        if (rolled.Outcome != InstallResult.RolledBack || after != current)
            throw new EdgeTuneException($"{broken}: expected a rollback to slot {current}, got {rolled.Outcome} with slot {after} current");
        string again = Ask(http, null, CanaryPrompt, cancel);
        _o.WriteLine($"  after the rollback slot {after} serves again; the canary's answer is {(again == canary ? "the same as before" : "DIFFERENT")}");
        if (again != canary) throw new EdgeTuneException("after the rollback the agent answers the canary differently from the good bundle");
    }

    private void CreateAndSign(string model, string adapter, string authorConfig, string version, string bundle, string signingKey)
    {
        RunCli("bundle", "create", "--model", model, "--adapter", adapter, "--config", authorConfig, "--profile", Board, "--version", version, "--out", bundle);
        string signed = RunCli("bundle", "sign", bundle, "--key", signingKey + ".key");
        _o.WriteLine($"  {Path.GetFileName(bundle)}: {new FileInfo(bundle).Length} bytes, {signed.Trim()}");
    }

    private static InstallResult Install(HttpClient http, string bundle, CancellationToken cancel)
    {
        using var content = new StreamContent(File.OpenRead(bundle));
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        using var response = http.PostAsync("/v1/admin/bundles", content, cancel).GetAwaiter().GetResult();
        string json = response.Content.ReadAsStringAsync(cancel).GetAwaiter().GetResult();
        return BundleEndpoints.Parse(json) ?? throw new EdgeTuneException($"{bundle}: the agent answered {(int)response.StatusCode}: {json}");
    }

    /// <summary>One greedy chat completion from the agent.</summary>
    private static string Ask(HttpClient http, string? system, string user, CancellationToken cancel)
    {
        var messages = new List<object>();
        if (system is not null) messages.Add(new { role = "system", content = system });
        messages.Add(new { role = "user", content = user });
        var body = JsonSerializer.Serialize(new { model = "support-triage", temperature = 0, max_tokens = 40, messages });
        using var response = http.PostAsync("/v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"), cancel).GetAwaiter().GetResult();
        string json = response.Content.ReadAsStringAsync(cancel).GetAwaiter().GetResult();
        if (!response.IsSuccessStatusCode) throw new EdgeTuneException($"agent answered {(int)response.StatusCode}: {json}");
        using var doc = JsonDocument.Parse(json);
        return doc.RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString() ?? "";
    }

    /// <summary>`edgetune fleet collect` into the split folder; returns its summary line.</summary>
    private string CollectFleet(string broker, string dataset, double idleSeconds) =>
        RunCli("fleet", "collect", "--broker", broker, "--fleet", FleetName, "--into", dataset, "--until-idle", idleSeconds.ToString(C)).Trim();

    /// <summary>The record ids the collector wrote, read back from its idempotency ledger (device, revision, record id).</summary>
    private static HashSet<string> CollectedRecordIds(string dataset)
    {
        string ledger = Path.Combine(dataset, "fleet", "ledger.tsv");
        return File.Exists(ledger) ? File.ReadLines(ledger).Select(l => l.Split('\t')).Where(p => p.Length == 3).Select(p => p[0] + "\t" + p[2]).ToHashSet(StringComparer.Ordinal) : [];
    }

    /// <summary>Runs one of our own verbs in-process as a user would; its progress goes to stderr, a failure ends the demo.</summary>
    private string RunCli(params string[] args)
    {
        var output = new StringWriter(CultureInfo.InvariantCulture);
        var errors = new StringWriter(CultureInfo.InvariantCulture);
        int code = CliApp.Run(args, output, errors);
        console.Error.Write(errors.ToString());
        if (code != CliApp.Success)
            throw new EdgeTuneException($"edgetune {string.Join(' ', args.Take(2))} failed (exit {code}): {errors.ToString().Trim().Split('\n').LastOrDefault()}");
        return output.ToString();
    }

    /// <summary>A verb that may answer no with exit 1 (runs promote refusing a challenger): its exit code and output, stdout and stderr together.</summary>
    private (int Code, string Output) RunCliAllowingRefusal(params string[] args)
    {
        var output = new StringWriter(CultureInfo.InvariantCulture);
        var errors = new StringWriter(CultureInfo.InvariantCulture);
        int code = CliApp.Run(args, output, errors);
        if (code != CliApp.Success && code != CliApp.Failure)
            throw new EdgeTuneException($"edgetune {string.Join(' ', args.Take(2))} failed (exit {code}): {errors.ToString().Trim().Split('\n').LastOrDefault()}");
        return (code, (output.ToString() + errors.ToString()).Trim());
    }

    /// <summary>An MQTT broker inside the demo's process (MQTTnet.Server) on a free loopback port, with persistent sessions.</summary>
    private sealed class DemoBroker : IDisposable
    {
        private readonly MqttServer _server;

        private DemoBroker(MqttServer server, int port)
        {
            _server = server;
            Url = string.Create(CultureInfo.InvariantCulture, $"mqtt://127.0.0.1:{port}");
        }

        public string Url { get; }

        public static DemoBroker Start(CancellationToken cancel)
        {
            var probe = new TcpListener(IPAddress.Loopback, 0);
            probe.Start();
            int port = ((IPEndPoint)probe.LocalEndpoint).Port;
            probe.Stop();
            var options = new MqttServerOptionsBuilder().WithDefaultEndpoint().WithDefaultEndpointBoundIPAddress(IPAddress.Loopback)
                .WithDefaultEndpointPort(port).WithPersistentSessions().Build();
            var server = new MqttServerFactory().CreateMqttServer(options);
            cancel.ThrowIfCancellationRequested();
            server.StartAsync().GetAwaiter().GetResult();
            return new DemoBroker(server, port);
        }

        public void Dispose()
        {
            _server.StopAsync().GetAwaiter().GetResult();
            _server.Dispose();
        }
    }
}
