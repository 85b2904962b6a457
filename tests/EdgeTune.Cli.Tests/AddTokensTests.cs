using EdgeTune.Inference;
using EdgeTune.Inference.LlamaCpp;
using EdgeTune.Core.Numerics;
using EdgeTune.Testing;

namespace EdgeTune.Cli.Tests;

/// <summary>
/// [model] add_tokens: a base whose ChatML markers are only text gets them as control tokens, the new rows train
/// under LoRA, and llama.cpp — loading the run's base.gguf with the adapter — ends generation at the end-of-turn
/// token instead of writing the marker as text.
/// </summary>
public class AddTokensTests
{
    private static string Recipe(TempDir dir, string addTokens, string method = "lora")
    {
        TinyTask.WriteModel(dir.File("model.gguf"));
        TinyTask.WriteData(dir.File("train.jsonl"), 0, 32);
        File.WriteAllText(dir.File("recipe.toml"), $"""
            [model]
            base = "model.gguf"
            {addTokens}
            [data]
            train = "train.jsonl"
            [adapter]
            method = "{method}"
            rank = 8
            [train]
            max_steps = 80
            batch_size = 8
            learning_rate = 0.005
            warmup_steps = 2
            [output]
            dir = "run"
            """);
        return dir.File("recipe.toml");
    }

    [Fact]
    public void Without_add_tokens_train_warns_naming_the_markers_to_add()
    {
        using var dir = new TempDir();
        var r = CliRunner.Run("train", Recipe(dir, ""), "--device", "cpu", "--threads", "2", "--max-steps", "1");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("""[model] add_tokens = ["<|im_start|>", "<|im_end|>"]""", r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Added_markers_fully_tuned_end_generation_in_llama_cpp_at_the_end_of_turn_token()
    {
        using var dir = new TempDir();
        var r = CliRunner.Run("train", Recipe(dir, """add_tokens = ["<|im_start|>", "<|im_end|>"]""", method: "full"), "--device", "cpu", "--threads", "2");
        Assert.True(r.ExitCode == 0, r.Stderr);
        int vocabulary = TinyTask.Config.VocabSize;
        Assert.Contains($"add_tokens: <|im_start|> = id {vocabulary}, <|im_end|> = id {vocabulary + 1}; vocabulary {vocabulary + 2} (2 new rows, trained); end of turn <|im_end|> (id {vocabulary + 1}) ends generation in llama.cpp", r.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("which the vocabulary has only as text", r.Stderr, StringComparison.Ordinal);

        // The original tokens' logits are untouched by the resize (rows appended).
        int[] plain = [1, 259, 262, 270];
        var before = LlamaCpp.AllLogits(dir.File("model.gguf"), plain);
        var after = LlamaCpp.AllLogits(dir.File("run/base-resized.gguf"), plain);
        var kept = Enumerable.Range(0, plain.Length).SelectMany(t => after.AsSpan(t * (vocabulary + 2), vocabulary).ToArray()).ToArray();
        Assert.True(LogitDistance.RelativeL2(kept, before) < 1e-6);

        using var model = LlamaCppRuntime.Default.Open(new ModelOptions { Path = dir.File("run/model.gguf"), Threads = 2, Exact = true });
        Assert.Null(model.EndOfTurnText); // the marker is one end-of-generation token now
        Assert.Equal([vocabulary + 1], model.Tokenize("<|im_end|>", addSpecial: false));
        Assert.True(model.Run(session => session.IsEndOfGeneration(vocabulary + 1)));
        for (int i = 2000; i < 2004; i++)
        {
            var prompt = model.Tokenize(model.ApplyChatTemplate([new("user", $"q{i} say it")]));
            var result = model.Generate(prompt, SamplingSettings.Greedy(12), null, CancellationToken.None);
            // "hello", then llama.cpp's end-of-generation token (not the marker as text, not the token limit).
            Assert.Equal(("hello", "stop"), (result.Text, result.FinishReason));
            Assert.InRange(result.CompletionTokens, 1, 6); // h e l l o (or one piece more): well before the limit of 12
        }
    }

    [Fact]
    public void Under_lora_the_run_ships_its_base_with_the_trained_rows_and_eval_runs_the_adapter_on_it()
    {
        using var dir = new TempDir();
        string recipe = Recipe(dir, """add_tokens = ["<|im_start|>", "<|im_end|>"]""");
        TinyTask.WriteData(dir.File("test.jsonl"), 1000, 6);
        File.AppendAllText(recipe, "\n[eval]\ntask = \"exact\"\nfew_shot = 0\nmax_new_tokens = 8\nbootstrap_resamples = 100\n");
        File.WriteAllText(recipe, File.ReadAllText(recipe).Replace("train = \"train.jsonl\"", "train = \"train.jsonl\"\ntest = \"test.jsonl\"", StringComparison.Ordinal));
        var r = CliRunner.Run("train", recipe, "--device", "cpu", "--threads", "2", "--max-steps", "10");
        Assert.True(r.ExitCode == 0, r.Stderr);
        int vocabulary = TinyTask.Config.VocabSize;
        string shipped = dir.File("run/base.gguf"), adapter = dir.File("run/adapter.gguf");
        using (var resized = EdgeTune.Formats.Gguf.GgufFile.Open(dir.File("run/base-resized.gguf")))
        using (var trained = EdgeTune.Formats.Gguf.GgufFile.Open(shipped))
        {
            foreach (var table in new[] { "token_embd.weight", "output.weight" })
            {
                var a = new float[2 * 64];
                var b = new float[2 * 64];
                resized.ReadRows(resized.GetTensor(table), vocabulary, a);
                trained.ReadRows(trained.GetTensor(table), vocabulary, b);
                Assert.True(LogitDistance.RelativeL2(b, a) > 1e-3, $"{table}: the added rows were not trained");
                var oldA = new float[vocabulary * 64];
                var oldB = new float[vocabulary * 64];
                resized.ReadRows(resized.GetTensor(table), 0, oldA);
                trained.ReadRows(trained.GetTensor(table), 0, oldB);
                Assert.Equal(oldA, oldB); // the base's own rows are the base's
            }
        }
        using (var model = LlamaCppRuntime.Default.Open(new ModelOptions { Path = shipped, Adapters = [adapter], Threads = 2 }))
        {
            Assert.Null(model.EndOfTurnText);
            Assert.True(model.Run(session => session.IsEndOfGeneration(vocabulary + 1)));
        }
        var e = CliRunner.Run("eval", recipe, "--threads", "2", "--json");
        Assert.True(e.ExitCode == 0, e.Stderr);
        Assert.True(File.Exists(dir.File("run/answers-tuned.jsonl")));
    }

    [Fact]
    public void A_bad_add_tokens_entry_is_one_line_naming_the_key()
    {
        using var dir = new TempDir();
        var r = CliRunner.Run("train", Recipe(dir, """add_tokens = ["<|im_end|>", "<|im_end|>"]"""), "--device", "cpu");
        Assert.Equal(1, r.ExitCode);
        Assert.Single(r.Stderr.Trim().Split('\n'));
        Assert.Contains("recipe.toml:3", r.Stderr, StringComparison.Ordinal);
        Assert.Contains("model.add_tokens: \"<|im_end|>\" is listed twice", r.Stderr, StringComparison.Ordinal);
        Assert.False(Directory.Exists(dir.File("run")));
    }
}
