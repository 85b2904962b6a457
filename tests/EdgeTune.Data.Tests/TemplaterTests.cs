using EdgeTune.Data.Templating;
using EdgeTune.Models.Chat;
using EdgeTune.Testing;

namespace EdgeTune.Data.Tests;

/// <summary>Loss masks with the real Llama 3 and Qwen3 tokenizers and templates, checked against the rendered text.</summary>
public class TemplaterTests
{
    private static DatasetExample Example(params ChatMessage[] messages) => new(messages, null, "t.jsonl", 1, new Dictionary<string, string>());

    private static readonly DatasetExample TwoTurns = Example(
        new("system", "You are a terse assistant."),
        new("user", "Hello there!"),
        new("assistant", "Hi. How can I help?"),
        new("user", "Translate 'Guten Tag'"),
        new("assistant", "Good day."));

    private static Templater For(string name, TemplateOptions? options = null)
    {
        var (template, tokenizer, _) = Templater.LoadModel(RealTokenizers.Folder(name));
        return new Templater(template, tokenizer, options);
    }

    [Theory]
    [InlineData("llama3", "<|eot_id|>")]
    [InlineData("qwen3", "<|im_end|>")]
    public void Only_assistant_tokens_and_end_of_turn_are_trained(string name, string endOfTurn)
    {
        var t = For(name);
        var (result, finding) = t.Render(TwoTurns);
        Assert.Null(finding);
        var r = result!;
        Assert.Equal(r.Text, t.Tokenizer.Decode(r.Ids.Where(id => id != t.Tokenizer.BosId)));

        // The trained tokens, run by run, are exactly each answer followed by its end-of-turn token.
        var runs = new List<string>();
        for (int i = 0; i < r.Ids.Length; i++)
        {
            if (!r.Trained[i]) continue;
            int j = i;
            while (j < r.Ids.Length && r.Trained[j]) j++;
            runs.Add(t.Tokenizer.Decode(r.Ids[i..j]));
            i = j;
        }
        Assert.Equal(["Hi. How can I help?" + endOfTurn, "Good day." + endOfTurn], runs);

        // Everything else, system and user text included, is masked.
        string masked = t.Tokenizer.Decode(r.Ids.Where((_, i) => !r.Trained[i]));
        Assert.Contains("You are a terse assistant.", masked);
        Assert.Contains("Hello there!", masked);
        Assert.Contains("Translate 'Guten Tag'", masked);
        Assert.DoesNotContain("Good day.", masked);
        Assert.Equal(r.Ids.Length, t.CountTokens(TwoTurns));
    }

    [Fact]
    public void Train_on_inputs_trains_everything_but_bos()
    {
        var t = For("llama3", new TemplateOptions { TrainOnInputs = true });
        var r = t.Render(TwoTurns).Example!;
        int bos = r.Ids[0] == t.Tokenizer.BosId ? 1 : 0; // BOS as the tokenizer adds it (this tokenizer.json adds none)
        Assert.All(r.Trained[..bos], Assert.False);
        Assert.All(r.Trained[bos..], Assert.True);
    }

    [Fact]
    public void Over_length_is_dropped_with_a_finding_never_cut_in_the_answer()
    {
        var t = For("qwen3", new TemplateOptions { MaxTokens = 20 });
        var (result, finding) = t.Render(TwoTurns);
        Assert.Null(result);
        Assert.Equal(("over-length", 1L), (finding!.Kind, finding.Line));
        Assert.Contains("dropped", finding.Message);
    }

    [Fact]
    public void Truncate_left_cuts_the_prompt_and_says_so()
    {
        var full = For("llama3").Render(TwoTurns).Example!;
        var t = For("llama3", new TemplateOptions { MaxTokens = full.Ids.Length - 5, Truncation = TruncationPolicy.TruncatePromptLeft });
        var (result, finding) = t.Render(TwoTurns);
        Assert.Equal(full.Ids.Length - 5, result!.Ids.Length);
        Assert.Equal(5, result.CutTokens);
        Assert.Equal(full.Ids[^20..], result.Ids[^20..]);
        Assert.Equal(full.Trained[^20..], result.Trained[^20..]);
        Assert.Contains("cut by 5 tokens", finding!.Message);

        // "Good day.<|eot_id|>" is 4 tokens: an answer that does not fit is never cut: the example is dropped instead.
        var tiny = For("llama3", new TemplateOptions { MaxTokens = 3, Truncation = TruncationPolicy.TruncatePromptLeft });
        Assert.Null(tiny.Render(TwoTurns).Example);
    }
}
