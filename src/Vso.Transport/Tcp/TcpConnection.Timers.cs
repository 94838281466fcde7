namespace Vso.Transport.Tcp;

/// <summary>
/// The connection's timers: retransmission (RFC 6298), delayed ACK, persist (zero-window probes),
/// keepalive (RFC 9293 §3.8.4) and TIME-WAIT. Each is a deadline in engine microseconds (0 = off);
/// the engine's timer queue holds one entry per connection for the earliest.
/// </summary>
internal sealed partial class TcpConnection
{
    private long _retransmitDeadline;
    private long _delayedAckDeadline;
    private long _persistDeadline;
    private long _keepaliveDeadline;
    private long _timeWaitDeadline;
    private int _retransmissionsOfHead;
    private int _persistBackoff;
    private int _keepaliveProbesSent;
    private int _segmentsSinceAck;
    private long _lastReceivedAt;
    private uint _timeoutTsVal;

    private bool _rttTiming;
    private uint _rttSequence;
    private long _rttSentAt;

    /// <summary>This connection's entry in the engine's timer wheel (its earliest deadline); created at the first arm.</summary>
    public Engine.TimerEntry<TcpConnection>? TimerEntry { get; set; }

    /// <summary>Earliest pending deadline, or 0 when no timer runs.</summary>
    public long NextDeadline
    {
        get
        {
            var next = long.MaxValue;
            Consider(ref next, _retransmitDeadline);
            Consider(ref next, _delayedAckDeadline);
            Consider(ref next, _persistDeadline);
            Consider(ref next, _keepaliveDeadline);
            Consider(ref next, _timeWaitDeadline);
            if (State is not (TcpState.Closed or TcpState.TimeWait))
            {
                Consider(ref next, _recovery.TimerDeadline);
            }

            return next == long.MaxValue ? 0 : next;

            static void Consider(ref long next, long deadline)
            {
                if (deadline != 0 && deadline < next)
                {
                    next = deadline;
                }
            }
        }
    }

    /// <summary>Runs every timer that is due.</summary>
    public void OnTimer(long now)
    {
        if (_timeWaitDeadline != 0 && now >= _timeWaitDeadline)
        {
            _timeWaitDeadline = 0;
            Terminate(null);
            return;
        }

        // RFC 8985 §7.2: the probe timeout is capped at the RTO's expiration, so a probe due at the same time (or
        // before) goes first; sending it re-arms the RTO (§7.3, see Report), which then does not fire now.
        var probeFirst = _recovery.TimerDeadline;
        if (probeFirst != 0 && now >= probeFirst && (_retransmitDeadline == 0 || probeFirst <= _retransmitDeadline) && State is not (TcpState.TimeWait or TcpState.Closed))
        {
            _recovery.OnTimer(now);
            _layer.MarkForOutput(this);
        }

        if (_retransmitDeadline != 0 && now >= _retransmitDeadline)
        {
            _retransmitDeadline = 0;
            OnRetransmitTimer(now);
            if (State == TcpState.Closed)
            {
                return;
            }
        }

        var recoveryDeadline = _recovery.TimerDeadline;
        if (recoveryDeadline != 0 && now >= recoveryDeadline && State is not (TcpState.TimeWait or TcpState.Closed))
        {
            _recovery.OnTimer(now);
            _layer.MarkForOutput(this);
        }

        if (_persistDeadline != 0 && now >= _persistDeadline)
        {
            _persistDeadline = 0;
            OnPersistTimer(now);
        }

        if (_delayedAckDeadline != 0 && now >= _delayedAckDeadline)
        {
            _delayedAckDeadline = 0;
            _ackNow = true;
            _layer.MarkForOutput(this);
        }

        if (_keepaliveDeadline != 0 && now >= _keepaliveDeadline)
        {
            _keepaliveDeadline = 0;
            OnKeepaliveTimer(now);
        }
    }

    /// <summary>Notes that the peer spoke: keepalive starts over.</summary>
    public void OnPeerActivity(long now)
    {
        _lastReceivedAt = now;
        _keepaliveProbesSent = 0;
        if (_keepaliveDeadline != 0)
        {
            ArmKeepalive(now);
        }
    }

    private void ArmRetransmitTimer(long now) => _retransmitDeadline = now + _rtt.Rto;

    /// <summary>RFC 6298 §5.4-5.6, with the limits of RFC 9293 §3.8.3 (R2).</summary>
    private void OnRetransmitTimer(long now)
    {
        var limit = State is TcpState.SynSent or TcpState.SynReceived ? _settings.MaxSynRetransmissions : _settings.MaxRetransmissions;
        if (_retransmissionsOfHead >= limit)
        {
            var what = State == TcpState.SynSent ? "connect" : "data";
            Terminate(new TcpConnectionException(TcpError.TimedOut, $"Connection {Id} timed out: {what} unacknowledged after {_retransmissionsOfHead} retransmissions."));
            return;
        }

        if (_emitBlocked && SendUnacknowledged == SendMax && State is not (TcpState.SynSent or TcpState.SynReceived))
        {
            // Armed only to retry a segment the path (ARP) refused (see Emit): try again, nothing timed out.
            _layer.MarkForOutput(this);
            return;
        }

        _retransmissionsOfHead++;
        Statistics.Timeouts++;
        _layer.Metrics.Timeouts.Add(1);
        _rtt.OnTimeout();
        _rttTiming = false;

        if (State is TcpState.SynSent or TcpState.SynReceived)
        {
            RetransmitSyn();
            ArmRetransmitTimer(now);
            return;
        }

        if (SendUnacknowledged == SendMax)
        {
            return;
        }

        _recovery.OnRetransmissionTimeout();

        // §5.4: retransmit the earliest segment not yet acknowledged, now, whatever the window. Its timestamp
        // lets the first ACK after it prove the timeout spurious (RFC 3522 Eifel detection).
        _timeoutTsVal = _timestamps ? Math.Max(1u, TimestampNow(now)) : 0;
        var resent = Retransmit(SendUnacknowledged, MaxSegmentSize);
        if (SequenceNumber.Lt(SendNext, SendUnacknowledged + (uint)resent))
        {
            SendNext = SendUnacknowledged + (uint)resent;
        }

        ArmRetransmitTimer(now);
        _layer.MarkForOutput(this);
    }

    private void ArmPersist(long now)
    {
        if (_persistDeadline != 0)
        {
            return;
        }

        var interval = Math.Min(_rtt.BaseRto << Math.Min(_persistBackoff, 16), Micros(_settings.MaxRto));
        _persistDeadline = now + interval;
    }

    /// <summary>
    /// Zero-window probe: a segment the receiver must acknowledge without consuming data (SEG.SEQ = SND.UNA-1),
    /// which carries its current window back. Probing continues while the peer answers (RFC 1122 §4.2.2.17).
    /// </summary>
    private void OnPersistTimer(long now)
    {
        if (_sendWindow != 0 || _send.IsEmpty || State is not (TcpState.Established or TcpState.CloseWait))
        {
            _persistBackoff = 0;
            return;
        }

        Statistics.ZeroWindowProbes++;
        Emit(SendUnacknowledged - 1, Wire.TcpFlags.Ack, 0, isRetransmission: false);
        _persistBackoff++;
        ArmPersist(now);
    }

    private void ArmKeepalive(long now)
    {
        if (_settings.Keepalive)
        {
            _keepaliveDeadline = now + (_keepaliveProbesSent == 0 ? Micros(_settings.KeepaliveIdle) : Micros(_settings.KeepaliveInterval));
        }
    }

    /// <summary>RFC 9293 §3.8.4 / RFC 1122 §4.2.3.6: SEG.SEQ = SND.NXT-1 with no data elicits an ACK from a live peer.</summary>
    private void OnKeepaliveTimer(long now)
    {
        if (State is not (TcpState.Established or TcpState.CloseWait or TcpState.FinWait2))
        {
            return;
        }

        if (_keepaliveProbesSent >= _settings.KeepaliveProbes)
        {
            Terminate(new TcpConnectionException(TcpError.TimedOut, $"Connection {Id} timed out: no answer to {_keepaliveProbesSent} keepalive probes."));
            return;
        }

        _keepaliveProbesSent++;
        Statistics.KeepaliveProbes++;
        Emit(SendMax - 1, Wire.TcpFlags.Ack, 0, isRetransmission: false);
        ArmKeepalive(now);
    }

    private void ScheduleDelayedAck(int payloadLength)
    {
        if (payloadLength >= MaxSegmentSize)
        {
            _segmentsSinceAck++;
        }

        // RFC 9293 §3.8.6.3 / RFC 5681 §4.2: at least every second full-sized segment, and within the delay.
        // Sent at once, not at the end of the batch: a burst of segments read in one turn still gets its
        // ACKs, which clock the sender (no stretch ACKs).
        if (_settings.DelayedAck == TimeSpan.Zero || _segmentsSinceAck >= _settings.DelayedAckSegments)
        {
            SendAck();
            return;
        }

        if (_delayedAckDeadline == 0)
        {
            _delayedAckDeadline = NowMicroseconds + Micros(_settings.DelayedAck);
        }
    }

    private void StartTimeWait()
    {
        var wasTimeWait = State == TcpState.TimeWait;
        State = TcpState.TimeWait;
        CancelAllTimers();
        if (!_send.IsEmpty && _host is not null)
        {
            _send.Acknowledge(_send.EndSequence, _host);
        }

        if (!wasTimeWait)
        {
            var observer = Observer;
            Observer = null;
            observer?.OnClosed(this, null);
        }

        if (_settings.TimeWait == TimeSpan.Zero)
        {
            Terminate(null);
            return;
        }

        _timeWaitDeadline = NowMicroseconds + Micros(_settings.TimeWait);
    }

    private void CancelAllTimers()
    {
        _retransmitDeadline = 0;
        _delayedAckDeadline = 0;
        _persistDeadline = 0;
        _keepaliveDeadline = 0;
        _timeWaitDeadline = 0;
    }
}
