using Microsoft.Extensions.Logging;

namespace Vso.Transport.Engine;

/// <summary>The engine's log messages, with stable event ids.</summary>
internal static partial class EngineLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Stack {Address}/{PrefixLength} up on link {Mac}, MTU {Mtu}")]
    public static partial void StackStarted(this ILogger logger, string address, int prefixLength, string mac, int mtu);

    [LoggerMessage(EventId = 5, Level = LogLevel.Warning, Message = "Listener on port {Port}: backlog {Backlog} full, SYN from {Remote} dropped")]
    public static partial void BacklogFull(this ILogger logger, int port, int backlog, string remote);

    [LoggerMessage(EventId = 8, Level = LogLevel.Error, Message = "Engine: an exception escaped {Entry} and was contained; connection aborted: {Connection}; {Suppressed} more contained since the last report")]
    public static partial void ExceptionContained(this ILogger logger, string entry, Tcp.ConnectionId? connection, long suppressed, Exception exception);
}
