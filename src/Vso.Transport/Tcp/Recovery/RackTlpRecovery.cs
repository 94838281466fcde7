namespace Vso.Transport.Tcp.Recovery;

/// <summary>
/// SACK-based loss recovery: RACK-TLP loss detection (RFC 8985) over the SACK scoreboard, repair in the
/// spirit of RFC 6675 (lost segments first, then new data, the pipe as the measure of what is in flight),
/// proportional rate reduction of the window during recovery (RFC 6937), and undo of spurious
/// reductions proved by D-SACK (RFC 2883, RFC 3708) or Eifel (RFC 3522). Without SACK it behaves as
/// <see cref="NewRenoRecovery"/>. The default when SACK is negotiated.
/// </summary>
internal sealed class RackTlpRecovery : ILossRecovery
{
    private const int DupThresh = 3;
    private const long WorstCaseDelayedAck = 200_000; // RFC 8985 §7.2 WCDelAckT
    private const int ReorderWindowPersistence = 16;  // RFC 8985 §6.2 step 4
    private const int MaxProbesPerSilence = 3;         // see ScheduleProbe

    private readonly NewRenoRecovery _fallback = new();
    private ILossRecoverySender _sender = null!;

    // Recovery episode.
    private bool _inRecovery;
    private bool _afterTimeout;
    private uint _recoveryPoint;
    private uint _lostHint;

    // PRR (RFC 6937 §3).
    private long _prrDelivered;
    private long _prrOut;
    private long _recoverFs;
    private long _sendQuota;

    // RACK (RFC 8985 §6).
    private long _rackXmitTs = -1;
    private uint _rackEndSeq;
    private long _rackRtt;
    private uint _fack;
    private bool _reorderingSeen;
    private int _reorderWindowMultiplier = 1;
    private int _reorderWindowPersist;
    private bool _dsackRound;
    private uint _dsackRoundEnd;
    private long _reorderDeadline;

    // TLP (RFC 8985 §7).
    private long _probeDeadline;
    private bool _probeOutstanding;
    private uint _probeEndSeq;
    private bool _probeWasRetransmission;
    private int _probesSinceAck;
    private long _probeRtoDeadline;

    // Undo (RFC 3708 accounting): retransmissions of the last episode not yet proven spurious by D-SACK.
    private int _undoRetransmissions = -1;

    /// <summary>
    /// Send a probe also in fast recovery when no ACK arrives for a probe timeout (see <see cref="SendRecoveryProbe"/>).
    /// Default true; false keeps RFC 8985 §7.2 to the letter (no probe in recovery: a silent recovery waits for the RTO).
    /// </summary>
    public bool ProbeInRecovery { get; init; } = true;

    public string Name => _sender is { SackEnabled: false } ? "newreno" : "rack-tlp";

    public bool InRecovery => Sack ? _inRecovery : _fallback.InRecovery;

    /// <summary>The reordering window RACK applies now, in microseconds (for tests and TCP info).</summary>
    public long ReorderWindow => ReorderWindowNow();

    public long TimerDeadline
    {
        get
        {
            if (!Sack)
            {
                return 0;
            }

            if (_reorderDeadline == 0)
            {
                return _probeDeadline;
            }

            return _probeDeadline == 0 ? _reorderDeadline : Math.Min(_reorderDeadline, _probeDeadline);
        }
    }

    private bool Sack => _sender.SackEnabled;

    public void Attach(ILossRecoverySender sender)
    {
        _sender = sender;
        _fallback.Attach(sender);
    }

    public void OnAck(in AckEvent ack)
    {
        if (!Sack)
        {
            _fallback.OnAck(ack);
            return;
        }

        var sender = _sender;
        var now = sender.NowMicroseconds;
        _probesSinceAck = 0;
        OnDsack(ack);
        UpdateRack(ack, now);

        // §7.4.2 (TLP_process_ack): the episode of a tail loss probe ends when an ACK reaches TLP.end_seq and
        //  - the probe was new data, or a D-SACK says the retransmitted probe was a duplicate: no loss;
        //  - the ACK goes beyond TLP.end_seq with no D-SACK: the probe repaired a loss, respond once;
        //  - a pure duplicate ACK without SACK: both arrived, no loss.
        // An ACK of exactly TLP.end_seq proves nothing yet: the receiver acknowledges the original first and its
        // D-SACK for the probe follows (a receiver slower than the probe timeout does exactly this), so wait.
        if (_probeOutstanding && SequenceNumber.Ge(ack.Acknowledgment, _probeEndSeq))
        {
            if (!_probeWasRetransmission || ack.DsackBytes > 0)
            {
                _probeOutstanding = false;
            }
            else if (SequenceNumber.Gt(ack.Acknowledgment, _probeEndSeq))
            {
                _probeOutstanding = false;
                if (!_inRecovery)
                {
                    sender.CongestionControl.OnCongestionEvent(sender.BytesInFlight, now);
                    sender.CongestionControl.OnRecoveryEnd(sender.BytesInFlight, now);
                }
            }
            else if (ack.BytesAcknowledged == 0 && ack.BytesSacked == 0 && ack.DsackBytes == 0)
            {
                _probeOutstanding = false;
            }
        }

        var marked = DetectLosses(now);

        if (_inRecovery && SequenceNumber.Ge(ack.Acknowledgment, _recoveryPoint))
        {
            EndRecovery(now);
        }
        else if (!_inRecovery && marked)
        {
            StartRecovery(now);
        }

        if (_inRecovery && !_afterTimeout)
        {
            UpdateProportionalRateReduction(ack.BytesAcknowledged + ack.BytesSacked);
        }

        ScheduleProbe(now);
    }

    /// <summary>Retransmits lost segments while the window allows, then says how much new data may follow.</summary>
    public long SendAllowance()
    {
        if (!Sack)
        {
            return _fallback.SendAllowance();
        }

        var sender = _sender;
        while (Quota() > 0)
        {
            var index = NextLost();
            if (index < 0)
            {
                break;
            }

            // The hint stays at this record: a retransmission shorter than the record (more option bytes
            // than when it was first sent) splits it, and the rest still waits here.
            var record = sender.Scoreboard[index];
            _lostHint = record.Start;
            if (sender.Retransmit(record.Start, record.Length) == 0 && sender.Scoreboard.NeedsRetransmission(index))
            {
                break;
            }
        }

        return Quota();
    }

    public void OnTransmitted(uint sequence, int length, bool isRetransmission)
    {
        if (!Sack)
        {
            return;
        }

        if (_inRecovery && !_afterTimeout)
        {
            _prrOut += length;
            _sendQuota -= length;
        }

        if (isRetransmission && _undoRetransmissions >= 0)
        {
            _undoRetransmissions++;
        }

        if (!isRetransmission)
        {
            ScheduleProbe(_sender.NowMicroseconds);
        }
    }

    public void OnRetransmissionTimeout()
    {
        if (!Sack)
        {
            _fallback.OnRetransmissionTimeout();
            return;
        }

        var sender = _sender;

        // RFC 6675 §5.1 / RFC 8985 §6.3: after a timeout every segment not SACKed is presumed lost and is
        // resent in slow start from the loss window; no rewind of snd.nxt, the scoreboard drives it.
        sender.CongestionControl.OnRetransmissionTimeout(sender.Scoreboard.Pipe(sender.SendUnacknowledged, sender.SendMax), sender.NowMicroseconds);
        sender.Scoreboard.MarkAllLost();
        _lostHint = sender.SendUnacknowledged;
        _inRecovery = true;
        _afterTimeout = true;
        _recoveryPoint = sender.SendMax;
        _undoRetransmissions = -1;
        _probeOutstanding = false;
        _probesSinceAck = 0;
        _probeDeadline = 0;
        _reorderDeadline = 0;
    }

    public void OnTimer(long nowMicroseconds)
    {
        if (!Sack)
        {
            return;
        }

        if (_reorderDeadline != 0 && nowMicroseconds >= _reorderDeadline)
        {
            // §6.3: the reordering window passed for a segment that was waiting: detect again.
            _reorderDeadline = 0;
            if (DetectLosses(nowMicroseconds) && !_inRecovery)
            {
                StartRecovery(nowMicroseconds);
                UpdateProportionalRateReduction(0);
            }
        }

        if (_probeDeadline != 0 && nowMicroseconds >= _probeDeadline)
        {
            _probeDeadline = 0;
            SendProbe();
        }
    }

    public void OnSpuriousTimeout()
    {
        if (!Sack)
        {
            _fallback.OnSpuriousTimeout();
            return;
        }

        // RFC 4015: nothing was lost; forget the loss marks and restore the window.
        _sender.Scoreboard.ClearLost();
        _inRecovery = false;
        _afterTimeout = false;
        _sender.CongestionControl.OnSpuriousCongestionEvent();
        _sender.Report(RecoveryEvent.Undo);
    }

    private long Quota()
    {
        var sender = _sender;
        if (_inRecovery && !_afterTimeout)
        {
            return _sendQuota;
        }

        return sender.CongestionControl.CongestionWindow - sender.Scoreboard.Pipe(sender.SendUnacknowledged, sender.SendMax);
    }

    private void StartRecovery(long now)
    {
        var sender = _sender;
        _inRecovery = true;
        _afterTimeout = false;
        _recoveryPoint = sender.SendMax;

        // RFC 6937 §3: RecoverFS is the flight when recovery starts.
        _recoverFs = Math.Max(1, (long)(uint)(sender.SendMax - sender.SendUnacknowledged));
        _prrDelivered = 0;
        _prrOut = 0;
        _sendQuota = 0;
        _undoRetransmissions = 0;

        // RFC 6675 §5 step (4.2) / RFC 5681 eqn. (4): ssthresh from FlightSize (SND.MAX - SND.UNA), not from pipe:
        // pipe leaves out what is SACKed or marked lost, so halving it cut the window far below half.
        sender.CongestionControl.OnCongestionEvent(_recoverFs, now);
        sender.Report(RecoveryEvent.FastRecovery);
    }

    private void EndRecovery(long now)
    {
        var sender = _sender;
        if (!_afterTimeout)
        {
            // RFC 6937 §3: on leaving recovery cwnd = ssthresh. PRR has already paced the flight down to it, so
            // the controller is not asked to deflate to what happens to be in flight at this ACK (NewReno's
            // FlightSize + SMSS rule would leave a window of two or three segments on a short path).
            var pipe = sender.Scoreboard.Pipe(sender.SendUnacknowledged, sender.SendMax);
            sender.CongestionControl.OnRecoveryEnd(Math.Max(pipe, sender.CongestionControl.SlowStartThreshold), now);
        }

        _inRecovery = false;
        _afterTimeout = false;
        if (_reorderWindowPersist > 0 && --_reorderWindowPersist == 0)
        {
            _reorderWindowMultiplier = 1;
        }
    }

    /// <summary>
    /// RFC 6937 §3 PRR (obsoleted by RFC 9937, see the SSRB note below): how much may be sent on this ACK during
    /// recovery. Bytes, as the RFC writes it; Linux (tcp_cwnd_reduction) counts the same in segments.
    /// </summary>
    private void UpdateProportionalRateReduction(long delivered)
    {
        var sender = _sender;
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

        _sendQuota = Math.Max(0, sendCount);
    }

    /// <summary>D-SACK: reordering-window adaptation (RFC 8985 §6.2 step 4) and spurious-retransmission undo (RFC 3708).</summary>
    private void OnDsack(in AckEvent ack)
    {
        if (ack.DsackBytes == 0)
        {
            return;
        }

        var sender = _sender;
        if (!_dsackRound || SequenceNumber.Ge(ack.Acknowledgment, _dsackRoundEnd))
        {
            _dsackRound = true;
            _dsackRoundEnd = sender.SendMax;
            _reorderWindowMultiplier = Math.Min(_reorderWindowMultiplier + 1, 64);
            _reorderWindowPersist = ReorderWindowPersistence;
        }

        if (!ack.DsackCoversRetransmission)
        {
            return;
        }

        sender.Report(RecoveryEvent.SpuriousRetransmission);
        if (_undoRetransmissions > 0 && --_undoRetransmissions == 0)
        {
            // Every retransmission of the last episode arrived twice: the reduction was spurious. Undo it.
            _undoRetransmissions = -1;
            sender.CongestionControl.OnSpuriousCongestionEvent();
            sender.Report(RecoveryEvent.Undo);
            if (_inRecovery && !_afterTimeout)
            {
                _inRecovery = false;
            }
        }
    }

    /// <summary>RFC 8985 §6.2 steps 1-3: the most recently sent delivered segment, its RTT, and reordering.</summary>
    private void UpdateRack(in AckEvent ack, long now)
    {
        if (ack.NewestSentAt < 0)
        {
            return;
        }

        var rtt = now - ack.NewestSentAt;
        var minRtt = _sender.MinRttMicroseconds;

        // Step 2: a retransmitted segment delivered faster than the minimum RTT was the original's delivery.
        if (!(ack.NewestWasRetransmitted && rtt < minRtt))
        {
            _rackRtt = rtt;
            if (ack.NewestSentAt > _rackXmitTs || (ack.NewestSentAt == _rackXmitTs && SequenceNumber.Gt(ack.NewestEnd, _rackEndSeq)))
            {
                _rackXmitTs = ack.NewestSentAt;
                _rackEndSeq = ack.NewestEnd;
            }
        }

        // Step 3: delivering a never-retransmitted segment below the highest delivered one means reordering.
        if (!ack.NewestWasRetransmitted && SequenceNumber.Lt(ack.NewestEnd, _fack))
        {
            _reorderingSeen = true;
        }

        var highest = SequenceNumber.Max(_sender.Scoreboard.HighestSackedEnd, ack.Acknowledgment);
        _fack = SequenceNumber.Max(_fack, highest);
    }

    /// <summary>RFC 8985 §6.2 step 4.</summary>
    private long ReorderWindowNow()
    {
        if (!_reorderingSeen && (_inRecovery || _sender.Scoreboard.SackedSegments >= DupThresh))
        {
            return 0;
        }

        return Math.Min(_reorderWindowMultiplier * _sender.MinRttMicroseconds / 4, _sender.SmoothedRttMicroseconds);
    }

    /// <summary>
    /// RFC 8985 §6.2 step 5: a segment sent before the most recently delivered one, and outstanding for longer
    /// than the RTT plus the reordering window, is lost; one still inside the window arms the reordering timer.
    /// </summary>
    private bool DetectLosses(long now)
    {
        if (_rackXmitTs < 0)
        {
            return false;
        }

        var scoreboard = _sender.Scoreboard;
        var reorderWindow = ReorderWindowNow();
        long timeout = 0;
        var marked = false;
        for (var i = 0; i < scoreboard.Count; i++)
        {
            ref readonly var r = ref scoreboard[i];
            if (r.IsSacked || (r.IsLost && !r.IsRetransmittedInFlight))
            {
                continue;
            }

            var sentBefore = r.SentAt < _rackXmitTs || (r.SentAt == _rackXmitTs && SequenceNumber.Lt(r.End, _rackEndSeq));
            if (!sentBefore)
            {
                continue;
            }

            var remaining = r.SentAt + _rackRtt + reorderWindow - now;
            if (remaining <= 0)
            {
                var start = r.Start;
                if (scoreboard.MarkLost(i))
                {
                    marked = true;
                    _sender.Report(RecoveryEvent.RackLoss);
                    if (SequenceNumber.Lt(start, _lostHint))
                    {
                        _lostHint = start;
                    }
                }
            }
            else
            {
                timeout = Math.Max(timeout, remaining);
            }
        }

        _reorderDeadline = timeout > 0 ? now + timeout : 0;
        return marked;
    }

    /// <summary>The first segment waiting for retransmission at or after the hint (RFC 6675 NextSeg rule 1).</summary>
    private int NextLost()
    {
        var scoreboard = _sender.Scoreboard;
        var start = SequenceNumber.Gt(_lostHint, _sender.SendUnacknowledged) ? scoreboard.IndexOf(_lostHint) : 0;
        if (start < 0)
        {
            return -1;
        }

        for (var i = start; i < scoreboard.Count; i++)
        {
            if (scoreboard.NeedsRetransmission(i))
            {
                return i;
            }
        }

        return -1;
    }

    /// <summary>
    /// RFC 8985 §7.2: arm the probe timeout while data is outstanding outside recovery; and, beyond the RFC, in fast
    /// recovery too (see <see cref="SendRecoveryProbe"/>), and again, with the timeout doubled, when a probe met
    /// silence (at most <see cref="MaxProbesPerSilence"/> probes until an ACK arrives). RFC 8985 §7.3 sends one probe
    /// per episode and leaves its loss to the RTO. But the probe is answered by a single ACK, and a receiver delays the
    /// ACK of a lone in-order segment (Linux: 40 ms): on veth at 5% loss each way, client-side NFLOG traces showed nearly
    /// every remaining RTO to be a flight whose ACK was dropped, a probe whose delayed ACK 40 ms later was dropped too,
    /// and then 160 ms of silence. A second probe two PTOs later leaves two segments unacknowledged at the receiver,
    /// which it acknowledges at once (RFC 5681 §4.2; a duplicate, the same), so the episode ends in a few PTOs instead
    /// of a delayed ACK or an RTO. QUIC backs its probe timeout off and probes again in the same way (RFC 9002 §6.2.1,
    /// §6.2.4). The RTO stays armed behind the probes and still fires if they all meet silence.
    /// </summary>
    private void ScheduleProbe(long now)
    {
        var sender = _sender;
        if (_afterTimeout || sender.Scoreboard.Count == 0 || (_inRecovery && !ProbeInRecovery)
            || _probesSinceAck >= MaxProbesPerSilence || (_probeOutstanding && _probesSinceAck == 0))
        {
            // (An episode still outstanding after an ACK: the path answers, RACK takes over, as §7.4 says.)
            _probeDeadline = 0;
            return;
        }

        // §7.2: PTO = 2 SRTT, 1 s before the first RTT sample; never below the engine's 1 ms timer tick.
        var timeout = sender.HasRttSample ? Math.Max(2 * sender.SmoothedRttMicroseconds, 1_000) : 1_000_000;

        // §7.2: WCDelAckT only when a single segment is in flight. Called from OnTransmitted before snd.max covers
        // the segment just sent, so count up to the scoreboard's last record, or every first flight of two
        // segments would wait the extra 200 ms and lose the race against the RTO. Not in recovery: the receiver holds
        // out-of-order data then and acknowledges at once (RFC 5681 §4.2), also the segment that fills the hole.
        var last = sender.Scoreboard[sender.Scoreboard.Count - 1];
        var high = SequenceNumber.Max(sender.SendMax, last.Start + (uint)last.Length);
        if (!_inRecovery && _probesSinceAck == 0 && sender.Scoreboard.Pipe(sender.SendUnacknowledged, high) <= sender.MaxSegmentSize)
        {
            timeout += WorstCaseDelayedAck;
        }

        // The probe must come before the retransmission timeout, or it is pointless.
        timeout = Math.Min(timeout, sender.RtoMicroseconds);
        if (_probesSinceAck > 0)
        {
            // Backoff for a probe that met silence (RFC 9002 §6.2.1: the PTO doubles with each probe). These further
            // probes leave the RTO where the first probe put it (§7.3), so they only fill the time before it: on a dead
            // path the RTO comes no later than with one probe.
            timeout <<= _probesSinceAck;
            if (now + timeout >= _probeRtoDeadline)
            {
                _probeDeadline = 0;
                return;
            }
        }

        _probeDeadline = now + timeout;
    }

    /// <summary>RFC 8985 §7.3: new data if any may go, else the last segment again.</summary>
    private void SendProbe()
    {
        var sender = _sender;
        if (sender.Scoreboard.Count == 0 || _afterTimeout)
        {
            return;
        }

        if (_inRecovery)
        {
            SendRecoveryProbe();
            return;
        }

        // Counted before it is sent: sending calls back into OnTransmitted, which arms the next probe (backed off).
        if (!_probeOutstanding)
        {
            _probeWasRetransmission = false;
        }

        _probeOutstanding = true;
        NoteProbe();
        if (sender.SendNewSegment() == 0)
        {
            var last = sender.Scoreboard[sender.Scoreboard.Count - 1];
            sender.Retransmit(last.Start, last.Length);
            _probeWasRetransmission = true;
            ScheduleProbe(sender.NowMicroseconds);
        }

        _probeEndSeq = sender.SendMax;
        sender.Report(_probesSinceAck == 1 ? RecoveryEvent.TailLossProbe : RecoveryEvent.RepeatedTailLossProbe);
    }

    /// <summary>
    /// A probe in fast recovery, when no ACK came for a PTO. RFC 8985 §7.2 arms TLP only outside recovery and leaves a
    /// silent recovery to the RTO, trusting RACK to find lost retransmissions. RACK can only do so when something sent
    /// after the retransmission is SACKed; with the two- or three-segment flights of a short lossy path the end of an
    /// episode is often the retransmission plus one segment, answered by a single ACK, and losing that ACK (or both
    /// segments) left the sender silent for a 200 ms RTO, about one episode in twenty at 5% loss each way (veth,
    /// kernel receiver). QUIC arms its probe timeout in recovery as well (RFC 9002 §6.2), and so does this: one probe
    /// per PTO of silence (backed off, see <see cref="ScheduleProbe"/>), new data if the peer's window allows, else
    /// the highest segment not yet SACKed. Its ACK either acknowledges everything (only the ACK was lost) or SACKs the probe, sent after the
    /// retransmission, so that RACK marks the retransmission lost (§6.2) and PRR resends it.
    /// </summary>
    private void SendRecoveryProbe()
    {
        var sender = _sender;
        NoteProbe();
        if (sender.SendNewSegment() == 0)
        {
            var scoreboard = sender.Scoreboard;
            for (var i = scoreboard.Count - 1; i >= 0; i--)
            {
                ref readonly var r = ref scoreboard[i];
                if (!r.IsSacked)
                {
                    sender.Retransmit(r.Start, r.Length);
                    break;
                }
            }

            ScheduleProbe(sender.NowMicroseconds);
        }

        sender.Report(_probesSinceAck == 1 ? RecoveryEvent.TailLossProbe : RecoveryEvent.RepeatedTailLossProbe);
    }

    /// <summary>Counts a probe before it is sent (sending arms the next one); the first of a silence fixes the RTO deadline (§7.3).</summary>
    private void NoteProbe()
    {
        if (++_probesSinceAck == 1)
        {
            _probeRtoDeadline = _sender.NowMicroseconds + _sender.RtoMicroseconds;
        }
    }
}
