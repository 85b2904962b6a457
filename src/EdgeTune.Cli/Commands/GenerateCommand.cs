using System.CommandLine;
using System.Text.Encodings.Web;
using System.Text.Json;
using EdgeTune.Core;
using EdgeTune.Inference;
using EdgeTune.Inference.LlamaCpp;
using EdgeTune.Inference.Reference;
using EdgeTune.Models.Chat;

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
        var runtime = new Option<string>("--runtime") { Description = "reference (EdgeTune's own forward: GGUF or Hugging Face folder, PEFT or GGUF adapter merged) or llama.cpp (GGUF, GGUF adapter)", DefaultValueFactory = _ => "reference" };
        runtime.AcceptOnlyFromAmong("reference", "llama.cpp");
        var json = new Option<bool>("--json") { Description = "Print prompt_ids, generated_ids, text and stop_reason as JSON instead of streaming text" };

        var command = new Command("generate",
            "Generate text through EdgeTune.Inference: the reference forward by default (plain CPU, float32, recomputing the whole " +
            "sequence for every token, so slow beyond tiny models) or llama.cpp (--runtime llama.cpp).\n" +
            "Stops at --max-tokens, at the context length, at an end-of-generation token (EOS, <|eot_id|>, <|im_end|>, ...), or at the " +
            "chat template's end-of-turn text when the vocabulary has that marker only as text (stop_reason end_of_turn; the marker is cut).\n\n" +
            "Examples:\n  edgetune generate --model model.gguf --prompt \"Once upon a time\" --temperature 0 --max-tokens 32\n" +
            "  edgetune generate --model ./Llama-3.2-1B-Instruct --adapter ./my-lora --chat --system \"Be terse.\" --prompt \"Hi\" --seed 42")
        {
            model, adapter, prompt, chat, system, maxTokens, temperature, topP, seed, runtime, json,
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
            string? adapterPath = parse.GetValue(adapter);
            bool llama = parse.GetValue(runtime) == "llama.cpp";
            if (llama && Directory.Exists(path)) throw new EdgeTuneException($"{path}: llama.cpp runs GGUF files; convert the folder first (edgetune convert)");
            IInferenceRuntime engine = llama ? LlamaCppRuntime.Default : ReferenceRuntime.Instance;
            using var loaded = engine.Open(new ModelOptions { Path = path, Adapters = adapterPath is null ? [] : [adapterPath], Exact = true }, cancellationToken);

            string text = parse.GetValue(prompt)!;
            int[] promptIds;
            if (parse.GetValue(chat))
            {
                var messages = new List<ChatMessage>();
                if (parse.GetValue(system) is { } s) messages.Add(new ChatMessage("system", s));
                messages.Add(new ChatMessage("user", text));
                // As llama.cpp's server does: BOS per the tokenizer, and the template's markers parsed as special tokens.
                promptIds = loaded.Tokenize(loaded.ApplyChatTemplate(messages), addSpecial: true, parseSpecial: true);
            }
            else
            {
                promptIds = loaded.Tokenize(text);
            }
            if (promptIds.Length == 0) throw new EdgeTuneException("the prompt encodes to no tokens; give some text");

            bool asJson = parse.GetValue(json);
            int room = Math.Max(0, loaded.ContextSize - promptIds.Length);
            var sampling = new SamplingSettings(Math.Min(parse.GetValue(maxTokens), room), (float)parse.GetValue(temperature), (float)parse.GetValue(topP),
                parse.GetValue(seed) ?? (ulong)Random.Shared.NextInt64(), []);
            var result = loaded.Generate(promptIds, sampling,
                asJson ? null : piece => { console.Out.Write(piece); console.Out.Flush(); }, cancellationToken);
            var generated = result.Tokens ?? [];
            string stopReason = result.FinishReason == "length"
                ? promptIds.Length + generated.Count >= loaded.ContextSize ? "context" : "length"
                : generated.Count > 0 && loaded.Run(session => session.IsEndOfGeneration(generated[^1]), cancellationToken) ? "eos" : "end_of_turn";

            if (asJson)
            {
                var report = new
                {
                    prompt_ids = promptIds,
                    generated_ids = generated,
                    text = result.Text,
                    stop_reason = stopReason,
                };
                console.Out.WriteLine(JsonSerializer.Serialize(report, new JsonSerializerOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, WriteIndented = true }));
            }
            else console.Out.WriteLine();
            return Task.FromResult(CliApp.Success);
        });
        return command;
    }
}
