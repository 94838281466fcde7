using Microsoft.Extensions.Logging;

namespace Vso.Transport.Engine;

/// <summary>The engine's log messages, with stable event ids.</summary>
internal static partial class EngineLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Stack {Address}/{PrefixLength} up on link {Mac}, MTU {Mtu}")]
    public static partial void StackStarted(this ILogger logger, string address, int prefixLength, string mac, int mtu);

    [LoggerMessage(EventId = 5, Level = LogLevel.Warning, Message = "Listener on port {Port} under SYN pressure: {SynsDropped} SYNs dropped (accept queue {Backlog} full), {CookiesSent} SYN cookies sent, {CookiesAccepted} accepted, {CookiesRejected} rejected, {HalfOpenEvicted} half-open evicted, {AcceptQueueOverflows} completing ACKs dropped (accept queue full); half-open {HalfOpen}/{MaxHalfOpen}")]
    public static partial void ListenerUnderPressure(
        this ILogger logger, int port, long synsDropped, int backlog, long cookiesSent, long cookiesAccepted, long cookiesRejected,
        long halfOpenEvicted, long acceptQueueOverflows, int halfOpen, int maxHalfOpen);

    [LoggerMessage(EventId = 8, Level = LogLevel.Error, Message = "Engine: an exception escaped {Entry} and was contained; connection aborted: {Connection}; {Suppressed} more contained since the last report")]
    public static partial void ExceptionContained(this ILogger logger, string entry, Tcp.ConnectionId? connection, long suppressed, Exception exception);

    [LoggerMessage(EventId = 121, Level = LogLevel.Warning, Message = "Engine {Shard}: application code held the engine thread, {How}, for {Milliseconds} ms (connection from {Remote}); the engine's loop moved to a relief thread meanwhile, and this connection's requests run on the thread pool from now on. Handlers must not block; Vso:ApplicationOnEngineThread=false keeps all application code off the engine thread. {Suppressed} more since the last report")]
    public static partial void ApplicationStalledEngine(this ILogger logger, int shard, string how, long milliseconds, string remote, long suppressed);
}
