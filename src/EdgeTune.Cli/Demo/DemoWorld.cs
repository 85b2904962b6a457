using System.Globalization;
using EdgeTune.Core;
using EdgeTune.Data;
using EdgeTune.Data.Synthetic;
using EdgeTune.Data.Templating;
using EdgeTune.Formats.Synthetic;

namespace EdgeTune.Cli.Demo;

/// <summary>
/// How big the demo's world is: the full run, or the fast one the tests use. Embedding / Heads stays a multiple of
/// 16: ONNX Runtime's GroupQueryAttention, which the ONNX export uses, needs that head size.
/// </summary>
internal sealed record DemoScale(int Tickets, int GeneralTexts, int PretrainSteps, int TuneSteps, int TestLimit, int Embedding, int Layers, int FeedForward, int Heads)
{
    public static readonly DemoScale Full = new(Tickets: 3000, GeneralTexts: 4000, PretrainSteps: 500, TuneSteps: 1000, TestLimit: 200, Embedding: 128, Layers: 4, FeedForward: 344, Heads: 4);
    public static readonly DemoScale Fast = new(Tickets: 900, GeneralTexts: 1500, PretrainSteps: 250, TuneSteps: 500, TestLimit: 60, Embedding: 96, Layers: 2, FeedForward: 256, Heads: 6);
}

/// <summary>
/// Steps 1 and 2 of the demo: the business data set (with planted defects the check must find, then cleaned and
/// split with a frozen test split) and the base model (a tiny ChatML llama with a vocabulary fitted to the text).
/// Everything goes through the product's own code: the same reader, check and split as `edgetune data`.
/// </summary>
internal static class DemoWorld
{
    public sealed record DataResult(string Raw, string Clean, string DatasetDir, IReadOnlyList<PlantedDefect> Planted, CheckReport Report, SplitResult Split);

    public static DataResult BuildData(string work, DemoScale scale, Templater templater, int maxSeqLen, TextWriter o)
    {
        string dataDir = Path.Combine(work, "data");
        Directory.CreateDirectory(dataDir);
        string raw = Path.Combine(dataDir, "tickets.jsonl");
        var planted = SupportTickets.Write(raw, scale.Tickets, seed: 2026, plantDefects: true);

        var checker = new DataChecker(new CheckOptions { TokenCount = templater.CountTokens, MaxTokens = maxSeqLen });
        foreach (var item in DatasetReader.Read(raw)) checker.Add(item);
        var report = checker.Finish();
        o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  data check {raw}: {report.Errors} errors, {report.Warnings} warnings"));
        foreach (var group in report.Findings.Where(f => f.Severity != Severity.Info).GroupBy(f => f.Kind).OrderBy(g => g.Key, StringComparer.Ordinal))
            o.WriteLine($"    {group.Key,-16} {group.Count(),4}  e.g. line {group.First().Line}: {Shorten(group.First().Message)}");
        o.WriteLine($"  planted defects found: {PlantedFound(planted, report.Findings)} of {planted.Count}");

        // The fix a user would make: drop the lines with a defect (a real project would correct them instead). Near-duplicates
        // stay: templated tickets resemble each other, and the split keeps each cluster on one side, so they cannot leak.
        var defective = report.Findings.Where(f => f.Severity != Severity.Info && f.Line > 0 && f.Kind != "near-duplicate").Select(f => f.Line).ToHashSet();
        string clean = Path.Combine(dataDir, "tickets-clean.jsonl");
        using (var w = new StreamWriter(clean))
        {
            long line = 0;
            foreach (var text in File.ReadLines(raw))
                if (!defective.Contains(++line)) w.WriteLine(text);
        }
        string datasetDir = Path.Combine(dataDir, "v1");
        var split = DatasetSplitter.Split([clean], datasetDir, new SplitOptions { Test = 0.15, Eval = 0.05, Seed = 7 });
        o.WriteLine($"  data split → {datasetDir}: train {split.Counts["train"]}, eval {split.Counts["eval"]}, test {split.Counts["test"]} (test frozen in manifest.json)");
        return new DataResult(raw, clean, datasetDir, planted, report, split);
    }

    /// <summary>
    /// Planted defects the check found: a finding of the defect's own kind (a duplicate reported as a duplicate, not as
    /// something else) on the defect's line. Info findings do not count.
    /// </summary>
    internal static int PlantedFound(IEnumerable<PlantedDefect> planted, IEnumerable<DataFinding> findings)
    {
        var found = findings.Where(f => f.Severity != Severity.Info && f.Line > 0).Select(f => (f.Kind, f.Line)).ToHashSet();
        return planted.Count(p => found.Contains((p.Kind, p.Line)));
    }

    /// <summary>The untrained base: ChatML controls, pieces fitted to tickets, answers and general text.</summary>
    public static string WriteInitialModel(string path, DemoScale scale, string generalText)
    {
        var rng = new Random(5);
        var corpus = Enumerable.Range(0, 2000).Select(_ =>
        {
            var t = SupportTickets.Generate(rng);
            return t.Text + "\n" + t.Answer;
        }).Concat(File.ReadLines(generalText)).Append(SupportTickets.SystemPrompt);
        var pieces = WordPieces.FromCorpus(corpus, maxPieces: 900, existing: TinyLlama.Pieces);
        var config = new TinyLlamaConfig
        {
            Embedding = scale.Embedding, Layers = scale.Layers, Heads = scale.Heads, KvHeads = 2, FeedForward = scale.FeedForward,
            ContextLength = 512, ChatMl = true, ExtraTokens = pieces.Count, ExtraPieces = pieces, Seed = 2026,
        };
        TinyLlama.WriteGguf(path, config, modelName: "edgetune-demo-base");
        return path;
    }

    private static string Shorten(string s) => s.Length <= 90 ? s : s[..87] + "...";
}
