using System.Diagnostics;
using System.Net;
using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Evaluation.Review;
using EdgeTune.Evaluation.Runners;
using EdgeTune.Testing;

namespace EdgeTune.Evaluation.Tests;

public class ReviewTests
{
    private static List<RunnerAnswer> Answers(string model, int n) => Enumerable.Range(0, n).Select(i => new RunnerAnswer
    {
        Id = $"id{i:000}",
        Source = $"test.jsonl:{i + 1}",
        Text = $"{model} answer {i}" + (i == 3 ? " with <script>alert(1)</script>, \"quotes\"\nand a line break" : ""),
        Reference = new string('r', i % 3 == 0 ? 5 : i % 3 == 1 ? 50 : 500),
        Label = i % 4 == 0 ? "billing" : "shipping",
        Question = $"question {i} — ünïcode",
    }).ToList();

    [Fact]
    public void The_sample_is_stratified_sized_by_the_margin_seeded_and_blinded()
    {
        using var dir = new TempDir();
        var x = Answers("tuned", 120);
        var y = Answers("base", 120);
        var e = ReviewPack.Export("tuned", x, "base", y, dir.File("pack"), dir.File("key.json"), null, 0.1, 3);
        // n₀ = 1.96²·0.25/0.1² = 96.04; with N = 120: 96.04/(1 + 95.04/120) = 53.6 → 54.
        Assert.Equal(54, e.Size);
        Assert.Equal(120, e.Population);
        // Proportional to the strata (2 labels × 3 length terciles): billing/* hold 10 rows each (quota 4.5), shipping/* 30
        // (quota 13.5); every stratum gets the floor or the ceiling of its quota, and the sizes add up.
        Assert.Equal(6, e.Strata.Count);
        foreach (var (name, count) in e.Strata)
            Assert.InRange(count, name.StartsWith("billing", StringComparison.Ordinal) ? 4 : 13, name.StartsWith("billing", StringComparison.Ordinal) ? 5 : 14);
        Assert.Equal(54, e.Strata.Values.Sum());

        var key = JsonSerializer.Deserialize<ReviewKey>(File.ReadAllText(e.Key))!;
        Assert.Equal(54, key.Items.Count);
        int tunedOnA = key.Items.Count(i => i.A == "tuned");
        Assert.InRange(tunedOnA, 15, 39); // sides are randomised, not fixed
        var csv = Csv.Read(File.ReadAllText(e.Csv));
        Assert.Equal(["item", "prompt", "reference", "answer_a", "answer_b", "verdict", "comment"], csv[0].Fields);
        Assert.Equal(55, csv.Count);
        foreach (var (_, f) in csv.Skip(1))
        {
            var entry = key.Items.Single(k => k.Item == f[0]);
            Assert.StartsWith(entry.A, f[3]); // the key says which model wrote side A
            Assert.StartsWith(entry.B, f[4]);
        }
        // The page never names the models, and an answer cannot close the script element.
        string page = File.ReadAllText(e.Html);
        Assert.DoesNotContain("\"tuned\"", page);
        Assert.DoesNotContain("<script>alert", page);
        Assert.DoesNotContain("http", page.Replace("http-equiv", "", StringComparison.Ordinal));

        // Same seed, same pack.
        var again = ReviewPack.Export("tuned", x, "base", y, dir.File("pack2"), dir.File("key2.json"), null, 0.1, 3);
        Assert.Equal(File.ReadAllText(e.Csv), File.ReadAllText(again.Csv));
    }

    [Fact]
    public void Import_reports_preference_rates_with_wilson_intervals_and_agreement()
    {
        using var dir = new TempDir();
        var e = ReviewPack.Export("tuned", Answers("tuned", 10), "base", Answers("base", 10), dir.File("pack"), dir.File("key.json"), 10, 0.05, 1);
        var key = JsonSerializer.Deserialize<ReviewKey>(File.ReadAllText(e.Key))!;
        // Reviewer 1 prefers tuned on 8 items, base on 2; reviewer 2 agrees except on one item, which is a tie.
        string Side(ReviewKeyEntry k, string model) => k.A == model ? "A" : "B";
        var r1 = key.Items.Select((k, i) => $"{k.Item},{Side(k, i < 8 ? "tuned" : "base")},ok,ana").ToList();
        var r2 = key.Items.Select((k, i) => $"{k.Item},{(i == 0 ? "tie" : Side(k, i < 8 ? "tuned" : "base"))},\"fine, \"\"really\"\"\",ben").ToList();
        File.WriteAllLines(dir.File("ana.csv"), ["item,verdict,comment,reviewer", .. r1]);
        File.WriteAllLines(dir.File("ben.csv"), ["item,verdict,comment,reviewer", .. r2]);
        var s = ReviewImport.Summarise([dir.File("ana.csv"), dir.File("ben.csv")], e.Key);
        Assert.Equal(20, s.Verdicts);
        Assert.Equal(2, s.Reviewers);
        var tuned = s.Rates.Single(r => r.Outcome == "tuned");
        Assert.Equal(15, tuned.Count);
        Assert.Equal(0.75, tuned.Rate.Value);
        Assert.Equal(Statistics.Stats.Wilson(15, 20), tuned.Rate);
        Assert.Equal("cohen_kappa", s.AgreementStatistic);
        // ana: 8 tuned, 2 base; ben: 1 tie, 7 tuned, 2 base; p_o = 0.9, p_e = 0.8·0.7 + 0.2·0.2 = 0.6, κ = 0.75.
        Assert.Equal(0.75, s.Agreement!.Value, 12);

        File.WriteAllLines(dir.File("cara.csv"), ["item,verdict,comment,reviewer", .. r1.Select(l => l.Replace(",ana", ",cara", StringComparison.Ordinal))]);
        var three = ReviewImport.Summarise([dir.File("ana.csv"), dir.File("ben.csv"), dir.File("cara.csv")], e.Key);
        Assert.Equal("fleiss_kappa", three.AgreementStatistic);
        Assert.Contains("tuned preferred", ReviewImport.Format(three));

        File.WriteAllLines(dir.File("bad.csv"), ["item,verdict", $"{key.Items[0].Item},maybe"]);
        var error = Assert.Throws<EdgeTuneException>(() => ReviewImport.Summarise([dir.File("bad.csv")], e.Key));
        Assert.StartsWith($"{dir.File("bad.csv")}:2: verdict 'maybe' is not A, B or tie", error.Message);
    }

    [ChromiumFact]
    public async Task The_review_page_works_in_headless_chromium()
    {
        string chromium = ChromiumFactAttribute.Binary!;
        using var dir = new TempDir();
        var e = ReviewPack.Export("tuned", Answers("tuned", 6), "base", Answers("base", 6), dir.File("pack"), dir.File("key.json"), 6, 0.05, 2);
        var psi = new ProcessStartInfo(chromium) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions", $"--user-data-dir={dir.File("profile")}",
                     "--virtual-time-budget=5000", "--dump-dom", new Uri(e.Html).AbsoluteUri + "?autotest=A,B,tie&reviewer=ana" })
            psi.ArgumentList.Add(a);
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        await process.WaitForExitAsync(cts.Token);
        string dom = await stdout;
        Assert.True(dom.Contains("data-autotest=\"done\"", StringComparison.Ordinal), $"the page's script did not run: {await stderr}\n{dom[..Math.Min(2000, dom.Length)]}");

        // The content: every item with its question and both answers, the markup of an answer shown as text.
        Assert.Contains("6 of 6 judged", dom);
        Assert.Contains("question 3 — ünïcode", dom);
        Assert.Contains("&lt;script&gt;alert(1)&lt;/script&gt;", dom);
        Assert.Equal(6, CountOf(dom, "<section class=\"item done\""));
        // The export: a blob: download link and the CSV it holds.
        Assert.Matches("id=\"download\"[^>]*href=\"blob:", dom);
        int start = dom.IndexOf("<pre id=\"exported\">", StringComparison.Ordinal) + "<pre id=\"exported\">".Length;
        string csv = WebUtility.HtmlDecode(dom[start..dom.IndexOf("</pre>", start, StringComparison.Ordinal)]);
        File.WriteAllText(dir.File("verdicts.csv"), csv);
        var rows = Csv.Read(csv);
        Assert.Equal(["item", "verdict", "comment", "reviewer"], rows[0].Fields);
        Assert.Equal(["A", "B", "tie", "A", "B", "tie"], rows.Skip(1).Select(r => r.Fields[1]).ToArray());
        Assert.All(rows.Skip(1), r => Assert.Equal("auto, \"quoted\"", r.Fields[2]));
        Assert.All(rows.Skip(1), r => Assert.Equal("ana", r.Fields[3]));
        // And the verdicts go back through import.
        var s = ReviewImport.Summarise([dir.File("verdicts.csv")], e.Key);
        Assert.Equal(6, s.Verdicts);
        Assert.Equal(2, s.Rates.Single(r => r.Outcome == "tie").Count);
    }

    private static int CountOf(string s, string what)
    {
        int n = 0;
        for (int i = s.IndexOf(what, StringComparison.Ordinal); i >= 0; i = s.IndexOf(what, i + 1, StringComparison.Ordinal)) n++;
        return n;
    }
}

/// <summary>A fact that runs only where Chromium is installed (Debian package `chromium`), and says why it is skipped otherwise.</summary>
public sealed class ChromiumFactAttribute : FactAttribute
{
    /// <summary>The browser: $EDGETUNE_CHROMIUM, else chromium, chromium-browser or google-chrome on the PATH.</summary>
    public static string? Binary { get; } = Find();

    private static string? Find()
    {
        if (Environment.GetEnvironmentVariable("EDGETUNE_CHROMIUM") is { Length: > 0 } chosen) return File.Exists(chosen) ? chosen : null;
        var dirs = (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries);
        return new[] { "chromium", "chromium-browser", "google-chrome" }.SelectMany(n => dirs.Select(d => Path.Combine(d, n))).FirstOrDefault(File.Exists);
    }

    public ChromiumFactAttribute()
    {
        if (Binary is null) Skip = "chromium is not installed (Debian: apt-get install chromium; or set EDGETUNE_CHROMIUM), so the review page was not opened in a browser";
    }
}
