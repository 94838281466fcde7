using Microsoft.Extensions.Logging;

namespace Vso.Transport.Tcp;

/// <summary>
/// The TCP layer's log messages (event ids kept from the engine's list). Arguments are values, never strings built
/// for the call: the generated code formats them only when the line is written. Lines that network input can cause
/// go through a <see cref="Engine.LogRateLimiter"/> and report how many were held back.
/// </summary>
internal static partial class TcpLog
{
    [LoggerMessage(EventId = 2, Level = LogLevel.Debug, Message = "Connection {Connection} established; {Suppressed} connection events not logged since the last report")]
    public static partial void ConnectionEstablished(this ILogger logger, ConnectionId connection, long suppressed);

    [LoggerMessage(EventId = 3, Level = LogLevel.Debug, Message = "Connection {Connection} closed: {Reason}; {Suppressed} connection events not logged since the last report")]
    public static partial void ConnectionClosed(this ILogger logger, ConnectionId connection, string reason, long suppressed);

    [LoggerMessage(EventId = 4, Level = LogLevel.Error, Message = "Connection {Connection}: the host refused a send descriptor: {Reason}")]
    public static partial void HostRefusedDescriptor(this ILogger logger, ConnectionId connection, string reason);
}
