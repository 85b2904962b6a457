using System.Text.Json;
using EdgeTune.Agent.Serving;
using EdgeTune.Models.Chat;

namespace EdgeTune.Agent.Api;

/// <summary>A parsed OpenAI request (chat or plain completion); every field checked with a 400 for what is wrong.</summary>
internal sealed record CompletionRequest(
    string? Model, IReadOnlyList<ChatMessage>? Messages, string? Prompt, bool Stream, int? MaxTokens,
    float Temperature, float TopP, uint? Seed, IReadOnlyList<string> Stop, bool LogOptOut)
{
    public static async Task<JsonDocument> ReadJsonAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        JsonDocument document;
        try
        {
            document = await JsonDocument.ParseAsync(request.Body, default, cancellationToken).ConfigureAwait(false);
        }
        catch (JsonException e)
        {
            throw new ApiException(400, $"the request body is not valid JSON ({e.Message})", code: "invalid_json");
        }
        catch (ArgumentException e)
        {
            throw new ApiException(400, $"the request body is not valid JSON ({e.Message})", code: "invalid_json");
        }
        catch (Microsoft.AspNetCore.Http.BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw new ApiException(413, "the request body is larger than server.max_body_bytes", code: "request_too_large");
        }
        // The parser checks strings' UTF-8 only when they are read: read them all now, so invalid bytes inside a
        // string are a 400 here rather than an exception wherever a handler happens to read that string.
        try
        {
            CheckStrings(document.RootElement);
        }
        catch (InvalidOperationException e) when (e.InnerException is System.Text.DecoderFallbackException)
        {
            document.Dispose();
            throw new ApiException(400, "the request body is not valid JSON (a string is not valid UTF-8)", code: "invalid_json");
        }
        return document;
    }

    private static void CheckStrings(JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.String:
                _ = element.GetString();
                break;
            case JsonValueKind.Array:
                foreach (var item in element.EnumerateArray()) CheckStrings(item);
                break;
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                {
                    _ = property.Name;
                    CheckStrings(property.Value);
                }
                break;
        }
    }

    public static CompletionRequest Parse(JsonElement root, bool chat)
    {
        if (root.ValueKind != JsonValueKind.Object) throw new ApiException(400, "the request body must be a JSON object", code: "invalid_json");
        string? model = OptionalString(root, "model");
        List<ChatMessage>? messages = null;
        string? prompt = null;
        if (chat)
        {
            if (!root.TryGetProperty("messages", out var m) || m.ValueKind != JsonValueKind.Array || m.GetArrayLength() == 0)
                throw Invalid("messages", "'messages' must be a non-empty array");
            messages = [];
            foreach (var item in m.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.Object) throw Invalid("messages", "each message must be an object");
                string role = OptionalString(item, "role") ?? throw Invalid("messages", "each message needs a 'role'");
                if (role is not ("system" or "user" or "assistant" or "developer")) throw Invalid("messages", $"unsupported role '{role}'");
                messages.Add(new ChatMessage(role == "developer" ? "system" : role, Content(item)));
            }
        }
        else
        {
            if (!root.TryGetProperty("prompt", out var p)) throw Invalid("prompt", "'prompt' is required");
            prompt = p.ValueKind switch
            {
                JsonValueKind.String => p.GetString()!,
                JsonValueKind.Array when p.GetArrayLength() == 1 && p[0].ValueKind == JsonValueKind.String => p[0].GetString()!,
                _ => throw Invalid("prompt", "'prompt' must be a string"),
            };
        }
        bool stream = OptionalBool(root, "stream") ?? false;
        int? maxTokens = OptionalInt(root, "max_completion_tokens") ?? OptionalInt(root, "max_tokens");
        if (maxTokens is < 1) throw Invalid(root.TryGetProperty("max_completion_tokens", out _) ? "max_completion_tokens" : "max_tokens", $"max_tokens must be at least 1 (got {maxTokens})");
        float temperature = (float)(OptionalNumber(root, "temperature") ?? 1.0);
        if (temperature is < 0 or > 2) throw Invalid("temperature", $"temperature must be between 0 and 2 (got {temperature})");
        float topP = (float)(OptionalNumber(root, "top_p") ?? 1.0);
        if (topP is <= 0 or > 1) throw Invalid("top_p", $"top_p must be in (0, 1] (got {topP})");
        uint? seed = null;
        if (root.TryGetProperty("seed", out var s) && s.ValueKind != JsonValueKind.Null)
            seed = s.ValueKind == JsonValueKind.Number && s.TryGetInt64(out long sv) ? unchecked((uint)sv) : throw Invalid("seed", "seed must be an integer");
        var stop = new List<string>();
        if (root.TryGetProperty("stop", out var st))
        {
            if (st.ValueKind == JsonValueKind.String) stop.Add(st.GetString()!);
            else if (st.ValueKind == JsonValueKind.Array)
                foreach (var x in st.EnumerateArray())
                    stop.Add(x.ValueKind == JsonValueKind.String ? x.GetString()! : throw Invalid("stop", "stop must be a string or an array of strings"));
            else if (st.ValueKind != JsonValueKind.Null) throw Invalid("stop", "stop must be a string or an array of strings");
            if (stop.Count > 4) throw Invalid("stop", "at most 4 stop sequences");
        }
        // Per-request opt-out of the field log: "store": false (OpenAI's own flag) or metadata.edgetune_log = "false".
        bool optOut = OptionalBool(root, "store") == false
            || (root.TryGetProperty("metadata", out var md) && md.ValueKind == JsonValueKind.Object && md.TryGetProperty("edgetune_log", out var lg) && lg.ValueKind == JsonValueKind.String && lg.GetString() == "false");
        return new CompletionRequest(model, messages, prompt, stream, maxTokens, temperature, topP, seed, stop, optOut);
    }

    private static string Content(JsonElement message)
    {
        if (!message.TryGetProperty("content", out var c) || c.ValueKind == JsonValueKind.Null) return "";
        if (c.ValueKind == JsonValueKind.String) return c.GetString()!;
        if (c.ValueKind == JsonValueKind.Array)
        {
            var parts = new List<string>();
            foreach (var part in c.EnumerateArray())
            {
                if (part.ValueKind == JsonValueKind.Object && OptionalString(part, "type") == "text" && OptionalString(part, "text") is { } t) parts.Add(t);
                else throw Invalid("messages", "only text content parts are supported");
            }
            return string.Concat(parts);
        }
        throw Invalid("messages", "message content must be a string or an array of text parts");
    }

    private static ApiException Invalid(string param, string message) => new(400, message, code: "invalid_value", param: param);

    private static string? OptionalString(JsonElement e, string name) =>
        !e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null ? null
        : v.ValueKind == JsonValueKind.String ? v.GetString() : throw Invalid(name, $"'{name}' must be a string");

    private static bool? OptionalBool(JsonElement e, string name) =>
        !e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null ? null
        : v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : throw Invalid(name, $"'{name}' must be true or false");

    private static int? OptionalInt(JsonElement e, string name) =>
        !e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null ? null
        : v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) ? i : throw Invalid(name, $"'{name}' must be an integer");

    private static double? OptionalNumber(JsonElement e, string name) =>
        !e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null ? null
        : v.ValueKind == JsonValueKind.Number ? v.GetDouble() : throw Invalid(name, $"'{name}' must be a number");
}
