using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace EdgeTune.Agent.Tests;

/// <summary>
/// Mutated HTTP/1.1 requests against the agent, written byte for byte on a socket (so the request line, headers,
/// framing and body can all be broken), each answered or refused on its own connection. Seeded: the same seed
/// sends the same requests. Shared by the fuzz test (a small slice) and the benchmark's <c>fuzz</c> command (10,000+).
/// </summary>
public sealed class HttpFuzzer(Uri server, string token, int seed)
{
    /// <summary>What one request got back (Status 0: the connection closed with no response).</summary>
    /// <param name="Incomplete">The request ended before its declared body did (the client hung up mid-request):
    /// the server may answer 400 or just close.</param>
    public sealed record Outcome(string Request, int Status, string Headers, string Body, bool Incomplete = false);

    /// <summary>A request's bytes; <paramref name="Incomplete"/> when its body is shorter than its framing says.</summary>
    public sealed record Request(byte[] Bytes, bool Incomplete);

    private static readonly (string Method, string Path, string? Body)[] Seeds =
    [
        ("POST", "/v1/chat/completions", """{"model":"tiny","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi there"}],"max_tokens":2,"temperature":0}"""),
        ("POST", "/v1/chat/completions", """{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":2,"stream":true}"""),
        ("POST", "/v1/completions", """{"model":"tiny","prompt":"hello","max_tokens":2,"temperature":0.5,"top_p":0.9,"seed":3,"stop":["x"]}"""),
        ("POST", "/v1/feedback", """{"completion_id":"chatcmpl-0","rating":1,"corrected":"better","comment":"c"}"""),
        ("POST", "/v1/field-data/ack", """{"through":0}"""),
        ("POST", "/v1/adapters/active", """{"adapter":"support"}"""),
        ("GET", "/v1/field-data?after=0&limit=3", null),
        ("GET", "/v1/models", null),
        ("GET", "/v1/adapters", null),
        ("GET", "/metrics", null),
        ("GET", "/health", null),
    ];

    private static readonly string[] Methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "get", "P0ST", "GE T", ""];
    private static readonly string[] Versions = ["HTTP/1.0", "HTTP/2.0", "HTTP/9.9", "HTTP/1.1 extra", "HTTPS/1.1", ""];
    private static readonly string[] ContentTypes = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json; charset=latin1", "", "\u00ff"];

    private readonly Random _random = new(seed);

    /// <summary>The next mutated request.</summary>
    public Request Next()
    {
        var r = _random;
        var (method, path, body) = Seeds[r.Next(Seeds.Length)];
        byte[] content = body is null ? [] : Encoding.UTF8.GetBytes(body);
        string version = "HTTP/1.1";
        var headers = new List<(string Name, string Value)>
        {
            ("Host", $"{server.Host}:{server.Port}"),
            ("Authorization", "Bearer " + token),
            ("Connection", "close"),
        };
        if (body is not null) headers.Add(("Content-Type", "application/json"));
        bool chunked = false;
        string? declaredLength = null;
        int mutations = 1 + r.Next(3);
        for (int m = 0; m < mutations; m++)
        {
            switch (r.Next(16))
            {
                case 0: method = Methods[r.Next(Methods.Length)]; break;
                case 1: path = MutatePath(path); break;
                case 2: version = Versions[r.Next(Versions.Length)]; break;
                case 3: MutateAuthorization(headers); break;
                case 4: Replace(headers, "Content-Type", ContentTypes[r.Next(ContentTypes.Length)]); break;
                case 5: declaredLength = r.Next(4) switch { 0 => "-1", 1 => "abc", 2 => "99999999999999999999", _ => (content.Length + 1 + r.Next(1000)).ToString(System.Globalization.CultureInfo.InvariantCulture) }; break;
                case 6: chunked = true; break;
                case 7: headers.Add(r.Next(2) == 0 ? ("X-Fuzz", new string('h', 1 + r.Next(70_000))) : ("X-Fuzz-" + r.Next(1000), "\u0001\u007f")); break;
                case 8: headers.Add(("Content-Type", "application/json")); headers.Add(("Authorization", "Bearer other")); break;
                default: content = MutateBody(content); break;
            }
        }
        var request = new StringBuilder();
        request.Append(method).Append(' ').Append(path).Append(' ').Append(version).Append("\r\n");
        foreach (var (name, value) in headers) request.Append(name).Append(": ").Append(value).Append("\r\n");
        if (chunked) request.Append("Transfer-Encoding: chunked\r\n");
        else if (content.Length > 0 || declaredLength is not null)
            request.Append("Content-Length: ").Append(declaredLength ?? content.Length.ToString(System.Globalization.CultureInfo.InvariantCulture)).Append("\r\n");
        request.Append("\r\n");
        var bytes = new List<byte>(Encoding.UTF8.GetBytes(request.ToString()));
        bool incomplete;
        if (chunked)
        {
            var (chunks, ended) = Chunk(content);
            bytes.AddRange(chunks);
            incomplete = !ended;
        }
        else
        {
            bytes.AddRange(content);
            incomplete = long.TryParse(declaredLength, out long declared) && declared > content.Length;
        }
        return new Request([.. bytes], incomplete);
    }

    private (List<byte> Bytes, bool Ended) Chunk(byte[] content)
    {
        var r = _random;
        var output = new List<byte>();
        int i = 0;
        while (i < content.Length)
        {
            int n = Math.Min(content.Length - i, 1 + r.Next(64));
            string size = r.Next(20) == 0 ? "zz" : n.ToString("x", System.Globalization.CultureInfo.InvariantCulture);
            output.AddRange(Encoding.ASCII.GetBytes(size + "\r\n"));
            output.AddRange(content.AsSpan(i, n).ToArray());
            output.AddRange("\r\n"u8.ToArray());
            i += n;
        }
        bool ended = r.Next(4) != 0; // else: the stream ends mid-body
        if (ended) output.AddRange("0\r\n\r\n"u8.ToArray());
        return (output, ended);
    }

    private string MutatePath(string path)
    {
        var r = _random;
        return r.Next(9) switch
        {
            0 => path + "/../../etc/passwd",
            1 => path + "%00",
            2 => path + "?after=%zz&limit=" + r.Next(-5, 20_000),
            3 => "/" + new string('a', 1 + r.Next(20_000)),
            4 => path.ToUpperInvariant(),
            5 => path + "?after=" + (r.Next(2) == 0 ? "18446744073709551616" : "-0") + "&after=1",
            6 => "/v1/%E2%82%AC/" + path,
            7 => "*",
            _ => path.Replace("/v1/", "//v1//", StringComparison.Ordinal),
        };
    }

    private void MutateAuthorization(List<(string Name, string Value)> headers)
    {
        string value = _random.Next(6) switch
        {
            0 => "",
            1 => "Bearer",
            2 => "Bearer " + token[..^1],
            3 => "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes("user:" + token)),
            4 => "bearer " + token,
            _ => "Bearer " + token + " ",
        };
        Replace(headers, "Authorization", value);
    }

    private static void Replace(List<(string Name, string Value)> headers, string name, string value)
    {
        headers.RemoveAll(h => h.Name == name);
        if (value.Length > 0) headers.Add((name, value));
    }

    private byte[] MutateBody(byte[] content)
    {
        var r = _random;
        if (content.Length > 0 && r.Next(2) == 0 && MutateJson(content) is { } json) return json;
        var bytes = new List<byte>(content);
        switch (r.Next(7))
        {
            case 0 when bytes.Count > 0: bytes[r.Next(bytes.Count)] ^= (byte)(1 << r.Next(8)); break;
            case 1: bytes.Insert(r.Next(bytes.Count + 1), (byte)r.Next(256)); break;
            case 2 when bytes.Count > 0: bytes.RemoveRange(r.Next(bytes.Count), 1); break;
            case 3 when bytes.Count > 0: bytes = bytes.Take(r.Next(bytes.Count)).ToList(); break; // truncated
            case 4: return Encoding.UTF8.GetBytes(new[] { "[]", "null", "\"text\"", "{", "", "{}", "{\"a\":" + new string('[', 5000) }[r.Next(7)]);
            case 5: return [0xEF, 0xBB, 0xBF, .. content]; // a byte-order mark
            default: bytes.AddRange(new byte[] { 0xC3, 0x28 }); break; // invalid UTF-8
        }
        return [.. bytes];
    }

    // Replaces one value anywhere in the JSON, drops a key, or adds one.
    private byte[]? MutateJson(byte[] content)
    {
        JsonNode? root;
        var nodes = new List<JsonNode>();
        void Walk(JsonNode? n)
        {
            if (n is null) return;
            nodes.Add(n);
            if (n is JsonObject o) foreach (var kv in o) Walk(kv.Value);
            if (n is JsonArray a) foreach (var item in a) Walk(item);
        }
        // An earlier mutation may have left text that parses lazily into trouble (a duplicate key): then mutate bytes instead.
        try
        {
            root = JsonNode.Parse(content);
            if (root is null) return null;
            Walk(root);
        }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException) { return null; }
        var r = _random;
        var target = nodes[r.Next(nodes.Count)];
        JsonNode? replacement = r.Next(14) switch
        {
            0 => null,
            1 => JsonValue.Create(true),
            2 => JsonValue.Create(-1),
            3 => JsonValue.Create(1e308),
            4 => JsonValue.Create(long.MaxValue),
            5 => JsonValue.Create(""),
            6 => JsonValue.Create(new string('x', r.Next(1, 300_000))),
            7 => JsonValue.Create("\ud800"),
            8 => new JsonArray(),
            9 => new JsonObject(),
            10 => JsonValue.Create(0.5),
            11 => JsonValue.Create("1"),
            12 => JsonValue.Create(DeepMarker), // nested arrays, spliced in as text below (deeper than the parser's 64)
            _ => JsonValue.Create(-0.0),
        };
        if (target.Parent is JsonObject parent)
        {
            string key = target.GetPropertyName();
            if (r.Next(4) == 0) parent.Remove(key);
            else parent[key] = replacement;
        }
        else if (target.Parent is JsonArray array)
        {
            array[target.GetElementIndex()] = replacement;
        }
        else if (root is JsonObject top)
        {
            top["unknown_" + r.Next(100)] = replacement;
        }
        int depth = 1 + r.Next(100);
        return Encoding.UTF8.GetBytes(root.ToJsonString().Replace($"\"{DeepMarker}\"", new string('[', depth) + new string(']', depth), StringComparison.Ordinal));
    }

    private const string DeepMarker = "__nested_arrays__";

    /// <summary>Sends one request on its own connection (Connection: close) and reads until the server closes it.</summary>
    public async Task<Outcome> SendAsync(Request request, CancellationToken cancellationToken)
    {
        using var client = new TcpClient();
        await client.ConnectAsync(server.Host, server.Port, cancellationToken);
        var stream = client.GetStream();
        try
        {
            await stream.WriteAsync(request.Bytes, cancellationToken);
            if (request.Incomplete) client.Client.Shutdown(SocketShutdown.Send); // hang up mid-body rather than wait for the server's timeout
        }
        catch (IOException) { } // the server may answer and close before reading everything (413, 431)
        catch (SocketException) { }
        var response = new MemoryStream();
        try { await stream.CopyToAsync(response, cancellationToken); }
        catch (IOException) { } // a reset after a complete answer
        string text = Encoding.UTF8.GetString(response.ToArray());
        string head = Encoding.ASCII.GetString(request.Bytes, 0, Math.Min(request.Bytes.Length, 200));
        int split = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        if (!text.StartsWith("HTTP/1.", StringComparison.Ordinal) || split < 0) return new Outcome(head, 0, "", text, request.Incomplete);
        int status = int.Parse(text.AsSpan(9, 3), System.Globalization.CultureInfo.InvariantCulture);
        string headers = text[..split];
        string body = text[(split + 4)..];
        if (headers.Contains("Transfer-Encoding: chunked", StringComparison.OrdinalIgnoreCase)) body = Dechunk(body);
        return new Outcome(head, status, headers, body, request.Incomplete);
    }

    private static string Dechunk(string body)
    {
        var output = new StringBuilder();
        int i = 0;
        while (i < body.Length)
        {
            int end = body.IndexOf("\r\n", i, StringComparison.Ordinal);
            if (end < 0 || !int.TryParse(body.AsSpan(i, end - i), System.Globalization.NumberStyles.HexNumber, null, out int size) || size == 0) break;
            output.Append(body, end + 2, Math.Min(size, body.Length - end - 2));
            i = end + 2 + size + 2;
        }
        return output.ToString();
    }

    /// <summary>What is wrong with an answer, or null: a 5xx, a stack trace or exception text, a 4xx from the API that
    /// is not an error in OpenAI's shape, a 429 without Retry-After, no answer at all.</summary>
    public static string? Problem(Outcome o)
    {
        if (o.Status == 0) return o.Incomplete ? null : "the connection closed without a response";
        bool head = o.Request.StartsWith("HEAD ", StringComparison.Ordinal); // an answer to HEAD has no body, by HTTP's rules
        // 505 is HTTP's own answer to a request line in an unsupported version (Kestrel's, before the API sees it).
        bool otherVersion = !o.Request.Split("\r\n")[0].EndsWith(" HTTP/1.1", StringComparison.Ordinal) && !o.Request.Split("\r\n")[0].EndsWith(" HTTP/1.0", StringComparison.Ordinal);
        if (o.Status >= 500 && !(o.Status == 505 && otherVersion)) return $"{o.Status} {o.Body[..Math.Min(300, o.Body.Length)]}";
        foreach (var marker in new[] { "   at ", "Exception", ".cs:line", "System." })
            if (o.Body.Contains(marker, StringComparison.Ordinal)) return $"{o.Status} with '{marker}' in the body";
        if (o.Status == 429 && !o.Headers.Contains("Retry-After:", StringComparison.OrdinalIgnoreCase)) return "429 without Retry-After";
        if (o.Status >= 400 && o.Body.Length > 0)
        {
            // Kestrel's own refusals of broken HTTP (bad request line, header too large) carry no body; the API's do, in OpenAI's shape.
            try
            {
                using var doc = JsonDocument.Parse(o.Body);
                var error = doc.RootElement.GetProperty("error");
                if (string.IsNullOrEmpty(error.GetProperty("message").GetString()) || string.IsNullOrEmpty(error.GetProperty("code").GetString()))
                    return $"{o.Status} without an error message and code";
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                return $"{o.Status} whose body is not an OpenAI-shaped error: {o.Body[..Math.Min(200, o.Body.Length)]}";
            }
        }
        else if (!head && o.Status is >= 400 and not (400 or 404 or 405 or 411 or 413 or 414 or 431 or 505))
        {
            return $"{o.Status} without a body";
        }
        return null;
    }

    /// <summary>Sends <paramref name="count"/> requests over <paramref name="concurrency"/> connections at a time;
    /// returns the tally by status and every problem found.</summary>
    /// <param name="only">Send only these request numbers (to reproduce a problem; all are still drawn, so numbers keep their requests).</param>
    public async Task<(SortedDictionary<int, int> ByStatus, List<string> Problems)> RunAsync(int count, int concurrency, TimeSpan perRequest, CancellationToken cancellationToken, ISet<int>? only = null)
    {
        var requests = Enumerable.Range(0, count).Select(_ => Next()).ToArray(); // drawn in order: the seed fixes them
        var byStatus = new SortedDictionary<int, int>();
        var problems = new List<string>();
        int next = -1;
        async Task Worker()
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < requests.Length)
            {
                if (only is not null && !only.Contains(i)) continue;
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                timeout.CancelAfter(perRequest);
                Outcome outcome;
                try { outcome = await SendAsync(requests[i], timeout.Token); }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    outcome = new Outcome(Encoding.ASCII.GetString(requests[i].Bytes, 0, Math.Min(requests[i].Bytes.Length, 200)), -1, "", "");
                }
                string? problem = outcome.Status == -1 ? $"no answer within {perRequest.TotalSeconds:0} s" : Problem(outcome);
                lock (problems)
                {
                    byStatus[outcome.Status] = byStatus.GetValueOrDefault(outcome.Status) + 1;
                    if (problem is not null) problems.Add($"request {i}: {problem}\n  {outcome.Request.Replace("\r\n", "\\r\\n", StringComparison.Ordinal)}");
                }
            }
        }
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(_ => Task.Run(Worker, cancellationToken)));
        return (byStatus, problems);
    }
}
