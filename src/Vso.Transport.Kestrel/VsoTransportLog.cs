using Microsoft.Extensions.Logging;

namespace Vso.Transport.Kestrel;

/// <summary>The transport's log messages, with stable event ids (3xx).</summary>
internal static partial class VsoTransportLog
{
    [LoggerMessage(EventId = 300, Level = LogLevel.Information, Message = "Vso stack {Address}/{PrefixLength} up on {Backend} interface '{Interface}' (MAC {Mac}, MTU {Mtu}).")]
    public static partial void StackUp(this ILogger logger, string address, int prefixLength, string backend, string @interface, string mac, int mtu);

    [LoggerMessage(EventId = 301, Level = LogLevel.Debug, Message = "Vso listener bound to {EndPoint}.")]
    public static partial void Bound(this ILogger logger, string endPoint);

    [LoggerMessage(EventId = 302, Level = LogLevel.Debug, Message = "Vso listener on {EndPoint} unbound.")]
    public static partial void Unbound(this ILogger logger, string endPoint);

    [LoggerMessage(EventId = 303, Level = LogLevel.Debug, Message = "Connection id \"{ConnectionId}\" accepted from {Remote}.")]
    public static partial void Accepted(this ILogger logger, string connectionId, string remote);

    [LoggerMessage(EventId = 304, Level = LogLevel.Debug, Message = "Connection id \"{ConnectionId}\" closed: {Reason}.")]
    public static partial void Closed(this ILogger logger, string connectionId, string reason);

    [LoggerMessage(EventId = 305, Level = LogLevel.Debug, Message = "Connection id \"{ConnectionId}\" aborted by the application (RST): {Reason}.")]
    public static partial void Aborted(this ILogger logger, string connectionId, string reason);

    [LoggerMessage(EventId = 306, Level = LogLevel.Information, Message = "Vso stack {Address} stopped; {PinnedBytes} pinned bytes still rented.")]
    public static partial void StackDown(this ILogger logger, string address, long pinnedBytes);

    [LoggerMessage(EventId = 307, Level = LogLevel.Warning, Message = "Connection id \"{ConnectionId}\" still had {Bytes} unacknowledged bytes when disposed after {Milliseconds} ms.")]
    public static partial void AcknowledgeWaitTimedOut(this ILogger logger, string connectionId, long bytes, long milliseconds);

    [LoggerMessage(EventId = 309, Level = LogLevel.Debug, Message = "Connection id \"{ConnectionId}\" aborted by the application, ending with FIN after the flushed data: {Reason}.")]
    public static partial void AbortedWithFin(this ILogger logger, string connectionId, string reason);

    [LoggerMessage(EventId = 310, Level = LogLevel.Debug, Message = "PROXY protocol: connection from {Peer} reset, header {Reason}.")]
    public static partial void ProxyHeaderRefused(this ILogger logger, string peer, string reason);

    [LoggerMessage(EventId = 311, Level = LogLevel.Information, Message = "Vso listener on {EndPoint} stopped; draining {Connections} connections for up to {Timeout} (new connections: {NewConnections}).")]
    public static partial void DrainStarted(this ILogger logger, string endPoint, int connections, TimeSpan timeout, string newConnections);

    [LoggerMessage(EventId = 312, Level = LogLevel.Warning, Message = "Vso listener on {EndPoint}: Vso:DrainTimeout ({Timeout}) reached, resetting {Connections} connections still open.")]
    public static partial void DrainDeadline(this ILogger logger, string endPoint, TimeSpan timeout, int connections);

    [LoggerMessage(EventId = 313, Level = LogLevel.Information, Message = "Vso listener on {EndPoint} drained: {Drained} connections finished, {Reset} reset.")]
    public static partial void DrainDone(this ILogger logger, string endPoint, long drained, long reset);

    [LoggerMessage(EventId = 308, Level = LogLevel.Error, Message = "Connection id \"{ConnectionId}\": a ConnectionClosed callback threw.")]
    public static partial void ClosedCallbackFailed(this ILogger logger, string connectionId, Exception exception);
}
