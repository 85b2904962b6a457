using System.Security.Cryptography;
using System.Text;
using EdgeTune.Agent.Config;

namespace EdgeTune.Agent.Api;

/// <summary>What a bearer token may do: <c>chat</c> (completions, models, feedback), <c>fleet</c> (field data export and
/// acknowledgement, metrics), <c>admin</c> (adapter switch, bundle install, configuration).</summary>
[Flags]
public enum Scope
{
    None = 0,
    Chat = 1,
    Fleet = 2,
    Admin = 4,
    All = Chat | Fleet | Admin,
}

/// <summary>Endpoint metadata: a caller needs one of these scopes (several flags: any of them).</summary>
public sealed record RequiredScope(Scope AnyOf);

public static class Scopes
{
    private static readonly object GrantedKey = new();

    public static readonly IReadOnlyDictionary<string, Scope> Names = new Dictionary<string, Scope>(StringComparer.Ordinal)
    {
        ["chat"] = Scope.Chat, ["fleet"] = Scope.Fleet, ["admin"] = Scope.Admin,
    };

    public static string Describe(Scope scope) =>
        string.Join(" or ", Names.Where(kv => scope.HasFlag(kv.Value)).Select(kv => $"'{kv.Key}'"));

    /// <summary>The endpoint needs a token with one of <paramref name="anyOf"/> (checked before the handler runs).
    /// An endpoint without one needs the admin scope.</summary>
    public static TBuilder RequireScope<TBuilder>(this TBuilder builder, Scope anyOf) where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new RequiredScope(anyOf));

    /// <summary>The scopes of the token the request came with (None before authentication).</summary>
    public static Scope GrantedScopes(this HttpContext context) => context.Items.TryGetValue(GrantedKey, out var s) && s is Scope scope ? scope : Scope.None;

    internal static void Grant(HttpContext context, Scope scope) => context.Items[GrantedKey] = scope;

    /// <summary>For checks inside a handler: 403 <c>insufficient_scope</c> unless the caller's token has one of <paramref name="anyOf"/>.</summary>
    public static void RequireScope(this HttpContext context, Scope anyOf)
    {
        if ((context.GrantedScopes() & anyOf) == 0)
            throw new ApiException(403, $"this token lacks the {Describe(anyOf)} scope that {context.Request.Method} {context.Request.Path} needs",
                "invalid_request_error", "insufficient_scope");
    }
}

/// <summary>Bearer tokens to scopes. Every configured token is compared (in constant time, as SHA-256 digests) so the
/// time taken says nothing about which token, or how much of one, matched.</summary>
internal sealed class TokenAuthenticator(IEnumerable<ScopedToken> tokens)
{
    private readonly (byte[] Digest, Scope Scopes)[] _tokens = tokens.Where(t => t.Token is not null).Select(t => (Digest("Bearer " + t.Token), t.Scopes)).ToArray();

    private static byte[] Digest(string text) => SHA256.HashData(Encoding.UTF8.GetBytes(text));

    /// <summary>The scopes granted to this Authorization header; None when it names no configured token.</summary>
    public Scope Authenticate(string authorization)
    {
        var given = Digest(authorization);
        var granted = Scope.None;
        foreach (var (digest, scopes) in _tokens)
            if (CryptographicOperations.FixedTimeEquals(given, digest)) granted |= scopes;
        return granted;
    }
}
