using EdgeTune.Profiles.Toml;
using EdgeTune.Recipes;

namespace EdgeTune.Recipes.Tests;

public class RecipeTests
{
    private const string IssueExample = """
        [model]
        base = "models/base.gguf"          # a GGUF file or a Hugging Face folder
        [data]
        train = "data/train.jsonl"
        eval = "data/eval.jsonl"
        [adapter]
        method = "qlora"
        rank = 16
        alpha = 32
        dropout = 0.05
        targets = ["q", "k", "v", "o", "gate", "up", "down"]
        [train]
        learning_rate = 2e-4
        epochs = 3
        batch_size = 4
        max_seq_len = 512
        seed = 42
        [output]
        dir = "runs/first"
        """;

    [Fact]
    public void The_issue_example_parses_with_paths_relative_to_the_recipe()
    {
        var r = Recipe.Parse(IssueExample, "/work/proj/recipe.toml");
        Assert.Equal("/work/proj/models/base.gguf", r.Model.Base);
        Assert.Equal("/work/proj/data/eval.jsonl", r.Data.Eval);
        Assert.Equal(TuningMethod.Qlora, r.Adapter.Method);
        Assert.Equal(2.0, r.Adapter.Scale);
        Assert.Equal(0.3, r.Train.MaxGradNorm); // QLoRA's clipping default
        Assert.Equal(42UL, r.Train.Seed);
        Assert.Equal("/work/proj/runs/first", r.Output.Dir);
    }

    [Fact]
    public void Defaults_follow_the_method()
    {
        var full = Recipe.Parse("[model]\nbase = \"m.gguf\"\n[data]\ntrain = \"t.jsonl\"\n[adapter]\nmethod = \"full\"\n", "/r/x.toml");
        Assert.Equal(2e-5, full.Train.LearningRate);
        Assert.Equal(1.0, full.Train.MaxGradNorm);
        Assert.Equal("/r/runs/x", full.Output.Dir);
        Assert.False(full.Train.Packing);
        Assert.Null(full.Train.PackedLength);
        var lora = Recipe.Parse("[model]\nbase = \"m.gguf\"\n[data]\ntrain = \"t.jsonl\"\n[adapter]\nrank = 8\nrslora = true\n", "/r/x.toml");
        Assert.Equal(2e-4, lora.Train.LearningRate);
        Assert.Equal(16.0 / Math.Sqrt(8), lora.Adapter.Scale, 12);
        Assert.Equal("commercial", lora.Export.Use); // the strictest use unless the recipe declares another
        Assert.Equal("research", Recipe.Parse("[model]\nbase = \"m.gguf\"\n[data]\ntrain = \"t.jsonl\"\n[export]\nuse = \"Research\"\n", "/r/x.toml").Export.Use);
    }

    [Theory]
    [InlineData("[model]\nbase = \"m\"\n[data]\ntrain = \"t\"\n[train]\nlearning_rat = 1e-4\n", "x.toml:6:1: train.learning_rat: unknown key")]
    [InlineData("[model]\nbase = \"m\"\n[data]\ntrain = \"t\"\n[adapter]\nrank = \"8\"\n", "x.toml:6:1: adapter.rank: expected an integer")]
    [InlineData("[model]\nbase = \"m\"\n[data]\ntrain = \"t\"\n[adapter]\ntargets = [\"q\", \"lm_head\"]\n", "x.toml:6:1: adapter.targets: 'lm_head' is not a target")]
    [InlineData("[data]\ntrain = \"t\"\n", "x.toml:1:1: model.base: required")]
    [InlineData("[model]\nbase = \"m\"\n[data]\ntrain = \"t\"\n[train]\nmax_seq_len = 256\npacking = true\npacked_length = 128\n", "x.toml:8:1: train.packed_length: 128 is below max_seq_len (256)")]
    [InlineData("[model]\nbase = \"m\"\n[data]\ntrain = \"t\"\n[trian]\n", "x.toml:5:2: trian: unknown key")]
    [InlineData("[model]\nbase = \"m\"\n[data]\ntrain = \"t\"\n[train]\ndevice = \"tpu\"\n", "x.toml:6:1: train.device: 'tpu' is not one of auto, cuda, cpu")]
    [InlineData("[model]\nbase = \"m\"\n[data]\ntrain = \"t\"\n[baseline]\ntop_k = 0\n", "x.toml:6:1: baseline.top_k:")]
    [InlineData("[model]\nbase = \"m\"\n[data]\ntrain = \"t\"\n[baseline]\nchunk_tokens = 64\nchunk_overlap = 64\n", "x.toml:7:1: baseline.chunk_overlap: 64 must be below chunk_tokens (64)")]
    [InlineData("[model]\nbase = \"m\"\n[data]\ntrain = \"t\"\n[baseline]\nknowlege = \"docs\"\n", "x.toml:6:1: baseline.knowlege: unknown key")]
    [InlineData("[model]\nbase = \"m\"\n[data]\ntrain = \"t\"\n[export]\nuse = \"personal\"\n", "x.toml:6:1: export.use: 'personal' is not one of commercial, internal, research")]
    public void Mistakes_name_the_place(string text, string expected)
    {
        var e = Assert.Throws<TomlConfigException>(() => Recipe.Parse(text, "x.toml"));
        Assert.StartsWith(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Eval_keys_parse_and_unknown_metrics_are_refused_with_their_line()
    {
        var r = Recipe.Parse("[model]\nbase = \"m\"\n[data]\ntrain = \"t\"\n[eval]\ntask = \"classification\"\nlabel_field = \"label\"\n" +
                             "ignore_case = true\njson_schema = \"s.json\"\ngeneral_text = \"g.txt\"\nmetrics = [\"accuracy\", \"macro_f1\"]\nseed = 9\n", "/r/x.toml");
        Assert.Equal("label", r.Eval.LabelField);
        Assert.True(r.Eval.IgnoreCase);
        Assert.True(r.Eval.Trim);
        Assert.Equal("/r/s.json", r.Eval.JsonSchema);
        Assert.Equal("/r/g.txt", r.Eval.GeneralText);
        Assert.Equal(9UL, r.Eval.Seed);
        var e = Assert.Throws<TomlConfigException>(() => Recipe.Parse("[model]\nbase = \"m\"\n[data]\ntrain = \"t\"\n[eval]\nmetrics = [\"bleu\"]\n", "x.toml"));
        Assert.StartsWith("x.toml:6:1: eval.metrics: 'bleu' is not a metric", e.Message);
    }

    private const string Student = "[model]\nbase = \"m.gguf\"\n[data]\ntrain = \"t.jsonl\"\n";

    [Fact]
    public void Distill_keys_parse_with_their_defaults()
    {
        var none = Recipe.Parse(Student, "/r/x.toml");
        Assert.Null(none.Distill);
        var d = Recipe.Parse(Student + "[distill]\nteacher = \"big.gguf\"\n", "/r/x.toml").Distill!;
        Assert.Equal("/r/big.gguf", d.Teacher);
        Assert.Equal(DistillLoss.ForwardKl, d.Loss);
        Assert.Equal(1.0, d.Temperature);
        Assert.Equal(0.5, d.Alpha);
        Assert.Equal(64, d.TopK);
        Assert.Equal("/r/runs/x/teacher-topk.bin", d.Logits);
        var jsd = Recipe.Parse(Student + "[distill]\nteacher = \"hf\"\nteacher_adapter = \"a.gguf\"\nloss = \"jsd\"\nbeta = 0.1\ntemperature = 2.0\nalpha = 0.9\ntop_k = 16\nlogits = \"k.bin\"\n", "/r/x.toml").Distill!;
        Assert.Equal(("/r/a.gguf", DistillLoss.Jsd, 0.1, 2.0, 0.9, 16, "/r/k.bin"), (jsd.TeacherAdapter, jsd.Loss, jsd.Beta, jsd.Temperature, jsd.Alpha, jsd.TopK, jsd.Logits));
    }

    [Theory]
    [InlineData("[distill]\ntemperature = 2.0\n", "x.toml:5:2: distill.teacher: required")]
    [InlineData("[distill]\nteacher = \"t\"\nloss = \"kl\"\n", "x.toml:7:1: distill.loss: 'kl' is not one of forward_kl, reverse_kl, jsd")]
    [InlineData("[distill]\nteacher = \"t\"\nbeta = 0.5\n", "x.toml:7:1: distill.beta: beta applies to loss = \"jsd\" only")]
    [InlineData("[distill]\nteacher = \"t\"\nalpha = 1.5\n", "x.toml:7:1: distill.alpha:")]
    [InlineData("[distill]\nteacher = \"t\"\ntop_k = 0\n", "x.toml:7:1: distill.top_k:")]
    [InlineData("[distill]\nteacher = \"t\"\ntemperature = 0\n", "x.toml:7:1: distill.temperature:")]
    [InlineData("[distill]\nteacher = \"t\"\ntopk = 8\n", "x.toml:7:1: distill.topk: unknown key")]
    public void Distill_mistakes_name_the_line(string section, string expected)
    {
        var e = Assert.Throws<TomlConfigException>(() => Recipe.Parse(Student + section, "x.toml"));
        Assert.StartsWith(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Distill_checks_made_later_still_name_the_line()
    {
        var d = Recipe.Parse(Student + "[distill]\nteacher = \"t\"\ntop_k = 900\n", "x.toml").Distill!;
        Assert.StartsWith("x.toml:7:1: distill.top_k: too big", d.Error("top_k", "too big").Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Baseline_keys_parse_with_their_defaults()
    {
        var plain = Recipe.Parse("[model]\nbase = \"m\"\n[data]\ntrain = \"t\"\n", "/r/x.toml");
        Assert.Equal((null, null, 256, 32, 4), (plain.Baseline.RetrievedFewShot, plain.Baseline.Knowledge, plain.Baseline.ChunkTokens, plain.Baseline.ChunkOverlap, plain.Baseline.TopK));
        var r = Recipe.Parse("[model]\nbase = \"m\"\n[data]\ntrain = \"t\"\n[baseline]\nknowledge = \"docs/\"\nchunk_tokens = 64\ntop_k = 2\nretrieved_few_shot = 0\n", "/r/x.toml");
        Assert.Equal(("/r/docs/", 64, 16, 2, 0), (r.Baseline.Knowledge, r.Baseline.ChunkTokens, r.Baseline.ChunkOverlap, r.Baseline.TopK, r.Baseline.RetrievedFewShot));
    }
}
