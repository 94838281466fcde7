using Vso.Transport.Tcp;

namespace Vso.Transport.Api;

/// <summary>A snapshot of one connection's TCP state, in the spirit of Linux's TCP_INFO.</summary>
public sealed record TcpConnectionInfo
{
    public TcpState State { get; init; }

    public uint SendUnacknowledged { get; init; }

    public uint SendNext { get; init; }

    public uint ReceiveNext { get; init; }

    public TimeSpan SmoothedRtt { get; init; }

    public TimeSpan RttVariance { get; init; }

    public TimeSpan Rto { get; init; }

    public long BytesInFlight { get; init; }

    public long CongestionWindow { get; init; }

    public long SlowStartThreshold { get; init; }

    public int MaxSegmentSize { get; init; }

    public long SegmentsSent { get; init; }

    public long SegmentsReceived { get; init; }

    public long RetransmittedSegments { get; init; }

    public long Timeouts { get; init; }

    public long FastRetransmits { get; init; }

    public bool InRecovery { get; init; }

    public string LossRecovery { get; init; } = "";

    public string CongestionControl { get; init; } = "";

    /// <summary>Payload bytes sent for the first time.</summary>
    public long FirstTransmissionBytes { get; init; }

    /// <summary>Bytes copied in user space to build those first transmissions: 0 in Pinned mode, all of them in Copy mode.</summary>
    public long FirstTransmissionCopiedBytes { get; init; }

    /// <summary>
    /// User-space copies of received payload bytes: one per byte the application took straight from the frame (the Kestrel
    /// transport's input), two per byte that waited in the receive buffer (in, then out).
    /// </summary>
    public long ReceiveCopiedBytes { get; init; }

    /// <summary>Super-segments of several segments handed to a link with segmentation offload (AF_PACKET GSO).</summary>
    public long OffloadedSuperSegments { get; init; }

    public long OutOfOrderSegments { get; init; }

    public long ZeroWindowProbes { get; init; }

    /// <summary>Tail loss probes sent (RFC 8985 §7).</summary>
    public long TailLossProbes { get; init; }

    /// <summary>Retransmissions a D-SACK proved unnecessary (RFC 3708).</summary>
    public long SpuriousRetransmissions { get; init; }

    /// <summary>Window reductions undone as spurious (D-SACK or Eifel).</summary>
    public long Undos { get; init; }

    /// <summary>Segments RACK declared lost.</summary>
    public long RackLosses { get; init; }

    /// <summary>D-SACK blocks we sent (duplicates we received).</summary>
    public long DsacksSent { get; init; }

    /// <summary>Segments on the SACK scoreboard (in flight).</summary>
    public int ScoreboardSegments { get; init; }

    public long SackedBytes { get; init; }

    public long LostBytes { get; init; }

    /// <summary>The receive window offered to the peer now (tcpi_rcv_wnd): from RCV.NXT to the furthest right edge advertised.</summary>
    public long ReceiveWindow { get; init; }

    /// <summary>The peer's window, scaled (tcpi_snd_wnd, SND.WND).</summary>
    public long SendWindow { get; init; }

    /// <summary>The smallest RTT measured (tcpi_min_rtt); zero before the first sample.</summary>
    public TimeSpan MinRtt { get; init; }

    /// <summary>Bytes acknowledged per second over the last round trip of acknowledgments (tcpi_delivery_rate).</summary>
    public long DeliveryRate { get; init; }

    /// <summary>The peer's acknowledgments showed segments reordered on the path (RACK, RFC 8985 §6.2; Linux's TCPI_OPT reordering).</summary>
    public bool ReorderingSeen { get; init; }

    /// <summary>Segments sent and not cumulatively acknowledged (tcpi_unacked).</summary>
    public int UnackedSegments { get; init; }

    /// <summary>Of those, segments the peer SACKed (tcpi_sacked).</summary>
    public int SackedSegments { get; init; }

    /// <summary>Of those, segments marked lost and not yet retransmitted (tcpi_lost).</summary>
    public int LostSegments { get; init; }

    /// <summary>Of those, segments retransmitted and not yet acknowledged or SACKed (tcpi_retrans).</summary>
    public int RetransmittingSegments { get; init; }

    /// <summary>Payload bytes retransmitted over the connection's life (tcpi_bytes_retrans).</summary>
    public long BytesRetransmitted { get; init; }

    /// <summary>Queued bytes not sent even once (tcpi_notsent_bytes).</summary>
    public long NotSentBytes { get; init; }

    /// <summary>Engine thread or the engine's gate held: the scoreboard is walked.</summary>
    internal static TcpConnectionInfo From(TcpConnection c)
    {
        var scoreboard = c.Sender.Scoreboard;
        int lost = 0, retransmitting = 0;
        for (var i = 0; i < scoreboard.Count; i++)
        {
            ref readonly var record = ref scoreboard[i];
            lost += record.IsLost ? 1 : 0;
            retransmitting += record.IsRetransmittedInFlight ? 1 : 0;
        }

        return From(c, lost, retransmitting);
    }

    private static TcpConnectionInfo From(TcpConnection c, int lostSegments, int retransmittingSegments) => new()
    {
        State = c.State,
        SendUnacknowledged = c.Sender.SendUnacknowledged.Value,
        SendNext = c.Sender.SendNext.Value,
        ReceiveNext = c.ReceiveNext,
        SmoothedRtt = TimeSpan.FromTicks(c.Sender.SmoothedRttMicroseconds * 10),
        RttVariance = TimeSpan.FromTicks(c.Sender.RttVarianceMicroseconds * 10),
        Rto = TimeSpan.FromTicks(c.Sender.RtoMicroseconds * 10),
        BytesInFlight = c.Sender.BytesInFlight,
        CongestionWindow = c.Sender.CongestionControl.CongestionWindow,
        SlowStartThreshold = c.Sender.CongestionControl.SlowStartThreshold,
        MaxSegmentSize = c.MaxSegmentSize,
        SegmentsSent = c.Statistics.SegmentsSent,
        SegmentsReceived = c.Statistics.SegmentsReceived,
        RetransmittedSegments = c.Statistics.SegmentsRetransmitted,
        Timeouts = c.Statistics.Timeouts,
        FastRetransmits = c.Statistics.FastRetransmits,
        InRecovery = c.Sender.LossRecovery.InRecovery,
        LossRecovery = c.Sender.LossRecovery.Name,
        CongestionControl = c.Sender.CongestionControl.Name,
        FirstTransmissionBytes = c.Statistics.FirstTransmissionBytes,
        FirstTransmissionCopiedBytes = c.Statistics.FirstTransmissionCopiedBytes,
        ReceiveCopiedBytes = c.Statistics.ReceiveCopiedBytes,
        OffloadedSuperSegments = c.Statistics.OffloadedSuperSegments,
        OutOfOrderSegments = c.Statistics.OutOfOrderSegments,
        ZeroWindowProbes = c.Statistics.ZeroWindowProbes,
        TailLossProbes = c.Statistics.TailLossProbes,
        SpuriousRetransmissions = c.Statistics.SpuriousRetransmissions,
        Undos = c.Statistics.Undos,
        RackLosses = c.Statistics.RackLosses,
        DsacksSent = c.Statistics.DsacksSent,
        ScoreboardSegments = c.Sender.Scoreboard.Count,
        SackedBytes = c.Sender.Scoreboard.SackedBytes,
        LostBytes = c.Sender.Scoreboard.LostBytes,
        ReceiveWindow = c.Receiver.AdvertisedWindow,
        SendWindow = c.Sender.PeerWindow,
        MinRtt = TimeSpan.FromTicks(c.Sender.MinRttMicroseconds * 10),
        DeliveryRate = c.Sender.DeliveryRate,
        ReorderingSeen = c.Sender.LossRecovery is Tcp.Recovery.RackTlpRecovery { ReorderingSeen: true },
        UnackedSegments = c.Sender.Scoreboard.Count,
        SackedSegments = c.Sender.Scoreboard.SackedSegments,
        LostSegments = lostSegments,
        RetransmittingSegments = retransmittingSegments,
        BytesRetransmitted = c.Statistics.BytesRetransmitted,
        NotSentBytes = c.Sender.NotSentBytes,
    };
}
