using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace EdgeTune.Testing;

/// <summary>
/// A real Mosquitto (Debian's <c>mosquitto</c> package) on a loopback port, with a password file, persistence
/// (sessions survive <see cref="Restart"/>) and unlimited queues, and optionally a TLS listener with a throw-away CA.
/// </summary>
public sealed class Mosquitto : IDisposable
{
    public const string User = "edgetune";
    public const string Password = "s3cret-fleet";

    private readonly TempDir _dir = new();
    private readonly string _config;
    private Process? _process;

    /// <summary>The broker binary: $EDGETUNE_MOSQUITTO, else mosquitto on the PATH or in /usr/sbin; null when absent.</summary>
    public static string? Binary { get; } = Find();

    public const string MissingReason = "mosquitto is not installed (apt-get install mosquitto; .ci/run does it)";

    public Mosquitto(bool tls = false)
    {
        if (Binary is null) throw new InvalidOperationException(MissingReason);
        Port = FreePort();
        PasswordFile = _dir.File("client.pw");
        File.WriteAllText(PasswordFile, Password + "\n");
        string passwd = _dir.File("passwd");
        Run(Path.Combine(Path.GetDirectoryName(Binary)!, "..", "bin", "mosquitto_passwd"), "mosquitto_passwd", "-b", "-c", passwd, User, Password);
        var lines = new List<string>
        {
            "per_listener_settings false",
            "allow_anonymous false",
            $"password_file {passwd}",
            "persistence true",
            $"persistence_location {_dir.Path}/",
            "max_queued_messages 0",
            "max_inflight_messages 0",
            $"log_dest file {_dir.File("mosquitto.log")}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            $"listener {Port} 127.0.0.1",
        };
        if (Environment.UserName is { Length: > 0 } user) lines.Insert(0, $"user {user}");
        if (tls)
        {
            TlsPort = FreePort();
            (CaFile, string cert, string key) = MakeCertificates(_dir);
            lines.AddRange([$"listener {TlsPort} 127.0.0.1", $"cafile {CaFile}", $"certfile {cert}", $"keyfile {key}"]);
        }
        _config = _dir.File("mosquitto.conf");
        File.WriteAllLines(_config, lines);
        Start();
    }

    public int Port { get; }
    public int? TlsPort { get; }
    public string Url => $"mqtt://127.0.0.1:{Port}";
    public string? TlsUrl => TlsPort is { } p ? $"mqtts://127.0.0.1:{p}" : null;
    public string PasswordFile { get; }
    public string? CaFile { get; }
    public string Log => File.Exists(_dir.File("mosquitto.log")) ? File.ReadAllText(_dir.File("mosquitto.log")) : "";

    /// <summary>Stops the broker the way systemd does (SIGTERM: it saves its sessions) and starts it again on the same ports.</summary>
    public void Restart(TimeSpan? down = null)
    {
        Stop();
        if (down is { } d) Thread.Sleep(d);
        Start();
    }

    private void Start()
    {
        var psi = new ProcessStartInfo(Binary!) { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(_config);
        _process = Process.Start(psi)!;
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        var deadline = Stopwatch.StartNew();
        foreach (int port in new[] { Port }.Concat(TlsPort is { } t ? [t] : []))
        {
            while (true)
            {
                if (_process.HasExited) throw new InvalidOperationException($"mosquitto exited with {_process.ExitCode}: {Log}");
                try
                {
                    using var probe = new TcpClient();
                    probe.Connect(IPAddress.Loopback, port);
                    break;
                }
                catch (SocketException) when (deadline.Elapsed < TimeSpan.FromSeconds(20))
                {
                    Thread.Sleep(20);
                }
            }
        }
    }

    private void Stop()
    {
        if (_process is null || _process.HasExited) return;
        Process.Start("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!.WaitForExit();
        if (!_process.WaitForExit(10_000)) _process.Kill();
        _process.Dispose();
        _process = null;
    }

    public void Dispose()
    {
        Stop();
        _dir.Dispose();
    }

    private static string? Find()
    {
        if (Environment.GetEnvironmentVariable("EDGETUNE_MOSQUITTO") is { Length: > 0 } env && File.Exists(env)) return env;
        var dirs = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator).Append("/usr/sbin").Append("/usr/local/sbin");
        return dirs.Select(d => Path.Combine(d, "mosquitto")).FirstOrDefault(File.Exists);
    }

    private static void Run(string path, string fallback, params string[] args)
    {
        var psi = new ProcessStartInfo(File.Exists(path) ? path : fallback) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{psi.FileName} failed: {err}");
    }

    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    /// <summary>A throw-away CA and a server certificate for 127.0.0.1 and localhost signed by it, as PEM files.</summary>
    private static (string Ca, string Cert, string Key) MakeCertificates(TempDir dir)
    {
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest("CN=EdgeTune test CA", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        using var ca = caRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));

        using var serverKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=127.0.0.1", serverKey, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        san.AddDnsName("localhost");
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using var server = request.Create(ca, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(29), [1, 2, 3, 4]);

        string caFile = dir.File("ca.pem"), certFile = dir.File("server.pem"), keyFile = dir.File("server.key");
        File.WriteAllText(caFile, ca.ExportCertificatePem());
        File.WriteAllText(certFile, server.ExportCertificatePem());
        File.WriteAllText(keyFile, serverKey.ExportPkcs8PrivateKeyPem());
        return (caFile, certFile, keyFile);
    }
}

/// <summary>A fact that needs Debian's mosquitto; skipped with the reason where it is not installed.</summary>
public sealed class MosquittoFactAttribute : Xunit.FactAttribute
{
    public MosquittoFactAttribute()
    {
        if (Mosquitto.Binary is null) Skip = Mosquitto.MissingReason;
    }
}
