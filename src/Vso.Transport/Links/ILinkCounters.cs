namespace Vso.Transport.Links;

/// <summary>
/// What a link counts of the frames it moved and the ones it could not, for the meter (<see cref="LinkMetrics"/>). Written
/// by the engine thread, read by a collector's thread: plain 64-bit reads, a count at most one frame behind.
/// </summary>
internal interface ILinkCounters
{
    /// <summary>Frames handed to the stack.</summary>
    long FramesReceived { get; }

    /// <summary>Frames given to the kernel or the device to send.</summary>
    long FramesTransmitted { get; }

    /// <summary>Received frames larger than the MTU allows and not a super-frame the link could take, dropped.</summary>
    long OversizeReceivedFrames { get; }

    /// <summary>Received frames whose offload state (unfinished checksum, virtio_net_hdr) the link could not use, dropped.</summary>
    long BadOffloadFrames => 0;

    /// <summary>Frames the stack asked to send that were larger than the MTU allows, not sent.</summary>
    long OversizeTransmitFrames { get; }

    /// <summary>Frames the kernel or device refused to send, dropped: TCP retransmits them.</summary>
    long TransmitErrors { get; }
}
