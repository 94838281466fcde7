using Microsoft.Extensions.Logging;

namespace Vso.Transport.Links;

/// <summary>Log messages of the real links (event ids 100–199).</summary>
internal static partial class LinkLog
{
    [LoggerMessage(EventId = 100, Level = LogLevel.Information, Message = "{Kind} link open on {Interface}: MAC {Mac}, MTU {Mtu}, {Details}")]
    public static partial void LinkOpened(this ILogger logger, string kind, string @interface, string mac, int mtu, string details);

    [LoggerMessage(EventId = 101, Level = LogLevel.Warning, Message =
        "Link {Interface}: {Count} received frame(s) dropped with unfinished checksums (TP_STATUS_CSUMNOTREADY): checksum offload is on. " +
        "Turn offloads off on this interface and its peer: ethtool -K {Interface} tso off gso off gro off tx off rx off")]
    public static partial void ChecksumNotReady(this ILogger logger, string @interface, long count);

    [LoggerMessage(EventId = 102, Level = LogLevel.Warning, Message =
        "Link {Interface}: {Count} received frame(s) of {Length} bytes dropped, larger than the MTU {Mtu} allows (GRO/LRO/GSO merged them). " +
        "Turn offloads off on this interface and its peer: ethtool -K {Interface} tso off gso off gro off tx off rx off")]
    public static partial void OversizeReceived(this ILogger logger, string @interface, long count, int length, int mtu);

    [LoggerMessage(EventId = 103, Level = LogLevel.Error, Message = "Link {Interface}: frame of {Length} bytes not sent, larger than the MTU {Mtu} allows ({Count} so far)")]
    public static partial void OversizeTransmit(this ILogger logger, string @interface, int length, int mtu, long count);

    [LoggerMessage(EventId = 104, Level = LogLevel.Warning, Message = "Link {Interface}: sending failed: {Error} ({Count} frame(s) dropped so far)")]
    public static partial void TransmitFailed(this ILogger logger, string @interface, string error, long count);

    [LoggerMessage(EventId = 105, Level = LogLevel.Warning, Message = "Link {Interface}: receiving failed: {Error}")]
    public static partial void ReceiveFailed(this ILogger logger, string @interface, string error);

    [LoggerMessage(EventId = 106, Level = LogLevel.Information, Message = "Link {Interface}: {What}; using {Fallback}")]
    public static partial void AfXdpFallback(this ILogger logger, string @interface, string what, string fallback);

    [LoggerMessage(EventId = 120, Level = LogLevel.Warning, Message = "Link {Interface}: {Count} received frame(s) dropped so far: {Reason}")]
    public static partial void ReceivedFrameDropped(this ILogger logger, string @interface, long count, string reason);
}
