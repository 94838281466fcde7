using Microsoft.Extensions.Logging;
using Vso.Transport.Wire;

namespace Vso.Transport.Interface;

/// <summary>
/// The interface's log messages (event ids kept from the engine's list). Every one is caused by network input, so
/// each goes through a <see cref="Engine.LogRateLimiter"/> and reports how many were held back; arguments are values,
/// formatted only when the line is written.
/// </summary>
internal static partial class InterfaceLog
{
    [LoggerMessage(EventId = 6, Level = LogLevel.Error, Message = "Engine: an exception escaped frame processing and was contained; {Suppressed} more contained since the last report")]
    public static partial void FrameProcessingFailed(this ILogger logger, long suppressed, Exception exception);

    [LoggerMessage(EventId = 7, Level = LogLevel.Debug, Message = "ARP: {Address} is at {Mac}; {Suppressed} more neighbour changes not logged since the last report")]
    public static partial void NeighborResolved(this ILogger logger, Ipv4Address address, MacAddress mac, long suppressed);
}
