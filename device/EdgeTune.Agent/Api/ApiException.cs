using System.Text.Json;

namespace EdgeTune.Agent.Api;

/// <summary>An error in OpenAI's shape: <c>{"error": {"message", "type", "code"}}</c>.</summary>
public sealed class ApiException(int status, string message, string type = "invalid_request_error", string? code = null, string? param = null) : Exception(message)
{
    public ApiException() : this(500, "error") { }
    public ApiException(string message) : this(400, message) { }
    public ApiException(string message, Exception inner) : this(400, message + ": " + inner.Message) { }

    public int Status { get; } = status;
    public string Type { get; } = type;
    public string? Code { get; } = code;
    public string? Param { get; } = param;

    public IResult ToResult(int? retryAfter = null) => new ErrorResult(this, retryAfter);

    public Task WriteAsync(HttpContext context, int? retryAfter = null)
    {
        context.Response.StatusCode = Status;
        if (retryAfter is { } s) context.Response.Headers.RetryAfter = s.ToString(System.Globalization.CultureInfo.InvariantCulture);
        context.Response.ContentType = "application/json";
        return context.Response.WriteAsync(JsonSerializer.Serialize(new { error = new { message = Message, type = Type, param = Param, code = Code } }));
    }

    private sealed class ErrorResult(ApiException error, int? retryAfter) : IResult
    {
        public Task ExecuteAsync(HttpContext httpContext) => error.WriteAsync(httpContext, retryAfter);
    }
}
