using System.Net.Http.Json;
using System.Text.Json;
using EdgeTune.Agent;
using EdgeTune.Agent.Bundles;
using EdgeTune.Data.Synthetic;
using EdgeTune.Testing;
using Microsoft.AspNetCore.Builder;

namespace EdgeTune.Cli.Tests;

/// <summary>`edgetune retrieval` and the retrieval baselines of `edgetune baseline`, as a user runs them, on a tiny GGUF.</summary>
public class RetrievalCommandTests
{
    [Fact]
    public void Retrieval_commands_have_help()
    {
        foreach (var args in new[] { new[] { "retrieval", "--help" }, ["retrieval", "index", "--help"], ["retrieval", "search", "--help"], ["retrieval", "bench", "--help"] })
        {
            var r = CliRunner.Run(args);
            Assert.True(r.ExitCode == 0, string.Join(' ', args) + ": " + r.Stderr);
            Assert.Contains("Usage:", r.Stdout);
        }
        var missing = CliRunner.Run("retrieval", "index", "docs");
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("--out", missing.Stderr);
    }

    [Fact]
    public void Index_builds_once_updates_on_change_and_search_finds_the_answer()
    {
        using var dir = new TempDir();
        string model = dir.File("model.gguf"), docs = dir.File("docs"), kb = dir.File("kb.etidx");
        TinyTask.WriteModel(model);
        var questions = ProductKnowledge.Write(docs, products: 5, seed: 2);

        var r = CliRunner.Run("retrieval", "index", docs, "--out", kb, "--model", model, "--chunk-tokens", "100", "--chunk-overlap", "10", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using (var doc = JsonDocument.Parse(r.Stdout))
        {
            Assert.Equal(5, doc.RootElement.GetProperty("files").GetInt32());
            Assert.True(doc.RootElement.GetProperty("chunks").GetInt32() >= 20);
            Assert.False(doc.RootElement.GetProperty("up_to_date").GetBoolean());
        }
        var again = CliRunner.Run("retrieval", "index", docs, "--out", kb, "--model", model, "--chunk-tokens", "100", "--chunk-overlap", "10");
        Assert.True(again.ExitCode == 0, again.Stderr);
        Assert.Contains("up to date (5 documents unchanged", again.Stdout);

        var q = questions[6];
        var search = CliRunner.Run("retrieval", "search", kb, "--query", q.Text, "--top-k", "2", "--json");
        Assert.True(search.ExitCode == 0, search.Stderr);
        using (var doc = JsonDocument.Parse(search.Stdout))
        {
            var top = doc.RootElement[0];
            Assert.Equal(q.File, top.GetProperty("file").GetString());
            Assert.Contains(q.GoldSentence, top.GetProperty("text").GetString());
        }
        var text = CliRunner.Run("retrieval", "search", kb, "--query", q.Text);
        Assert.StartsWith($"{q.File}#", text.Stdout);
    }

    [Fact]
    public void Bad_knowledge_input_is_one_line_naming_the_file_and_exit_1()
    {
        using var dir = new TempDir();
        string model = dir.File("model.gguf"), docs = dir.File("docs"), kb = dir.File("kb.etidx");
        TinyTask.WriteModel(model);
        Directory.CreateDirectory(docs);
        var empty = CliRunner.Run("retrieval", "index", docs, "--out", kb, "--model", model);
        Assert.Equal(1, empty.ExitCode);
        Assert.StartsWith($"edgetune: {docs}: no knowledge documents", empty.Stderr);
        Assert.Single(empty.Stderr.TrimEnd().Split('\n'));

        File.WriteAllText(Path.Combine(docs, "a.md"), "# A\n\nText.\n");
        File.WriteAllBytes(Path.Combine(docs, "b.txt"), [1, 2, 0, 3]);
        var binary = CliRunner.Run("retrieval", "index", docs, "--out", kb, "--model", model);
        Assert.Equal(1, binary.ExitCode);
        Assert.Equal($"edgetune: {Path.Combine(docs, "b.txt")}: at byte 2: a NUL byte: binary content, not a text document (remove it from the knowledge folder)", binary.Stderr.TrimEnd());
        Assert.False(File.Exists(kb));

        File.Delete(Path.Combine(docs, "b.txt"));
        File.WriteAllText(Path.Combine(docs, "notes.pdf"), "%PDF");
        var skipped = CliRunner.Run("retrieval", "index", docs, "--out", kb, "--model", model);
        Assert.True(skipped.ExitCode == 0, skipped.Stderr);
        Assert.Contains($"edgetune: warning: {Path.Combine(docs, "notes.pdf")}: skipped", skipped.Stderr);

        var missing = CliRunner.Run("retrieval", "search", dir.File("none.etidx"), "--query", "x");
        Assert.Equal(1, missing.ExitCode);
        Assert.StartsWith($"edgetune: {dir.File("none.etidx")}: no such knowledge index", missing.Stderr);
    }

    [Fact]
    public void Baseline_runs_both_retrieval_baselines_and_says_which_is_best_in_plain_words()
    {
        using var dir = new TempDir();
        string docs = dir.File("docs");
        var questions = ProductKnowledge.Write(docs, products: 3, seed: 5);
        string recipe = TinyTask.WriteRecipe(dir.Path, extraEval: "[baseline]\nknowledge = \"docs\"\nchunk_tokens = 100\nchunk_overlap = 10\ntop_k = 3\nretrieved_few_shot = 2");
        File.WriteAllLines(dir.File("train.jsonl"), ProductKnowledge.Lines(questions.Take(4)));
        File.WriteAllLines(dir.File("test.jsonl"), ProductKnowledge.Lines(questions.Skip(4)));

        var r = CliRunner.Run("baseline", recipe, "--json", "--threads", "2");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using (var doc = JsonDocument.Parse(r.Stdout))
        {
            var root = doc.RootElement;
            var runners = root.GetProperty("baseline").GetProperty("runners").EnumerateArray().Select(x => x.GetProperty("name").GetString()!).ToArray();
            Assert.Equal(["base", "few_shot", "retrieved_few_shot", "rag"], runners);
            string best = root.GetProperty("best_baseline").GetProperty("name").GetString()!;
            Assert.Contains(best, runners);
            Assert.EndsWith("on the test split, the best of the baselines; fine-tune only if you need more", root.GetProperty("advice").GetString());
            var pairs = root.GetProperty("baseline").GetProperty("comparisons").EnumerateArray().Select(c => c.GetProperty("a").GetString() + "/" + c.GetProperty("b").GetString()).Distinct();
            Assert.Equal(["few_shot/base", "retrieved_few_shot/base", "rag/base"], pairs);
        }
        Assert.Contains("knowledge index: 3/3", r.Stderr);
        string run = Path.Combine(dir.Path, "run");
        foreach (var name in new[] { "rag", "retrieved_few_shot" })
        {
            var first = JsonDocument.Parse(File.ReadLines(Path.Combine(run, $"answers-{name}.jsonl")).First()).RootElement;
            Assert.True(first.GetProperty("retrieved").GetArrayLength() > 0, name);
        }

        var text = CliRunner.Run("baseline", recipe);
        Assert.True(text.ExitCode == 0, text.Stderr);
        Assert.Contains("retrieved_few_shot  ", text.Stdout); // the table's runner column fits the longest name
        Assert.Matches(@"\((base|few_shot|retrieved_few_shot|rag)\) reaches exact_match [0-9.]+ on the test split, the best of the baselines; fine-tune only if you need more", text.Stdout);
    }
}

/// <summary>A knowledge index travelling in a bundle with its model, served by the device after the install.</summary>
public class RetrievalBundleTests
{
    [Fact]
    public async Task A_bundle_with_a_knowledge_index_is_served_with_retrieval_after_deploy()
    {
        using var inputs = new BundleInputs();
        string docs = inputs.Dir.File("docs"), kb = inputs.Dir.File("kb.etidx");
        Directory.CreateDirectory(docs);
        // Short documents: the tiny model's context is 256 and its tokenizer spells most words in bytes.
        File.WriteAllText(Path.Combine(docs, "reset.md"), "# Reset\n\nHold the pin ten seconds.\n");
        File.WriteAllText(Path.Combine(docs, "color.md"), "# Colour\n\nThe case is teal.\n");
        var index = CliRunner.Run("retrieval", "index", docs, "--out", kb, "--model", inputs.Model, "--chunk-tokens", "40", "--chunk-overlap", "4");
        Assert.True(index.ExitCode == 0, index.Stderr);
        File.AppendAllText(inputs.Author, "[retrieval]\nindex = \"elsewhere.etidx\"\ntop_k = 1\nmax_context_tokens = 120\n");
        string bundle = inputs.Dir.File("rag.etb");
        var created = CliRunner.Run("bundle", "create", "--model", inputs.Model, "--config", inputs.Author, "--profile", "x86-64-generic", "--version", "2.0.0",
            "--key", inputs.Key, "--out", bundle, "--knowledge-index", kb);
        Assert.True(created.ExitCode == 0, created.Stderr);
        var inspect = JsonDocument.Parse(CliRunner.Run("bundle", "inspect", bundle, "--json").Stdout).RootElement;
        Assert.Contains(inspect.GetProperty("manifest").GetProperty("files").EnumerateArray(), f => f.GetProperty("path").GetString() == "knowledge/kb.etidx");

        var notAnIndex = CliRunner.Run("bundle", "create", "--model", inputs.Model, "--config", inputs.Author, "--profile", "x86-64-generic", "--version", "2.0.0",
            "--out", inputs.Dir.File("x.etb"), "--knowledge-index", inputs.Model);
        Assert.Equal(1, notAnIndex.ExitCode);
        Assert.StartsWith($"edgetune: {inputs.Model}: not a knowledge index", notAnIndex.Stderr);

        await using var device = new BundleDevice();
        await device.Start(inputs);
        var deployed = CliRunner.Run("deploy", bundle, "--to", $"http://127.0.0.1:{device.Port}", "--token-file", device.Dir.File("token"));
        Assert.True(deployed.ExitCode == 0, deployed.Stdout + deployed.Stderr);

        using var response = await device.Client.PostAsJsonAsync("/v1/chat/completions", new { max_tokens = 2, messages = new[] { new { role = "user", content = "how do I reset it" } } });
        Assert.Equal(200, (int)response.StatusCode);
        string page = await device.Client.GetStringAsync("/v1/field-data?after=0");
        var record = page.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => EdgeTune.Formats.FieldData.FieldExample.FromJsonLine(l)!).Last();
        Assert.Equal(["reset.md#1"], record.Metadata.Sampling!["retrieved_chunks"].EnumerateArray().Select(e => e.GetString()));
        Assert.Equal("kb.etidx", record.Metadata.Sampling["retrieval_index"].GetString());
        Assert.Contains("Hold the pin ten seconds.", record.Messages[0].Content);
    }
}

/// <summary>A device agent trusting the bundle inputs' key, serving a factory model, with its admin endpoint on a loopback port.</summary>
internal sealed class BundleDevice : IAsyncDisposable
{
    public TempDir Dir { get; } = new();
    public int Port { get; } = SshServer.FreePort();
    public WebApplication App { get; private set; } = null!;
    public HttpClient Client { get; private set; } = null!;

    public async Task Start(BundleInputs inputs)
    {
        Directory.CreateDirectory(Dir.File("trusted"));
        File.Copy(inputs.Public, Dir.File("trusted/release.pub"));
        File.Copy(inputs.Model, Dir.File("factory.gguf"));
        string config = Dir.File("agent.toml");
        File.WriteAllText(config, $"""
            [server]
            listen = "http://127.0.0.1:{Port}"
            api_token = "device-token-0123456789"
            log_level = "Warning"
            [model]
            path = "factory.gguf"
            name = "factory"
            context = 256
            threads = 2
            [bundles]
            trust = "trusted"
            state_dir = "state"
            board = "x86-64-generic"
            """);
        File.WriteAllText(Dir.File("token"), "device-token-0123456789\n");
        App = AgentApp.Build(BundleBoot.Load(config, _ => { }));
        await App.StartAsync();
        Client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{Port}"), Timeout = TimeSpan.FromSeconds(60) };
        Client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", "device-token-0123456789");
        for (int i = 0; i < 600; i++)
        {
            try { if ((await Client.GetAsync("/health")).IsSuccessStatusCode) break; }
            catch (HttpRequestException) { }
            await Task.Delay(50);
        }
    }

    public async ValueTask DisposeAsync()
    {
        Client?.Dispose();
        if (App is not null) { await App.StopAsync(); await App.DisposeAsync(); }
        Dir.Dispose();
    }
}
