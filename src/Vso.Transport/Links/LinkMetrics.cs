using System.Diagnostics.Metrics;

namespace Vso.Transport.Links;

/// <summary>
/// The link's counts as observable counters on the stack's meter, one series per engine (tag vso.engine):
/// vso.link.frames_received, vso.link.frames_transmitted, and vso.link.frames_dropped by reason, so that a link that drops
/// (offloads it cannot use, frames over the MTU, a refusing device) shows on a dashboard, not only in the log.
/// </summary>
internal static class LinkMetrics
{
    public static void Register(Meter meter, ILinkCounters counters, int engine)
    {
        var tag = new KeyValuePair<string, object?>("vso.engine", engine);
        meter.CreateObservableCounter("vso.link.frames_received", () => new Measurement<long>(counters.FramesReceived, tag), "{frame}", "Frames the link handed to the stack.");
        meter.CreateObservableCounter("vso.link.frames_transmitted", () => new Measurement<long>(counters.FramesTransmitted, tag), "{frame}", "Frames the link gave to the kernel or device to send.");
        meter.CreateObservableCounter(
            "vso.link.frames_dropped",
            () => Observe(counters, tag),
            "{frame}",
            "Frames the link dropped, by reason: oversize_received, bad_offload, oversize_transmit, transmit_error.");
    }

    private static Measurement<long>[] Observe(ILinkCounters counters, KeyValuePair<string, object?> engine) =>
    [
        new(counters.OversizeReceivedFrames, engine, new("reason", "oversize_received")),
        new(counters.BadOffloadFrames, engine, new("reason", "bad_offload")),
        new(counters.OversizeTransmitFrames, engine, new("reason", "oversize_transmit")),
        new(counters.TransmitErrors, engine, new("reason", "transmit_error")),
    ];
}
