using System.Net.Sockets;
using System.Text;

namespace EdgeTune.Agent;

/// <summary>
/// systemd's watchdog (WatchdogSec= in the unit): sends WATCHDOG=1 to $NOTIFY_SOCKET every half period, so a hung
/// agent is killed and restarted (and counted by bundle boot counting). Microsoft.Extensions.Hosting.Systemd sends
/// READY=1 and STOPPING=1 but not this. Does nothing outside systemd.
/// </summary>
public sealed class SystemdWatchdog(ILogger<SystemdWatchdog> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        string? socketPath = Environment.GetEnvironmentVariable("NOTIFY_SOCKET");
        if (socketPath is not { Length: > 0 } || !long.TryParse(Environment.GetEnvironmentVariable("WATCHDOG_USEC"), out long usec) || usec <= 0) return;
        // WATCHDOG_PID names the process the watchdog is meant for; a child started by the agent must not ping.
        if (Environment.GetEnvironmentVariable("WATCHDOG_PID") is { } pid && pid != Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture)) return;
        if (socketPath[0] == '@') socketPath = "\0" + socketPath[1..]; // an abstract socket
        using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        var endpoint = new UnixDomainSocketEndPoint(socketPath);
        var ping = Encoding.ASCII.GetBytes("WATCHDOG=1");
        using var timer = new PeriodicTimer(TimeSpan.FromMicroseconds(usec / 2));
        do
        {
            try { await socket.SendToAsync(ping, SocketFlags.None, endpoint, stoppingToken); }
            catch (SocketException e) { logger.LogWarning("systemd watchdog ping failed: {Message}", e.Message); }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }
}
