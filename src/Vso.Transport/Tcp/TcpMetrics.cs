using System.Diagnostics.Metrics;

namespace Vso.Transport.Tcp;

/// <summary>Stack-wide TCP instruments (System.Diagnostics.Metrics), on the stack's meter.</summary>
internal sealed class TcpMetrics
{
    private readonly Meter _meter;

    private readonly int _engine;

    /// <param name="engine">The shard whose layer reports here: its observed series carry the tag vso.engine.</param>
    public TcpMetrics(Meter meter, int engine = 0)
    {
        _meter = meter;
        _engine = engine;
        RetransmittedSegments = meter.CreateCounter<long>("vso.tcp.retransmitted_segments", "{segment}", "Segments sent again.");
        Timeouts = meter.CreateCounter<long>("vso.tcp.timeouts", "{timeout}", "Retransmission timer expiries.");
        FastRecoveries = meter.CreateCounter<long>("vso.tcp.fast_recoveries", "{recovery}", "Entries into fast recovery.");
        ConnectionsOpened = meter.CreateCounter<long>("vso.tcp.connections_opened", "{connection}", "Connections established.");
        ResetsSent = meter.CreateCounter<long>("vso.tcp.resets_sent", "{segment}", "RST segments sent for segments that match no connection.");
        SynsDropped = meter.CreateCounter<long>("vso.tcp.syns_dropped", "{segment}", "SYNs dropped because a listener's accept queue was full.");
        Rtt = meter.CreateHistogram<double>("vso.tcp.rtt", "ms", "Round-trip time samples.");
        TailLossProbes = meter.CreateCounter<long>("vso.tcp.tail_loss_probes", "{probe}", "Tail loss probes sent (RFC 8985 §7).");
        SpuriousRetransmissions = meter.CreateCounter<long>("vso.tcp.spurious_retransmissions", "{segment}", "Retransmissions a D-SACK proved unnecessary (RFC 3708).");
        Undos = meter.CreateCounter<long>("vso.tcp.spurious_undone", "{event}", "Window reductions undone as spurious (D-SACK, Eifel).");
        PrunedBytes = meter.CreateCounter<long>("vso.tcp.memory.pruned", "By", "Out-of-order bytes dropped above the soft memory mark.");
        ConnectionsRefusedByMemory = meter.CreateCounter<long>("vso.tcp.memory.connections_refused", "{connection}", "SYNs dropped because the receive memory limit was reached.");
        ConnectionsResetByMemory = meter.CreateCounter<long>("vso.tcp.memory.connections_reset", "{connection}", "Connections reset as the largest holders when the receive memory limit was reached.");
        ChallengeAcksSent = meter.CreateCounter<long>("vso.tcp.challenge_acks_sent", "{segment}", "Challenge ACKs sent (RFC 5961 §3.2, §4.2, §5.2).");
        ChallengeAcksSuppressedByConnection = meter.CreateCounter<long>("vso.tcp.challenge_acks_suppressed.connection", "{segment}", "Challenge ACKs not sent: the connection's limit (RFC 5961 §7).");
        ChallengeAcksSuppressedByStack = meter.CreateCounter<long>("vso.tcp.challenge_acks_suppressed.stack", "{segment}", "Challenge ACKs not sent: the stack's randomised limit (RFC 5961 §7).");
        InvalidSegmentAcksSuppressed = meter.CreateCounter<long>("vso.tcp.invalid_segment_acks_suppressed", "{segment}", "Duplicate ACKs for out-of-window or PAWS-failing segments not sent (rate limit).");
        ResetsSuppressed = meter.CreateCounter<long>("vso.tcp.resets_suppressed", "{segment}", "RSTs for unknown connections not sent (rate limit).");
        SynCookiesSent = meter.CreateCounter<long>("vso.tcp.syn_cookies_sent", "{segment}", "SYN-ACKs carrying a SYN cookie, sent without keeping state (RFC 4987 §3.6).");
        SynCookiesAccepted = meter.CreateCounter<long>("vso.tcp.syn_cookies_accepted", "{connection}", "Connections established from a valid returning SYN cookie.");
        SynCookiesRejected = meter.CreateCounter<long>("vso.tcp.syn_cookies_rejected", "{segment}", "ACKs to a listener whose cookie was invalid or expired.");
        HalfOpenEvicted = meter.CreateCounter<long>("vso.tcp.half_open_evicted", "{connection}", "Half-open connections dropped to admit a new SYN (RFC 4987 §3.4).");
        AcceptQueueOverflows = meter.CreateCounter<long>("vso.tcp.accept_queue_overflows", "{segment}", "Handshake-completing ACKs dropped because the accept queue was full.");
    }

    public Counter<long> RetransmittedSegments { get; }

    public Counter<long> Timeouts { get; }

    public Counter<long> FastRecoveries { get; }

    public Counter<long> ConnectionsOpened { get; }

    public Counter<long> ResetsSent { get; }

    public Counter<long> SynsDropped { get; }

    public Histogram<double> Rtt { get; }

    public Counter<long> TailLossProbes { get; }

    public Counter<long> SpuriousRetransmissions { get; }

    public Counter<long> Undos { get; }

    public Counter<long> PrunedBytes { get; }

    public Counter<long> ConnectionsRefusedByMemory { get; }

    public Counter<long> ConnectionsResetByMemory { get; }

    /// <summary>
    /// Publishes the receive memory of <paramref name="budget"/>: block bytes held (what the limit counts), and the bytes
    /// they hold by kind. Observed on collection only, so the packet path pays nothing.
    /// </summary>
    public void ObserveMemory(MemoryBudget budget)
    {
        // Every engine observes its own budget: the engine tag keeps their series apart (one instrument name per meter).
        var tag = new KeyValuePair<string, object?>("vso.engine", _engine);
        _meter.CreateObservableUpDownCounter("vso.tcp.memory.held", () => new Measurement<long>(budget.HeldBytes, tag), "By", "Receive memory held by connections (pool blocks).");
        _meter.CreateObservableUpDownCounter(
            "vso.tcp.memory.bytes",
            () => new[]
            {
                new Measurement<long>(budget.InOrderBytes, new KeyValuePair<string, object?>("kind", "in_order"), tag),
                new Measurement<long>(budget.OutOfOrderBytes, new KeyValuePair<string, object?>("kind", "out_of_order"), tag),
            },
            "By",
            "Received bytes held, by kind: in order and unread, or out of order beyond RCV.NXT.");
    }
    /// <summary>Publishes the number of 4-tuples in TIME-WAIT (compact entries, the connections gone); observed on collection only.</summary>
    public void ObserveTimeWait(TimeWaitTable table)
    {
        var tag = new KeyValuePair<string, object?>("vso.engine", _engine);
        _meter.CreateObservableUpDownCounter("vso.tcp.time_wait", () => new Measurement<long>(table.Count, tag), "{connection}", "Connections in TIME-WAIT (RFC 9293 §3.6.1), kept as compact entries for 2*MSL.");
    }

    public Counter<long> ChallengeAcksSent { get; }

    public Counter<long> ChallengeAcksSuppressedByConnection { get; }

    public Counter<long> ChallengeAcksSuppressedByStack { get; }

    public Counter<long> InvalidSegmentAcksSuppressed { get; }

    public Counter<long> ResetsSuppressed { get; }
    public Counter<long> SynCookiesSent { get; }

    public Counter<long> SynCookiesAccepted { get; }

    public Counter<long> SynCookiesRejected { get; }

    public Counter<long> HalfOpenEvicted { get; }

    public Counter<long> AcceptQueueOverflows { get; }

    public void RecordRtt(long microseconds) => Rtt.Record(microseconds / 1000.0);
}
