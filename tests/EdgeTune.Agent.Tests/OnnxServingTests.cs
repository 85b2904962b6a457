using System.ClientModel;
using EdgeTune.Agent.Config;
using EdgeTune.Export.Onnx;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using OpenAI;
using OpenAI.Chat;

namespace EdgeTune.Agent.Tests;

/// <summary>
/// The agent serving an exported ONNX folder (runtime = "onnx") through the same OpenAI API: greedy answers equal
/// the agent's on the GGUF the folder was exported from, plain and streaming.
/// </summary>
public sealed class OnnxServingTests : IDisposable
{
    private readonly TempDir _dir = new();

    [Fact]
    public async Task Onnx_folder_answers_like_the_gguf_it_came_from()
    {
        string gguf = TinyAgentModel.Write(_dir.Path);
        string onnx = Path.Combine(_dir.Path, "tiny-onnx");
        OnnxExporter.Export(gguf, onnx, new OnnxExportOptions());
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 12, Temperature = 0 };
        List<ChatMessage> messages = [new SystemChatMessage("You sort tickets."), new UserChatMessage("printer on fire")];

        string fromGguf = await Ask(gguf, "", messages, options, streaming: false);
        string plain = await Ask(onnx, "runtime = \"onnx\"", messages, options, streaming: false);
        string streamed = await Ask(onnx, "runtime = \"onnx\"", messages, options, streaming: true);
        Assert.NotEqual("", plain);
        Assert.Equal(fromGguf, plain);
        Assert.Equal(plain, streamed);
    }

    /// <summary>
    /// Where llama.cpp does not load (LLamaSharp's arm64 build on JetPack 6), the ONNX model renders its chat template
    /// with ONNX Runtime GenAI instead: it must give the prompt llama.cpp gives (what training formatted with).
    /// </summary>
    [Theory]
    [InlineData("chatml")]
    [InlineData("llama3")]
    public void GenAi_renders_the_chat_template_as_llama_cpp_does(string name)
    {
        string template = name == "chatml" ? TinyAgentModel.ChatMl :
            "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + " +
            "'<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{{ content }}{% endfor %}" +
            "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
        string gguf = Path.Combine(_dir.Path, name + ".gguf");
        var vocabulary = TinyLlama.Metadata(TinyAgentModel.Config).Where(kv => kv.Key.StartsWith("tokenizer.", StringComparison.Ordinal)).ToList();
        vocabulary.Add(new("tokenizer.chat_template", EdgeTune.Formats.Gguf.GgufValue.String(template)));
        TinyLlama.WriteGguf(gguf, TinyAgentModel.Config, vocabulary: vocabulary);
        string onnx = Path.Combine(_dir.Path, name + "-onnx");
        OnnxExporter.Export(gguf, onnx, new OnnxExportOptions());
        using var model = (EdgeTune.Inference.Onnx.OnnxGenAiModel)EdgeTune.Inference.Onnx.OnnxGenAiRuntime.Default.Open(new EdgeTune.Inference.ModelOptions { Path = onnx, Threads = 1 });
        EdgeTune.Models.Chat.ChatMessage[] conversation =
        [
            new("system", "You sort tickets."), new("user", "printer on fire"), new("assistant", "{\"queue\": \"hardware\"}"), new("user", "and the fax?"),
        ];
        foreach (bool addAssistant in new[] { true, false })
            Assert.Equal(model.ApplyChatTemplate(conversation, addAssistant), model.ApplyChatTemplateWithGenAi(conversation, addAssistant));
    }

    [Fact]
    public void Onnx_runtime_needs_a_folder_and_names_the_key()
    {
        string gguf = TinyAgentModel.Write(_dir.Path);
        string config = TinyAgentModel.WriteConfig(_dir.Path, gguf);
        File.WriteAllText(config, File.ReadAllText(config).Replace("[model]", "[model]\nruntime = \"onnx\"", StringComparison.Ordinal));
        var e = Assert.Throws<AgentConfigException>(() => AgentConfig.Load(config));
        Assert.Contains("model.path: no such folder", e.Message);
        File.WriteAllText(config, File.ReadAllText(config).Replace("runtime = \"onnx\"", "runtime = \"tensorrt\"", StringComparison.Ordinal));
        Assert.Contains("model.runtime: 'tensorrt' is not a runtime", Assert.Throws<AgentConfigException>(() => AgentConfig.Load(config)).Message);
    }

    private async Task<string> Ask(string modelPath, string runtimeLine, List<ChatMessage> messages, ChatCompletionOptions options, bool streaming)
    {
        string folder = Path.Combine(_dir.Path, Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(folder);
        string config = TinyAgentModel.WriteConfig(folder, modelPath);
        File.WriteAllText(config, File.ReadAllText(config).Replace("[model]", "[model]\n" + runtimeLine, StringComparison.Ordinal));
        var app = AgentApp.Build(AgentConfig.Load(config));
        await app.StartAsync();
        try
        {
            var address = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
            using (var anonymous = new HttpClient { BaseAddress = address }) await AgentFixture.WaitReady(anonymous);
            var client = new ChatClient("tiny", new ApiKeyCredential(TinyAgentModel.Token), new OpenAIClientOptions { Endpoint = new Uri(address, "/v1") });
            if (!streaming) return (await client.CompleteChatAsync(messages, options)).Value.Content[0].Text;
            var text = new System.Text.StringBuilder();
            await foreach (var update in client.CompleteChatStreamingAsync(messages, options))
                foreach (var part in update.ContentUpdate) text.Append(part.Text);
            return text.ToString();
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }

    public void Dispose() => _dir.Dispose();
}
