using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Inference;
using EdgeTune.Inference.LlamaCpp;
using EdgeTune.Inference.Reference;
using EdgeTune.Models.Chat;
using EdgeTune.Models.Tokenizers;
using EdgeTune.Testing;

namespace EdgeTune.Inference.Tests;

/// <summary>
/// A chat template whose end-of-turn marker is only text in the vocabulary: a model tuned on it writes the marker
/// as text and never emits EOS. Every runtime stops at the text and cuts it, streaming included.
/// </summary>
public sealed class EndOfTurnTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly string _model;

    public EndOfTurnTests()
    {
        _model = _dir.File("eot.gguf");
        EndOfTurnModel.Write(_model);
    }

    public void Dispose() => _dir.Dispose();

    public static TheoryData<string> Runtimes => ["llama.cpp", "reference"];

    private IInferenceModel Open(string runtime) => runtime == "llama.cpp"
        ? LlamaCppRuntime.Default.Open(new ModelOptions { Path = _model, Threads = 1, Exact = true })
        : ReferenceRuntime.Instance.Open(new ModelOptions { Path = _model });

    private static readonly ChatMessage[] Question = [new("user", "what is it made of?")];

    [Theory]
    [MemberData(nameof(Runtimes))]
    public void The_model_writes_the_marker_as_text_and_the_runtime_stops_there(string runtime)
    {
        using var model = Open(runtime);
        Assert.Equal("<|im_end|>", model.EndOfTurnText);
        int[] prompt = model.Tokenize(model.ApplyChatTemplate(Question));

        // The model really writes the marker as text: its greedy ids are the chain, never EOS.
        var tokens = model.Run(session =>
        {
            session.Reset();
            session.Prompt(prompt);
            var ids = new List<int>();
            for (int i = 0; i < 6; i++)
            {
                int id = EdgeTune.Models.Reference.ReferenceModel.ArgMax(session.LastLogits());
                ids.Add(id);
                session.Decode(id);
            }
            return ids;
        });
        Assert.Equal(["gold", "<|", "im_end", "|>", "▁junk", "▁junk"], tokens.Select(id => EndOfTurnModel.Chain[id - EndOfTurnModel.Id("gold")]));

        var result = model.Generate(prompt, SamplingSettings.Greedy(16), null, default);
        Assert.Equal("gold", result.Text);
        Assert.Equal("stop", result.FinishReason);
        Assert.Equal(4, result.CompletionTokens); // stopped on the marker's last token, not at 16
    }

    [Theory]
    [MemberData(nameof(Runtimes))]
    public void Streaming_holds_back_a_partial_marker_and_never_sends_it(string runtime)
    {
        using var model = Open(runtime);
        int[] prompt = model.Tokenize(model.ApplyChatTemplate(Question));
        var pieces = new List<string>();
        var result = model.Generate(prompt, new SamplingSettings(16, 0, 1, null, []), pieces.Add, default);
        Assert.Equal("gold", string.Concat(pieces));
        Assert.DoesNotContain(pieces, p => p.Contains('<', StringComparison.Ordinal) || p.Contains('|', StringComparison.Ordinal));
        Assert.Equal("gold", result.Text);
    }

    [Fact]
    public void A_request_stop_sequence_and_the_marker_both_apply_and_the_earlier_wins()
    {
        using var model = Open("llama.cpp");
        int[] prompt = model.Tokenize(model.ApplyChatTemplate(Question));
        var result = model.Generate(prompt, new SamplingSettings(16, 0, 1, null, ["ol"]), null, default);
        Assert.Equal("g", result.Text);
        Assert.Equal("stop", result.FinishReason);
    }

    [Fact]
    public void A_marker_that_is_a_special_token_needs_no_text_stop()
    {
        string path = _dir.File("chatml.gguf");
        TinyLlama.WriteGguf(path, new TinyLlamaConfig { Embedding = 32, Layers = 1, Heads = 2, KvHeads = 1, FeedForward = 64, ChatMl = true });
        using var model = LlamaCppRuntime.Default.Open(new ModelOptions { Path = path, Threads = 1 });
        Assert.Null(model.EndOfTurnText);
    }

    [Fact]
    public void Data_check_and_train_warning_names_the_marker_and_the_fix()
    {
        ChatTemplate template;
        ITokenizer tokenizer;
        using (var file = GgufFile.Open(_model))
        {
            template = ChatTemplate.FromGguf(file.Metadata, _model);
            tokenizer = GgufTokenizer.FromMetadata(file.Metadata, _model);
        }
        string warning = template.EndOfTurnWarning(tokenizer)!;
        Assert.Contains("\"<|im_end|>\"", warning, StringComparison.Ordinal);
        Assert.Contains("special tokens", warning, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', warning);

        string chatml = _dir.File("chatml2.gguf");
        TinyLlama.WriteGguf(chatml, new TinyLlamaConfig { Embedding = 32, Layers = 1, Heads = 2, KvHeads = 1, FeedForward = 64, ChatMl = true });
        using var special = GgufFile.Open(chatml);
        Assert.Null(ChatTemplate.FromGguf(special.Metadata, chatml).EndOfTurnWarning(GgufTokenizer.FromMetadata(special.Metadata, chatml)));
    }

    [Fact]
    public void End_of_turn_markers_of_common_templates()
    {
        string Llama3(IReadOnlyList<ChatMessage> m, bool add) => ChatTemplate.FromText("{{ '<|start_header_id|>' + role + '<|end_header_id|>' }}{{ '<|eot_id|>' }}").Apply(m, add);
        Assert.Equal("<|eot_id|>", ChatTemplate.EndOfTurnMarker(Llama3));
        Assert.Equal("<|im_end|>", ChatTemplate.FromText(TinyLlama.ChatMlTemplate).EndOfTurnMarker());
    }
}

public sealed class StopMatcherTests
{
    [Fact]
    public void Text_that_could_start_a_stop_is_held_until_it_cannot()
    {
        var sent = new List<string>();
        var m = new StopMatcher(["<|im_end|>"], sent.Add);
        Assert.False(m.Push("ab<"));
        Assert.Equal(["ab"], sent);
        Assert.False(m.Push("|x"));            // "<|x" can no longer become the marker
        Assert.Equal(["ab", "<|x"], sent);
        Assert.False(m.Push("<|im_"));
        Assert.True(m.Push("end|>tail"));
        Assert.Equal("ab<|x", m.Text);
        Assert.Equal("ab<|x", string.Concat(sent));
    }

    [Fact]
    public void Flush_passes_on_a_held_tail_when_generation_ends_without_a_stop()
    {
        var sent = new List<string>();
        var m = new StopMatcher(["</s>"], sent.Add);
        m.Push("ok </");
        m.Flush();
        Assert.Equal("ok </", string.Concat(sent));
        Assert.False(m.Stopped);
    }
}
