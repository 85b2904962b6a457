using System.ClientModel;
using System.Text.Json;
using EdgeTune.Agent.Config;
using EdgeTune.Agent.Serving;
using EdgeTune.Data.Synthetic;
using EdgeTune.Formats.Gguf;
using EdgeTune.Formats.Synthetic;
using EdgeTune.Inference;
using EdgeTune.Inference.LlamaCpp;
using EdgeTune.Retrieval;
using EdgeTune.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using OpenAI;
using OpenAI.Chat;

namespace EdgeTune.Agent.Tests;

/// <summary>The agent serving with [retrieval]: chunks of a knowledge index in the system prompt, noted in the field record.</summary>
public class RetrievalServingTests
{
    private const string Section = "\n[retrieval]\nindex = \"kb.etidx\"\ntop_k = 2\nmax_context_tokens = 400\n"; // the tiny tokenizer spells most words in bytes: a one-chunk block is ~150-180 tokens

    /// <summary>A knowledge folder and its index, counted in the tiny model's tokens through llama.cpp as the agent counts.</summary>
    private static IReadOnlyList<ProductKnowledge.Question> WriteIndex(TempDir dir, string model, Func<string, int[]>? tokenize = null)
    {
        var questions = ProductKnowledge.Write(dir.File("docs"), products: 3, seed: 8);
        if (tokenize is null)
        {
            using var engine = LlamaCppRuntime.Default.Open(new ModelOptions { Path = model, ContextSize = 1024, Threads = 2 });
            Build(engine.Tokenize);
        }
        else Build((text, _, _) => tokenize(text));
        return questions;

        void Build(Func<string, bool, bool, int[]> tok) =>
            KnowledgeIndex.Build(dir.File("docs"), dir.File("kb.etidx"), new ChunkingOptions { ChunkTokens = 100, ChunkOverlap = 10, Tokenize = t => tok(t, false, false) }, "tiny");
    }

    /// <summary>The agent's tiny model with a 1024-token context (its 256 cannot hold a chunk spelled in byte tokens and a question).</summary>
    private static string WriteModel(TempDir dir)
    {
        string path = dir.File("tiny.gguf");
        var vocabulary = TinyLlama.Metadata(TinyAgentModel.Config).Where(kv => kv.Key.StartsWith("tokenizer.", StringComparison.Ordinal)).ToList();
        vocabulary.Add(new("tokenizer.chat_template", GgufValue.String(TinyAgentModel.ChatMl)));
        TinyLlama.WriteGguf(path, TinyAgentModel.Config with { ContextLength = 1024 }, vocabulary: vocabulary);
        return path;
    }

    private static string WriteConfig(TempDir dir, string model)
    {
        string file = TinyAgentModel.WriteConfig(dir.Path, model, extra: Section);
        File.WriteAllText(file, File.ReadAllText(file).Replace("context = 256", "context = 1024", StringComparison.Ordinal));
        return file;
    }

    private static async Task<(WebApplication App, Uri Address)> Start(AgentConfig config)
    {
        var app = AgentApp.Build(config);
        await app.StartAsync();
        var address = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
        return (app, address);
    }

    [Fact]
    public async Task Chat_completions_get_the_retrieved_chunks_and_the_field_record_names_them()
    {
        using var dir = new TempDir();
        string model = WriteModel(dir);
        var questions = WriteIndex(dir, model);
        var config = AgentConfig.Load(WriteConfig(dir, model));
        Assert.Equal((dir.File("kb.etidx"), 2, 400), (config.Retrieval!.Index, config.Retrieval.TopK, config.Retrieval.MaxContextTokens));
        var (app, address) = await Start(config);
        try
        {
            using var anonymous = new HttpClient { BaseAddress = address };
            await AgentFixture.WaitReady(anonymous);
            // The OpenAI API is unchanged: the official client, a user turn, an answer.
            var q = questions[5];
            var client = new ChatClient("tiny", new ApiKeyCredential(TinyAgentModel.Token), new OpenAIClientOptions { Endpoint = new Uri(address, "/v1") });
            ChatCompletion completion = await client.CompleteChatAsync([new SystemChatMessage("Answer briefly."), new UserChatMessage(q.Text)],
                new ChatCompletionOptions { MaxOutputTokenCount = 4, Temperature = 0 });
            Assert.Equal(ChatMessageRole.Assistant, completion.Role);

            using var http = new HttpClient { BaseAddress = address };
            http.DefaultRequestHeaders.Authorization = new("Bearer", TinyAgentModel.Token);
            var (examples, _) = await http.FieldData(0);
            var record = Assert.Single(examples);
            var chunkIds = record.Metadata.Sampling!["retrieved_chunks"].EnumerateArray().Select(e => e.GetString()!).ToList();
            Assert.InRange(chunkIds.Count, 1, 2);
            Assert.Equal("kb.etidx", record.Metadata.Sampling["retrieval_index"].GetString());
            using var index = KnowledgeIndex.Open(dir.File("kb.etidx"));
            var chunks = index.Chunks().ToDictionary(c => c.ChunkId);
            var gold = chunks.Values.Single(c => c.Text.Contains(q.GoldSentence, StringComparison.Ordinal));
            Assert.Equal(gold.ChunkId, chunkIds[0]);
            Assert.True(chunkIds.Sum(id => chunks[id].Tokens) <= 400);
            // The record holds the conversation as the model saw it: the system turn with the chunks, the user turn as sent.
            Assert.Equal(["system", "user", "assistant"], record.Messages.Select(m => m.Role));
            Assert.StartsWith("Answer briefly.\n\n" + KnowledgePrompt.Preamble, record.Messages[0].Content);
            foreach (var id in chunkIds) Assert.Contains($"[{id}]\n{chunks[id].Content}", record.Messages[0].Content);
            Assert.Equal(q.Text, record.Messages[1].Content);
            Assert.True(completion.Usage.InputTokenCount > 60, $"{completion.Usage.InputTokenCount} prompt tokens: the chunks were in the prompt");

            // A question that shares no word with the knowledge base is served as it came.
            await client.CompleteChatAsync([new UserChatMessage("zzz qqq")], new ChatCompletionOptions { MaxOutputTokenCount = 2 });
            var (after, _) = await http.FieldData(0);
            var plain = after.Single(e => e.Messages.Any(m => m.Content == "zzz qqq"));
            Assert.Equal(["user", "assistant"], plain.Messages.Select(m => m.Role));
            Assert.Empty(plain.Metadata.Sampling!["retrieved_chunks"].EnumerateArray());
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }

    [Fact]
    public void A_missing_or_stale_index_is_one_line_at_start()
    {
        using var dir = new TempDir();
        string model = WriteModel(dir);
        string file = WriteConfig(dir, model);
        var e = Assert.Throws<AgentConfigException>(() => AgentConfig.Load(file));
        Assert.Matches(@"agent\.toml:\d+:\d+: retrieval\.index: .*kb\.etidx: no such knowledge index", e.Message);
        Assert.DoesNotContain('\n', e.Message);

        WriteIndex(dir, model);
        AgentConfig.Load(file);
        File.AppendAllText(Path.Combine(dir.File("docs"), "RouterX.md"), "\n## Colours\n\nTeal.\n");
        e = Assert.Throws<AgentConfigException>(() => AgentConfig.Load(file));
        Assert.Contains("retrieval.index: ", e.Message);
        Assert.Contains("stale knowledge index: " + Path.Combine(dir.File("docs"), "RouterX.md") + " changed since it was built", e.Message);

        File.WriteAllText(Path.Combine(dir.Path, "agent.toml"), File.ReadAllText(file).Replace("max_context_tokens = 400", "max_context_tokens = 1024", StringComparison.Ordinal));
        e = Assert.Throws<AgentConfigException>(() => AgentConfig.Load(file));
        Assert.Contains("retrieval.max_context_tokens: 1024 leaves no room in model.context (1024)", e.Message);
    }

    [Fact]
    public async Task An_index_built_for_another_tokenizer_fails_the_model_load_in_one_line()
    {
        using var dir = new TempDir();
        string model = WriteModel(dir);
        WriteIndex(dir, model, text => text.Split(' ').Select(w => w.Length).ToArray());
        var (app, address) = await Start(AgentConfig.Load(WriteConfig(dir, model)));
        try
        {
            var host = app.Services.GetRequiredService<ModelHost>();
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (host.State.Status == "loading" && DateTime.UtcNow < deadline) await Task.Delay(50);
            Assert.Equal("error", host.State.Status);
            Assert.StartsWith($"{dir.File("kb.etidx")}: stale knowledge index: built for another tokenizer", host.State.Error);
            using var anonymous = new HttpClient { BaseAddress = address };
            using var health = await anonymous.GetAsync("/health");
            Assert.Equal(503, (int)health.StatusCode);
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }
}
