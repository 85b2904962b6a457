using System.CommandLine;
using System.Text.Encodings.Web;
using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Formats.Gguf;
using EdgeTune.Models.Adapters;
using EdgeTune.Models.Chat;
using EdgeTune.Models.Generation;
using EdgeTune.Models.Reference;

namespace EdgeTune.Cli.Commands;

internal static class GenerateCommand
{
    public static Command Create(CliConsole console)
    {
        var model = new Option<string>("--model") { Description = "A .gguf file, or a Hugging Face folder (config.json, *.safetensors, tokenizer.json)", Required = true };
        var adapter = new Option<string?>("--adapter") { Description = "A LoRA adapter merged into the weights: a PEFT folder (adapter_config.json, adapter_model.safetensors) or a GGUF adapter" };
        var prompt = new Option<string>("--prompt") { Description = "The prompt text", Required = true };
        var chat = new Option<bool>("--chat") { Description = "Render [system, user] with the model's chat template (llama.cpp's engine) and the assistant header" };
        var system = new Option<string?>("--system") { Description = "System message (with --chat)" };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Most tokens to generate", DefaultValueFactory = _ => 128 };
        maxTokens.Validators.Add(r => { if (r.GetValueOrDefault<int>() < 1) r.AddError("--max-tokens must be 1 or more"); });
        var temperature = new Option<double>("--temperature") { Description = "Sampling temperature; 0 is greedy (argmax)", DefaultValueFactory = _ => 0.8 };
        temperature.Validators.Add(r => { double t = r.GetValueOrDefault<double>(); if (!(t >= 0) || double.IsInfinity(t)) r.AddError("--temperature must be 0 or more"); });
        var topP = new Option<double>("--top-p") { Description = "Nucleus sampling: keep the most probable tokens up to this probability mass", DefaultValueFactory = _ => 0.95 };
        topP.Validators.Add(r => { double p = r.GetValueOrDefault<double>(); if (!(p > 0 && p <= 1)) r.AddError("--top-p must be in (0, 1]"); });
        var seed = new Option<ulong?>("--seed") { Description = "Random seed: the same seed gives the same tokens (default: a random seed)" };
        var json = new Option<bool>("--json") { Description = "Print prompt_ids, generated_ids, text and stop_reason as JSON instead of streaming text" };

        var command = new Command("generate",
            "Generate text with EdgeTune's own engine (the reference forward: plain CPU, float32, recomputing the whole sequence " +
            "for every token since it has no KV cache yet, so it is slow beyond tiny models; the fast kernels will replace it).\n" +
            "Stops at --max-tokens, at the context length, or at an end-of-generation token (EOS, <|eot_id|>, <|im_end|>, ...).\n\n" +
            "Examples:\n  edgetune generate --model model.gguf --prompt \"Once upon a time\" --temperature 0 --max-tokens 32\n" +
            "  edgetune generate --model ./Llama-3.2-1B-Instruct --adapter ./my-lora --chat --system \"Be terse.\" --prompt \"Hi\" --seed 42")
        {
            model, adapter, prompt, chat, system, maxTokens, temperature, topP, seed, json,
        };
        command.SetAction((parse, cancellationToken) =>
        {
            if (parse.GetValue(system) is not null && !parse.GetValue(chat))
            {
                console.Error.WriteLine("edgetune: --system needs --chat (without it the prompt is used as is)");
                return Task.FromResult(CliApp.Usage);
            }
            string path = parse.GetValue(model)!;
            if (!Directory.Exists(path) && !File.Exists(path)) throw new EdgeTuneException($"{path}: no such file or folder");
            var (tokenizer, _) = TokenizeCommand.Load(path);
            var lora = parse.GetValue(adapter) is { } adapterPath ? LoraAdapter.Open(adapterPath) : null;
            var reference = ReferenceModel.Open(path, ReferencePrecision.Float32, lora);

            string text = parse.GetValue(prompt)!;
            IReadOnlyList<int> promptIds;
            if (parse.GetValue(chat))
            {
                var template = Directory.Exists(path) ? ChatTemplate.FromHuggingFace(path) : TemplateOfGguf(path);
                var messages = new List<ChatMessage>();
                if (parse.GetValue(system) is { } s) messages.Add(new ChatMessage("system", s));
                messages.Add(new ChatMessage("user", text));
                // As llama.cpp's server does: BOS per the tokenizer, and the template's markers parsed as special tokens.
                promptIds = tokenizer.Encode(template.Apply(messages, addGenerationPrompt: true), addSpecialTokens: true, parseSpecial: true);
            }
            else
            {
                promptIds = tokenizer.Encode(text);
            }
            if (promptIds.Count == 0) throw new EdgeTuneException("the prompt encodes to no tokens; give some text");
            // A tokenizer larger than the embedding table (a mismatched tokenizer.json) would index past it.
            if (promptIds.Max() is int top && top >= reference.Config.VocabSize)
                throw new EdgeTuneException($"{path}: the tokenizer gives id {top}, but the model has {reference.Config.VocabSize} embeddings (tokenizer and weights do not match)");

            var sampler = new Sampler(parse.GetValue(temperature), parse.GetValue(topP), parse.GetValue(seed) ?? (ulong)Random.Shared.NextInt64());
            var endIds = Generator.EndIds(tokenizer, reference.Config.EosTokenIds);
            bool asJson = parse.GetValue(json);
            var result = Generator.Run(reference, tokenizer, promptIds, sampler, parse.GetValue(maxTokens), endIds,
                asJson ? null : piece => { console.Out.Write(piece); console.Out.Flush(); }, cancellationToken);

            if (asJson)
            {
                var report = new
                {
                    prompt_ids = result.PromptIds,
                    generated_ids = result.GeneratedIds,
                    text = result.Text,
                    stop_reason = result.StopReason.ToString().ToLowerInvariant(),
                };
                console.Out.WriteLine(JsonSerializer.Serialize(report, new JsonSerializerOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, WriteIndented = true }));
            }
            else console.Out.WriteLine();
            return Task.FromResult(CliApp.Success);
        });
        return command;
    }

    private static ChatTemplate TemplateOfGguf(string path)
    {
        using var file = GgufFile.Open(path);
        return ChatTemplate.FromGguf(file.Metadata, path);
    }
}
