using EdgeTune.Inference;
using System.Diagnostics;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using EdgeTune.Core;
using EdgeTune.Data;
using EdgeTune.Models.Chat;
using EdgeTune.Evaluation.Statistics;
using EdgeTune.Retrieval;

namespace EdgeTune.Evaluation.Runners;

/// <summary>One test example: the conversation up to the answer, the reference answer, its label and where it was read.</summary>
public sealed record EvalItem(string Id, IReadOnlyList<ChatMessage> Prompt, string Reference, string? Label, string Source)
{
    public static EvalItem From(DatasetExample e)
    {
        int last = -1;
        for (int i = e.Messages.Count - 1; i >= 0; i--) if (e.Messages[i].Role == "assistant") { last = i; break; }
        var prompt = last < 0 ? e.Messages : e.Messages.Take(last).ToList();
        return new EvalItem(TextHash.Hex(e.Hash), prompt, e.Answer, e.Label, $"{e.File}:{e.Line}");
    }
}

/// <summary>A runner's answer to one example, as stored in the run folder's answers JSONL.</summary>
public sealed record RunnerAnswer
{
    [JsonPropertyName("id")] public required string Id { get; init; }
    [JsonPropertyName("source")] public string Source { get; init; } = "";
    [JsonPropertyName("answer")] public required string Text { get; init; }
    [JsonPropertyName("reference")] public string Reference { get; init; } = "";
    [JsonPropertyName("label")] public string? Label { get; init; }
    /// <summary>The rendered prompt as the model saw it (chat template applied).</summary>
    [JsonPropertyName("prompt")] public string Prompt { get; init; } = "";
    /// <summary>The last user turn: what a human reviewer reads.</summary>
    [JsonPropertyName("question")] public string Question { get; init; } = "";
    [JsonPropertyName("prompt_tokens")] public int PromptTokens { get; init; }
    [JsonPropertyName("generated_tokens")] public int GeneratedTokens { get; init; }
    [JsonPropertyName("seconds")] public double Seconds { get; init; }
    /// <summary>Sum of −log p over the reference answer's tokens (teacher-forced), when scored.</summary>
    [JsonPropertyName("reference_nll")] public double? ReferenceNll { get; init; }
    [JsonPropertyName("reference_tokens")] public int ReferenceTokens { get; init; }
    /// <summary>Retrieval runners: the ids shown to the model (training example ids or knowledge chunk ids), most relevant first.</summary>
    [JsonPropertyName("retrieved"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public IReadOnlyList<string>? Retrieved { get; init; }
    /// <summary>Retrieval runners: ids retrieved but left out because the prompt would not fit the context budget.</summary>
    [JsonPropertyName("retrieved_over_budget"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public IReadOnlyList<string>? RetrievedOverBudget { get; init; }
}

public sealed record RunnerProgress(string Runner, int Done, int Total);

/// <summary>How a runner turns a test example into the conversation it shows the model.</summary>
public sealed record PromptStyle
{
    /// <summary>Prepended as the system turn when the example has none.</summary>
    public string? SystemPrompt { get; init; }
    /// <summary>Worked examples rendered as previous user/assistant turns (after the system turn).</summary>
    public IReadOnlyList<DatasetExample> Shots { get; init; } = [];
    /// <summary>Knowledge chunks placed in the system turn (as the agent places them: <see cref="KnowledgePrompt"/>).</summary>
    public IReadOnlyList<KnowledgeChunk> Knowledge { get; init; } = [];
    /// <summary>Per-example shots or chunks, chosen for each test prompt (retrieved few-shot, rag).</summary>
    public PromptRetriever? Retriever { get; init; }

    /// <summary>This style with retrieved shots and chunks added.</summary>
    public PromptStyle With(IReadOnlyList<Retrieved> found) => this with
    {
        Shots = [.. Shots, .. found.Where(r => r.Shot is not null).Select(r => r.Shot!)],
        Knowledge = [.. Knowledge, .. found.Where(r => r.Chunk is not null).Select(r => r.Chunk!)],
    };

    public IReadOnlyList<ChatMessage> Messages(EvalItem item)
    {
        var messages = new List<ChatMessage>();
        var system = item.Prompt.FirstOrDefault(m => m.Role == "system")?.Content ?? SystemPrompt;
        if (Knowledge.Count > 0) system = KnowledgePrompt.System(system, Knowledge);
        if (system is not null) messages.Add(new ChatMessage("system", system));
        foreach (var shot in Shots)
            foreach (var m in shot.Messages)
                if (m.Role != "system") messages.Add(m);
        messages.AddRange(item.Prompt.Where(m => m.Role != "system"));
        return messages;
    }

    /// <summary>
    /// k examples of the training split, chosen deterministically: the examples in hash order, shuffled by a
    /// generator seeded with <paramref name="seed"/>; the first k with an answer. Every test prompt gets the same shots.
    /// </summary>
    public static IReadOnlyList<DatasetExample> DrawShots(IEnumerable<DatasetExample> train, int k, ulong seed)
    {
        var pool = train.Where(e => e.Answer.Length > 0).OrderBy(e => e.Hash).ToList();
        new SeededRandom(seed).Shuffle(pool);
        return pool.Take(k).ToList();
    }
}

/// <summary>
/// A named way of answering the test split: an engine, a chat template and a prompt style. Answers are greedy and
/// appended to <c>answers-NAME.jsonl</c> in the run folder as they come, so an interrupted run resumes where it
/// stopped (answers already there, by example id, are not recomputed).
/// </summary>
public sealed class EvalRunner(string name, IInferenceModel engine, ChatTemplate template, PromptStyle style, int maxNewTokens) : IDisposable
{
    private static readonly JsonSerializerOptions JsonLine = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public string Name { get; } = name;
    public IInferenceModel Engine { get; } = engine;
    public string Description => Engine.Description + (style.Shots.Count > 0 ? $", {style.Shots.Count}-shot" : "") +
                                 (style.Retriever is { } r ? $", {r.Description}" : "");

    public string Render(EvalItem item) => template.Apply(style.Messages(item), addGenerationPrompt: true);

    /// <summary>
    /// The prompt for an example: with a retriever, the most relevant shots or chunks that fit the budget (the context
    /// less the answer's room, <paramref name="maxNewTokens"/> up to half the context), dropping the least relevant first.
    /// </summary>
    private (string Text, int[] Ids, IReadOnlyList<string>? Shown, IReadOnlyList<string>? Dropped) Prompt(EvalItem item)
    {
        if (style.Retriever is not { } retriever)
        {
            string plain = Render(item);
            return (plain, Engine.EncodePrompt(plain), null, null);
        }
        var found = retriever.Retrieve(item);
        int budget = Engine.ContextSize - Math.Min(maxNewTokens, Engine.ContextSize / 2);
        for (int n = found.Count; ; n--)
        {
            var shown = found.Take(n).ToList();
            string text = template.Apply((style with { Retriever = null }).With(shown).Messages(item), addGenerationPrompt: true);
            int[] ids = Engine.EncodePrompt(text);
            if (ids.Length <= budget || n == 0)
                return (text, ids, shown.Select(r => r.Id).ToList(), found.Skip(n).Select(r => r.Id).ToList());
        }
    }

    /// <summary>Answer one example (and score its reference answer when <paramref name="scoreReference"/>).</summary>
    public RunnerAnswer Answer(EvalItem item, bool scoreReference, CancellationToken cancellationToken)
    {
        var (text, prompt, shown, dropped) = Prompt(item);
        if (prompt.Length + 1 > Engine.ContextSize)
            throw new EdgeTuneException($"{item.Source}: the {Name} prompt is {prompt.Length} tokens, over the context of {Engine.ContextSize}" +
                                        (style.Shots.Count > 0 ? " (lower [eval] few_shot)" : ""));
        var clock = Stopwatch.StartNew();
        var (answer, tokens) = Engine.GenerateGreedy(prompt, Math.Min(maxNewTokens, Engine.ContextSize - prompt.Length), cancellationToken);
        double seconds = clock.Elapsed.TotalSeconds;
        double? nll = null;
        int refTokens = 0;
        if (scoreReference)
        {
            // The answer as it appears after the prompt (tokenisers merge across the boundary differently from a
            // standalone encoding); the plain encoding only when the prompt's ids are not a prefix of the whole.
            int[] whole = Engine.EncodePrompt(text + item.Reference);
            int[] reference = whole.Length > prompt.Length && whole.AsSpan(0, prompt.Length).SequenceEqual(prompt)
                ? whole[prompt.Length..]
                : Engine.EncodePlain(item.Reference);
            int[] all = [.. prompt, .. reference];
            if (reference.Length > 0 && all.Length <= Engine.ContextSize)
            {
                nll = -Engine.LogProbs(all, prompt.Length).Sum();
                refTokens = reference.Length;
            }
        }
        return new RunnerAnswer
        {
            Id = item.Id, Source = item.Source, Text = answer, Reference = item.Reference, Label = item.Label, Prompt = text,
            Question = item.Prompt.LastOrDefault(m => m.Role == "user")?.Content ?? "",
            PromptTokens = prompt.Length, GeneratedTokens = tokens, Seconds = seconds, ReferenceNll = nll, ReferenceTokens = refTokens,
            Retrieved = shown, RetrievedOverBudget = dropped,
        };
    }

    /// <summary>Answers for every item, resuming from <paramref name="answersFile"/> and appending to it.</summary>
    public IReadOnlyList<RunnerAnswer> Run(IReadOnlyList<EvalItem> items, string answersFile, bool scoreReference,
        IProgress<RunnerProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(answersFile))!);
        // Answers resume only for the same runner: model, adapter, shots, template and length limit.
        string key = $"{Description}|{TextHash.Hex(TextHash.Of(template.Source))}|{maxNewTokens}|{scoreReference}|" +
                     string.Join(",", style.Shots.Select(s => TextHash.Hex(s.Hash))) + "|" + style.SystemPrompt + "|" + style.Retriever?.Key;
        string keyFile = answersFile + ".key";
        if (!File.Exists(keyFile) || File.ReadAllText(keyFile) != key)
        {
            File.Delete(answersFile);
            File.WriteAllText(keyFile, key);
        }
        var done = ReadAnswers(answersFile).GroupBy(a => a.Id).ToDictionary(g => g.Key, g => g.Last());
        var result = new List<RunnerAnswer>(items.Count);
        using var writer = new StreamWriter(answersFile, append: true);
        int n = 0;
        foreach (var item in items)
        {
            if (!done.TryGetValue(item.Id, out var answer))
            {
                answer = Answer(item, scoreReference, cancellationToken);
                writer.WriteLine(JsonSerializer.Serialize(answer, JsonLine));
                writer.Flush();
            }
            result.Add(answer);
            progress?.Report(new RunnerProgress(Name, ++n, items.Count));
        }
        return result;
    }

    public static IReadOnlyList<RunnerAnswer> ReadAnswers(string file)
    {
        var answers = new List<RunnerAnswer>();
        if (!File.Exists(file)) return answers;
        var lines = File.ReadAllLines(file);
        for (int line = 1; line <= lines.Length; line++)
        {
            string text = lines[line - 1];
            if (string.IsNullOrWhiteSpace(text)) continue;
            try
            {
                answers.Add(JsonSerializer.Deserialize<RunnerAnswer>(text) ?? throw new JsonException("null"));
            }
            catch (JsonException e)
            {
                // A line cut short by an interrupted run is the last one: drop it, it will be recomputed.
                if (line == lines.Length) break;
                throw new EdgeTuneException($"{file}:{line}: not an answer record ({e.Message})");
            }
        }
        return answers;
    }

    /// <summary>Perplexity material of a text: sum of −log p and token count, in windows of the context length (BOS first when the tokenizer has one).</summary>
    public static (double Nll, int Tokens) TextNll(IInferenceModel engine, string text)
    {
        int[] ids = engine.EncodePlain(text);
        int window = Math.Max(2, engine.ContextSize - 1);
        double nll = 0;
        int count = 0;
        for (int start = 0; start < ids.Length; start += window)
        {
            var chunk = ids.Skip(start).Take(window).ToArray();
            int[] seq = engine.BosId is int bos ? [bos, .. chunk] : chunk;
            const int from = 1;
            if (seq.Length <= from) continue;
            nll -= engine.LogProbs(seq, from).Sum();
            count += seq.Length - from;
        }
        return (nll, count);
    }

    /// <summary>Disposes the engine; a style's retriever belongs to whoever made it.</summary>
    public void Dispose() => Engine.Dispose();
}
