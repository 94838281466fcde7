namespace Vso.Transport.Tcp;

/// <summary>Per-connection counters, written by the engine thread.</summary>
internal sealed class TcpConnectionStatistics
{
    /// <summary>The connection is reused: every counter from zero.</summary>
    public void Recycle()
    {
        SegmentsSent = 0;
        SegmentsReceived = 0;
        SegmentsRetransmitted = 0;
        BytesRetransmitted = 0;
        Timeouts = 0;
        FastRetransmits = 0;
        DuplicateAcksReceived = 0;
        FirstTransmissionBytes = 0;
        FirstTransmissionCopiedBytes = 0;
        OffloadedSuperSegments = 0;
        BytesReceived = 0;
        ReceiveCopiedBytes = 0;
        OutOfOrderSegments = 0;
        ZeroWindowProbes = 0;
        KeepaliveProbes = 0;
        DroppedSegments = 0;
        SpuriousRetransmissions = 0;
        Undos = 0;
        TailLossProbes = 0;
        RackLosses = 0;
        DsacksSent = 0;
        ChallengeAcksSent = 0;
        ChallengeAcksSuppressed = 0;
        InvalidSegmentAcksSuppressed = 0;
        PathMtuReductions = 0;
    }

    public long SegmentsSent;
    public long SegmentsReceived;
    public long SegmentsRetransmitted;
    public long BytesRetransmitted;
    public long Timeouts;
    public long FastRetransmits;
    public long DuplicateAcksReceived;

    /// <summary>Payload bytes put on the wire for the first time.</summary>
    public long FirstTransmissionBytes;

    /// <summary>Bytes the host copied in user space while building first transmissions (0 in Pinned mode, equal to the above in Copy mode).</summary>
    public long FirstTransmissionCopiedBytes;

    /// <summary>Super-segments handed to a link with segmentation offload (each counted in SegmentsSent by its segments).</summary>
    public long OffloadedSuperSegments;

    public long BytesReceived;

    /// <summary>
    /// User-space copies of received payload: into the receive buffer, out of it, or once straight into the application's
    /// memory (<see cref="ITcpConnectionObserver.TryTakeInOrder"/>). Per received byte: 1 when the application takes
    /// in-order bytes from the frame, 2 through the buffer.
    /// </summary>
    public long ReceiveCopiedBytes;
    public long OutOfOrderSegments;
    public long ZeroWindowProbes;
    public long KeepaliveProbes;
    public long DroppedSegments;
    public long SpuriousRetransmissions;
    public long Undos;
    public long TailLossProbes;
    public long RackLosses;
    public long DsacksSent;

    /// <summary>Challenge ACKs sent (RFC 5961) and held back by the connection's or the stack's limit (§7).</summary>
    public long ChallengeAcksSent;
    public long ChallengeAcksSuppressed;

    /// <summary>Duplicate ACKs for unacceptable segments held back by the connection's limit.</summary>
    public long InvalidSegmentAcksSuppressed;

    /// <summary>Times an ICMP "fragmentation needed" lowered the MSS (RFC 1191).</summary>
    public long PathMtuReductions;
}
