using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using EdgeTune.Core;
using MQTTnet;

namespace EdgeTune.Agent.Fleet;

/// <summary>A fleet operation that cannot go on: a broker URL, a credential or a connection the user must fix. One line.</summary>
public sealed class FleetException : EdgeTuneException
{
    public FleetException(string message) : base(message) { }
    public FleetException() : base("fleet error") { }
    public FleetException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>
/// How to reach the broker, shared by the agent's outbox and <c>edgetune fleet</c>. The session is persistent:
/// a stable client id, clean start off and a session expiry, so the broker keeps a subscriber's queue and
/// both sides resend unacknowledged QoS 1 messages after a reconnect (MQTT 5 §4.4).
/// </summary>
public sealed record FleetConnection
{
    /// <summary>mqtt://host[:1883] or mqtts://host[:8883].</summary>
    public required string Broker { get; init; }
    public required string ClientId { get; init; }
    public string? Username { get; init; }
    /// <summary>A file whose first line is the password (kept out of the configuration and the command line).</summary>
    public string? PasswordFile { get; init; }
    /// <summary>PEM file of the certificate authorities that may sign the broker's certificate (mqtts://); the system store otherwise.</summary>
    public string? CaFile { get; init; }
    /// <summary>PEM client certificate and its key, for brokers that authenticate devices by certificate.</summary>
    public string? ClientCertificate { get; init; }
    public string? ClientKey { get; init; }
    /// <summary>How long the broker keeps the session while the client is away (MQTT 5: 0 would end it at disconnect).</summary>
    public uint SessionExpirySeconds { get; init; } = 7 * 24 * 3600;
    /// <summary>MQTT 5 receive maximum: QoS 1 messages the broker may have in flight to this client unacknowledged.</summary>
    public ushort ReceiveMaximum { get; init; } = 1000;
    public TimeSpan KeepAlive { get; init; } = TimeSpan.FromSeconds(15);
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);
}

public static class FleetBroker
{
    /// <summary>Host, port and TLS from an mqtt:// or mqtts:// URL; null with the problem otherwise.</summary>
    public static (string Host, int Port, bool Tls)? ParseUrl(string url, out string? problem)
    {
        problem = null;
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("mqtt" or "mqtts") || uri.Host.Length == 0)
        {
            problem = "expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]";
            return null;
        }
        if (uri.AbsolutePath is not ("" or "/") || uri.Query.Length > 0 || uri.UserInfo.Length > 0)
        {
            problem = "expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (no path, query or credentials: use username and password_file)";
            return null;
        }
        bool tls = uri.Scheme == "mqtts";
        return (uri.Host, uri.IsDefaultPort || uri.Port < 0 ? (tls ? 8883 : 1883) : uri.Port, tls);
    }

    public static MqttClientOptions Options(FleetConnection c, Action<MqttClientOptionsBuilder>? extra = null)
    {
        var (host, port, tls) = ParseUrl(c.Broker, out var problem) ?? throw new FleetException($"broker '{c.Broker}': {problem}");
        var builder = new MqttClientOptionsBuilder()
            .WithTcpServer(host, port)
            .WithClientId(c.ClientId)
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500)
            .WithCleanStart(false)
            .WithSessionExpiryInterval(c.SessionExpirySeconds)
            .WithReceiveMaximum(c.ReceiveMaximum)
            .WithKeepAlivePeriod(c.KeepAlive)
            .WithTimeout(c.ConnectTimeout);
        if (c.Username is not null) builder.WithCredentials(c.Username, ReadPassword(c.PasswordFile));
        else if (c.PasswordFile is not null) throw new FleetException($"{c.PasswordFile}: a password file needs a username");
        if (tls)
        {
            var trust = c.CaFile is null ? null : LoadCa(c.CaFile);
            var client = LoadClientCertificate(c);
            builder.WithTlsOptions(o =>
            {
                o.UseTls().WithTargetHost(host).WithRevocationMode(X509RevocationMode.NoCheck);
                if (trust is not null) o.WithTrustChain(trust);
                if (client is not null) o.WithClientCertificates([client]);
            });
        }
        else if (c.CaFile is not null || c.ClientCertificate is not null)
            throw new FleetException($"broker '{c.Broker}': a CA file or client certificate needs an mqtts:// broker");
        extra?.Invoke(builder);
        return builder.Build();
    }

    /// <summary>Connects once; a refusal (bad credentials, not authorised) or an unreachable broker becomes one clear line.</summary>
    public static async Task<MqttClientConnectResult> ConnectAsync(IMqttClient client, MqttClientOptions options, string broker, CancellationToken ct)
    {
        MqttClientConnectResult result;
        try
        {
            result = await client.ConnectAsync(options, ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or System.Net.Sockets.SocketException or IOException or TimeoutException
                                   or System.Security.Authentication.AuthenticationException or OperationCanceledException && !ct.IsCancellationRequested)
        {
            throw new FleetException($"cannot reach broker {broker}: {Innermost(e).Message}", e);
        }
        if (result.ResultCode != MqttClientConnectResultCode.Success)
            throw new FleetException($"broker {broker} refused the connection: {Describe(result.ResultCode)}");
        return result;
    }

    /// <summary>True when retrying cannot help (the user must fix a credential or a setting).</summary>
    public static bool IsRefusal(FleetException e) => e.Message.Contains("refused the connection", StringComparison.Ordinal);

    private static string Describe(MqttClientConnectResultCode code) => code switch
    {
        MqttClientConnectResultCode.BadUserNameOrPassword => "bad username or password",
        MqttClientConnectResultCode.NotAuthorized => "not authorized (check the username, password or client certificate)",
        MqttClientConnectResultCode.ClientIdentifierNotValid => "client id not valid",
        MqttClientConnectResultCode.Banned => "this client is banned",
        MqttClientConnectResultCode.ServerUnavailable or MqttClientConnectResultCode.ServerBusy => "server unavailable or busy",
        _ => code.ToString(),
    };

    private static Exception Innermost(Exception e)
    {
        while (e.InnerException is not null) e = e.InnerException;
        return e;
    }

    private static string ReadPassword(string? file)
    {
        if (file is null) return "";
        if (!File.Exists(file)) throw new FleetException($"{file}: no such password file");
        using var reader = new StreamReader(file);
        return reader.ReadLine() ?? "";
    }

    private static X509Certificate2Collection LoadCa(string file)
    {
        if (!File.Exists(file)) throw new FleetException($"{file}: no such CA file");
        var collection = new X509Certificate2Collection();
        try { collection.ImportFromPemFile(file); }
        catch (CryptographicException e) { throw new FleetException($"{file}: not a PEM certificate file ({e.Message})", e); }
        if (collection.Count == 0) throw new FleetException($"{file}: no certificate in this PEM file");
        return collection;
    }

    private static X509Certificate2? LoadClientCertificate(FleetConnection c)
    {
        if (c.ClientCertificate is null) return null;
        foreach (var f in new[] { c.ClientCertificate, c.ClientKey ?? c.ClientCertificate })
            if (!File.Exists(f)) throw new FleetException($"{f}: no such file (client certificate or key)");
        try
        {
            using var pem = X509Certificate2.CreateFromPemFile(c.ClientCertificate, c.ClientKey);
            // An ephemeral PEM key does not always reach the TLS stack; a PKCS#12 round trip makes it a real one.
            return X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
        }
        catch (CryptographicException e)
        {
            throw new FleetException($"{c.ClientCertificate}: cannot load the client certificate and key ({e.Message})", e);
        }
    }
}
