namespace Vso.Transport.Tcp.Recovery;

/// <summary>
/// Proportional rate reduction (RFC 6937 §3; obsoleted by RFC 9937, see the SSRB note in <see cref="OnAck"/>): in
/// fast recovery, how much may be sent on each ACK, so that the flight comes down to ssthresh over one round trip
/// in proportion to what the receiver got, instead of a burst or a silence when the window is cut.
/// </summary>
internal sealed class ProportionalRateReduction(IScoreboardSender sender)
{
    private long _prrDelivered;
    private long _prrOut;
    private long _recoverFs;

    /// <summary>What may still be sent on the last ACK (RFC 6937 sndcnt, less what was sent since).</summary>
    public long SendQuota { get; private set; }

    /// <summary>A reused connection (same sender): no episode.</summary>
    public void Reset()
    {
        _prrDelivered = 0;
        _prrOut = 0;
        _recoverFs = 0;
        SendQuota = 0;
    }

    /// <summary>RFC 6937 §3: a recovery episode starts with the flight <paramref name="recoverFs"/> (RecoverFS).</summary>
    public void Start(long recoverFs)
    {
        _recoverFs = recoverFs;
        _prrDelivered = 0;
        _prrOut = 0;
        SendQuota = 0;
    }

    /// <summary>A segment (new or retransmitted) left during the episode.</summary>
    public void OnSent(int length)
    {
        _prrOut += length;
        SendQuota -= length;
    }

    /// <summary>
    /// RFC 6937 §3: on leaving recovery cwnd = ssthresh. PRR has already paced the flight down to it, so the controller
    /// is not asked to deflate to what happens to be in flight at this ACK (NewReno's FlightSize + SMSS rule would leave
    /// a window of two or three segments on a short path).
    /// </summary>
    public void End(long now)
    {
        var pipe = sender.Scoreboard.Pipe(sender.SendUnacknowledged, sender.SendMax);
        sender.CongestionControl.OnRecoveryEnd(Math.Max(pipe, sender.CongestionControl.SlowStartThreshold), now);
    }

    /// <summary>
    /// RFC 6937 §3 PRR: how much may be sent on this ACK, which delivered <paramref name="delivered"/> bytes (acknowledged
    /// or SACKed). Bytes, as the RFC writes it; Linux (tcp_cwnd_reduction) counts the same in segments.
    /// </summary>
    public void OnAck(long delivered)
    {
        var mss = sender.MaxSegmentSize;
        _prrDelivered += delivered;
        var pipe = sender.Scoreboard.Pipe(sender.SendUnacknowledged, sender.SendMax);

        // The target flight in whole segments, rounded up. ssthresh in bytes (FlightSize / 2) is rarely a multiple of
        // the MSS, and the byte-exact bound ssthresh - pipe then leaves a fraction of a segment that no ACK ever
        // completes: Nagle and sender-side SWS avoidance hold a sub-MSS segment back, so the flight stays one segment
        // below ssthresh for the whole episode. With the windows of a lossy short path (two or three segments) that
        // fraction is the one segment that would have been sent after a retransmission and let RACK see the
        // retransmission lost (RFC 8985 §6.2) instead of waiting for the RTO.
        var ssthresh = (sender.CongestionControl.SlowStartThreshold + mss - 1) / mss * mss;
        long sendCount;
        if (pipe > ssthresh)
        {
            // Proportional part: send in proportion to what the receiver got, down to ssthresh over one RTT. The
            // ceiling and the running prr_out keep any fraction for the next ACK (nothing is lost to rounding).
            sendCount = ((_prrDelivered * ssthresh) + _recoverFs - 1) / _recoverFs - _prrOut;
        }
        else
        {
            // PRR-SSRB (RFC 6937 §3, its recommended bound): slow start back up to ssthresh, at most one MSS more than
            // was delivered. RFC 9937 makes the packet-conserving PRR-CRB (no "+ MSS") the default and keeps SSRB for
            // SafeACKs (SND.UNA advances, no new loss), as Linux does; on a short lossy path that was measurably worse
            // (more RTOs on veth at 5% loss each way): with two or three segments in flight, conservation alone lets
            // the retransmission be the last segment sent (one delivered, one resent), and when it is lost nothing
            // later can be SACKed for RACK to notice (RFC 8985 §6.2). SSRB fills the flight up to ssthresh, which
            // RFC 6675 §5 (NextSeg rule 2, new data while pipe < cwnd) also allows.
            var limit = Math.Max(_prrDelivered - _prrOut, delivered) + mss;
            sendCount = Math.Min(ssthresh - pipe, limit);
        }

        // The fast retransmit itself always goes out (RFC 6937 §3, as Linux does).
        if (_prrOut == 0)
        {
            sendCount = Math.Max(sendCount, mss);
        }

        SendQuota = Math.Max(0, sendCount);
    }
}
