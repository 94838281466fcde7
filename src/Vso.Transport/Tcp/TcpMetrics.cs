using System.Diagnostics.Metrics;

namespace Vso.Transport.Tcp;

/// <summary>Stack-wide TCP instruments (System.Diagnostics.Metrics), on the stack's meter.</summary>
internal sealed class TcpMetrics
{
    public TcpMetrics(Meter meter)
    {
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

    public Counter<long> SynCookiesSent { get; }

    public Counter<long> SynCookiesAccepted { get; }

    public Counter<long> SynCookiesRejected { get; }

    public Counter<long> HalfOpenEvicted { get; }

    public Counter<long> AcceptQueueOverflows { get; }

    public void RecordRtt(long microseconds) => Rtt.Record(microseconds / 1000.0);
}
