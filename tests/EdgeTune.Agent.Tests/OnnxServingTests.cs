using System.ClientModel;
using EdgeTune.Agent.Config;
using EdgeTune.Export.Onnx;
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
