using System.Text.Json;
using System.Text.Json.Nodes;
using EdgeTune.Models.Architectures;

namespace EdgeTune.Export.Onnx;

/// <summary>
/// genai_config.json as ONNX Runtime GenAI's model builder writes it (builders/base.py make_genai_config):
/// the decoder's file, sizes and input/output names, the special token ids and greedy search defaults.
/// </summary>
internal static class GenAiConfig
{
    public static JsonObject Create(ModelConfig c, string type, int bos, IReadOnlyList<int> eos, string modelFile)
    {
        return new JsonObject
        {
            ["model"] = new JsonObject
            {
                ["bos_token_id"] = bos,
                ["context_length"] = c.ContextLength,
                ["decoder"] = new JsonObject
                {
                    ["session_options"] = new JsonObject { ["log_id"] = "onnxruntime-genai", ["provider_options"] = new JsonArray() },
                    ["filename"] = modelFile,
                    ["head_size"] = c.HeadDim,
                    ["hidden_size"] = c.HiddenSize,
                    ["inputs"] = new JsonObject
                    {
                        ["input_ids"] = "input_ids",
                        ["attention_mask"] = "attention_mask",
                        ["past_key_names"] = "past_key_values.%d.key",
                        ["past_value_names"] = "past_key_values.%d.value",
                    },
                    ["outputs"] = new JsonObject
                    {
                        ["logits"] = "logits",
                        ["present_key_names"] = "present.%d.key",
                        ["present_value_names"] = "present.%d.value",
                    },
                    ["num_attention_heads"] = c.Heads,
                    ["num_hidden_layers"] = c.Layers,
                    ["num_key_value_heads"] = c.KvHeads,
                },
                ["eos_token_id"] = eos.Count == 1 ? JsonValue.Create(eos[0]) : new JsonArray(eos.Select(e => (JsonNode)e).ToArray()),
                ["pad_token_id"] = eos[0],
                ["type"] = type,
                ["vocab_size"] = c.VocabSize,
            },
            ["search"] = new JsonObject
            {
                ["diversity_penalty"] = 0.0,
                ["do_sample"] = false,
                ["early_stopping"] = true,
                ["length_penalty"] = 1.0,
                ["max_length"] = c.ContextLength,
                ["min_length"] = 0,
                ["no_repeat_ngram_size"] = 0,
                ["num_beams"] = 1,
                ["num_return_sequences"] = 1,
                ["past_present_share_buffer"] = true,
                ["repetition_penalty"] = 1.0,
                ["temperature"] = 1.0,
                ["top_k"] = 50,
                ["top_p"] = 1.0,
            },
        };
    }

    public static void Write(string path, JsonObject config) =>
        File.WriteAllText(path, config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
}
