using System.Text;
using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Models.Chat;
using EdgeTune.Testing;
using LLama;

namespace EdgeTune.Models.Tests;

/// <summary>Chat templates from the real tokenizer_config.json files, rendered as llama.cpp renders them.</summary>
public class ChatTemplateTests
{
    private static readonly ChatMessage System = new("system", "You are a terse assistant.");
    private static readonly ChatMessage[] Turns =
    [
        new("user", "Hello there!"),
        new("assistant", "Hi. How can I help?"),
        new("user", "Translate 'Guten Tag' — please 😀"),
    ];

    public static TheoryData<string, bool, bool> Cases()
    {
        var data = new TheoryData<string, bool, bool>();
        foreach (var name in new[] { "llama3", "qwen3" })
            foreach (bool system in new[] { true, false })
                foreach (bool prompt in new[] { true, false }) data.Add(name, system, prompt);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Apply_equals_llama_cpp(string name, bool withSystem, bool addGenerationPrompt)
    {
        var messages = (withSystem ? new[] { System } : []).Concat(Turns).ToList();
        var template = ChatTemplate.FromHuggingFace(RealTokenizers.Folder(name));

        // llama.cpp's engine, called directly with the template text, as a server would with the GGUF's template.
        LlamaCpp.EnsureLoaded();
        var native = new LLamaTemplate(template.Source) { AddAssistant = addGenerationPrompt };
        foreach (var m in messages) native.Add(m.Role, m.Content);
        string expected = Encoding.UTF8.GetString(native.Apply());

        string actual = template.Apply(messages, addGenerationPrompt);
        Assert.Equal(expected, actual);
        // And the text is what each family's format says, so a wrong template choice cannot pass unseen.
        if (name == "llama3")
        {
            Assert.Contains("<|start_header_id|>user<|end_header_id|>\n\nHello there!<|eot_id|>", actual);
            Assert.Equal(addGenerationPrompt, actual.EndsWith("<|start_header_id|>assistant<|end_header_id|>\n\n", StringComparison.Ordinal));
        }
        else
        {
            Assert.Contains("<|im_start|>user\nHello there!<|im_end|>\n", actual);
            Assert.Equal(addGenerationPrompt, actual.EndsWith("<|im_start|>assistant\n", StringComparison.Ordinal));
        }
        Assert.Equal(withSystem, actual.Contains("You are a terse assistant.", StringComparison.Ordinal));
    }

    [Fact]
    public void From_gguf_reads_the_template_we_wrote()
    {
        var metadata = new GgufMetadata();
        foreach (var (k, v) in Tokenizers.GgufVocabulary.FromHuggingFace(RealTokenizers.Folder("qwen3"))) metadata.Set(k, v);
        var fromGguf = ChatTemplate.FromGguf(metadata, "model.gguf");
        Assert.Equal(ChatTemplate.FromHuggingFace(RealTokenizers.Folder("qwen3")).Source, fromGguf.Source);
        Assert.Equal(GgufValueType.String, metadata["tokenizer.chat_template"].Type);
    }

    [Fact]
    public void Unsupported_template_is_a_clear_error()
    {
        var template = ChatTemplate.FromText("{% for m in messages %}[[{{ m.content }}]]{% endfor %}", "custom.json: key 'chat_template'");
        var e = Assert.Throws<EdgeTuneException>(() => template.Apply([new("user", "hi")], true));
        Assert.StartsWith("custom.json: key 'chat_template': llama.cpp cannot apply this chat template", e.Message);
    }

    [Fact]
    public void Missing_template_names_file_and_key()
    {
        var e = Assert.Throws<FileFormatException>(() => ChatTemplate.FromGguf(new GgufMetadata(), "m.gguf"));
        Assert.Equal("m.gguf: key 'tokenizer.chat_template': is missing", e.Message);
        var e2 = Assert.ThrowsAny<EdgeTuneException>(() => ChatTemplate.FromHuggingFace(RealTokenizers.Folder("llama2")));
        Assert.Contains("tokenizer_config.json: key 'chat_template': is missing", e2.Message);
    }
}
