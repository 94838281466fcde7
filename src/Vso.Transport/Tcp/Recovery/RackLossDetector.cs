namespace Vso.Transport.Tcp.Recovery;

/// <summary>
/// RACK loss detection (RFC 8985 §6): a segment is lost when one sent after it was delivered and it has been
/// outstanding for longer than the RTT plus a reordering window. Marks losses on the scoreboard and runs the
/// reordering timer (§6.3); what is marked is repaired by <see cref="SackRepair"/>.
/// </summary>
internal sealed class RackLossDetector(IScoreboardSender sender)
{
    private const int DupThresh = 3;
    private const int ReorderWindowPersistence = 16;  // RFC 8985 §6.2 step 4

    // RACK.xmit_ts, RACK.end_seq and RACK.rtt of the most recently sent delivered segment (§6.2 step 2).
    private long _rackXmitTs = -1;
    private uint _rackEndSeq;
    private long _rackRtt;

    // Reordering (§6.2 steps 3-4): the highest sequence delivered, whether reordering was seen, and the window's
    // multiplier with its persistence, grown by D-SACK rounds.
    private uint _fack;

    /// <summary>
    /// RACK.fack holds a sequence number: no 0 sentinel. Serial-number comparison (RFC 1982) with 0 flips with the half
    /// of the space the ISN lies in: with an ISN in the upper half the first delivery compared below 0, which set
    /// reordering_seen on a path that never reordered and held every loss for min_RTT/4 (RFC 8985 §6.2 step 4).
    /// </summary>
    private bool _hasFack;
    private bool _reorderingSeen;
    private int _reorderWindowMultiplier = 1;
    private int _reorderWindowPersist;
    private bool _dsackRound;
    private uint _dsackRoundEnd;

    /// <summary>A segment was delivered below one delivered before it without being retransmitted (§6.2 step 3).</summary>
    public bool ReorderingSeen => _reorderingSeen;

    /// <summary>When the reordering window of the segment waiting longest passes (§6.3), or 0.</summary>
    public long ReorderDeadline { get; private set; }

    /// <summary>A reused connection (same sender): RACK's state as a new connection has it (RFC 8985 §6.1).</summary>
    public void Reset()
    {
        _rackXmitTs = -1;
        _rackEndSeq = 0;
        _rackRtt = 0;
        _fack = 0;
        _hasFack = false;
        _reorderingSeen = false;
        _reorderWindowMultiplier = 1;
        _reorderWindowPersist = 0;
        _dsackRound = false;
        _dsackRoundEnd = 0;
        ReorderDeadline = 0;
    }

    /// <summary>Every ACK, before detection: D-SACK adaptation of the window and the RACK state (§6.2 steps 1-4).</summary>
    public void OnAck(in AckEvent ack, long now)
    {
        OnDsack(ack);
        UpdateRack(ack, now);
    }

    /// <summary>Leaving a recovery episode: the grown reordering window persists for 16 of them (§6.2 step 4).</summary>
    public void OnRecoveryEnd()
    {
        if (_reorderWindowPersist > 0 && --_reorderWindowPersist == 0)
        {
            _reorderWindowMultiplier = 1;
        }
    }

    /// <summary>The retransmission timeout marked everything lost: no segment waits for its reordering window.</summary>
    public void CancelReorderTimer() => ReorderDeadline = 0;

    /// <summary>RFC 8985 §6.2 step 4: the reordering window in microseconds.</summary>
    public long ReorderWindow(bool inRecovery)
    {
        if (!_reorderingSeen && (inRecovery || sender.Scoreboard.SackedSegments >= DupThresh))
        {
            return 0;
        }

        return Math.Min(_reorderWindowMultiplier * sender.MinRttMicroseconds / 4, sender.SmoothedRttMicroseconds);
    }

    /// <summary>
    /// RFC 8985 §6.2 step 5: a segment sent before the most recently delivered one, and outstanding for longer
    /// than the RTT plus the reordering window, is lost; one still inside the window arms the reordering timer.
    /// Returns whether it marked any; <paramref name="firstLost"/> is then the start of the lowest it marked.
    /// </summary>
    public bool DetectLosses(long now, bool inRecovery, out uint firstLost)
    {
        firstLost = 0;
        if (_rackXmitTs < 0)
        {
            return false;
        }

        var scoreboard = sender.Scoreboard;
        var reorderWindow = ReorderWindow(inRecovery);
        long timeout = 0;
        var marked = false;

        // Without retransmissions the scoreboard is in send-time order too, so the records sent after RACK's reference
        // all follow the first of them: stop there, as Linux walks its time-sorted queue (tcp_rack_detect_loss). A
        // clean transfer then looks at one record per ACK instead of every record in flight.
        var timeOrdered = scoreboard.RetransmittedRecords == 0;
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
                if (timeOrdered)
                {
                    break;
                }

                continue;
            }

            var remaining = r.SentAt + _rackRtt + reorderWindow - now;
            if (remaining <= 0)
            {
                var start = r.Start;
                if (scoreboard.MarkLost(i))
                {
                    // The scoreboard is in sequence order: the first marked is the lowest.
                    if (!marked)
                    {
                        firstLost = start;
                    }

                    marked = true;
                    sender.Report(RecoveryEvent.RackLoss);
                }
            }
            else
            {
                timeout = Math.Max(timeout, remaining);
            }
        }

        ReorderDeadline = timeout > 0 ? now + timeout : 0;
        return marked;
    }

    /// <summary>§6.3: the reordering timer expired: detect again. False when it was not due.</summary>
    public bool OnReorderTimer(long now, bool inRecovery, out uint firstLost)
    {
        firstLost = 0;
        if (ReorderDeadline == 0 || now < ReorderDeadline)
        {
            return false;
        }

        ReorderDeadline = 0;
        return DetectLosses(now, inRecovery, out firstLost);
    }

    /// <summary>D-SACK: reordering-window adaptation (RFC 8985 §6.2 step 4), once per round trip.</summary>
    private void OnDsack(in AckEvent ack)
    {
        if (ack.DsackBytes == 0)
        {
            return;
        }

        if (!_dsackRound || SequenceNumber.Ge(ack.Acknowledgment, _dsackRoundEnd))
        {
            _dsackRound = true;
            _dsackRoundEnd = sender.SendMax;
            _reorderWindowMultiplier = Math.Min(_reorderWindowMultiplier + 1, 64);
            _reorderWindowPersist = ReorderWindowPersistence;
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
        var minRtt = sender.MinRttMicroseconds;

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

        if (!_hasFack)
        {
            // Nothing was delivered before this ACK but what it acknowledges cumulatively.
            _hasFack = true;
            _fack = ack.Acknowledgment;
        }

        // Step 3: delivering a never-retransmitted segment below the highest delivered one means reordering.
        if (!ack.NewestWasRetransmitted && SequenceNumber.Lt(ack.NewestEnd, _fack))
        {
            _reorderingSeen = true;
        }

        var highest = SequenceNumber.Max(sender.Scoreboard.HighestSackedEnd, ack.Acknowledgment);
        _fack = SequenceNumber.Max(_fack, highest);
    }
}
