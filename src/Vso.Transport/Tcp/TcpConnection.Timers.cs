namespace Vso.Transport.Tcp;

/// <summary>
/// Timer dispatch: retransmission (RFC 6298) and persist (zero-window probes) deadlines are the sender's,
/// loss recovery's own timer is the algorithm's, delayed ACK is the receiver's; keepalive (RFC 9293 §3.8.4) is the
/// connection's own (TIME-WAIT's belongs to its <see cref="TimeWaitTable"/> entry). Each is a deadline in engine
/// microseconds (0 = off); the engine's timer queue holds one entry per connection for the earliest.
/// </summary>
internal sealed partial class TcpConnection
{
    private long _keepaliveDeadline;
    private int _keepaliveProbesSent;
    private long _lastReceivedAt;

    /// <summary>This connection's entry in the engine's timer wheel (its earliest deadline); created at the first arm.</summary>
    public Engine.TimerEntry<TcpConnection>? TimerEntry { get; set; }

    /// <summary>Earliest pending deadline, or 0 when no timer runs.</summary>
    public long NextDeadline
    {
        get
        {
            var next = long.MaxValue;
            Consider(ref next, _sender.RetransmitDeadline);
            Consider(ref next, _receiver.DelayedAckDeadline);
            Consider(ref next, _sender.PersistDeadline);
            Consider(ref next, _keepaliveDeadline);
            Consider(ref next, _lingerDeadline);
            Consider(ref next, UserTimeoutDeadline);
            if (State is not (TcpState.Closed or TcpState.TimeWait))
            {
                Consider(ref next, _sender.LossRecovery.TimerDeadline);
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
        // RFC 8985 §7.2: the probe timeout is capped at the RTO's expiration, so a probe due at the same time (or
        // before) goes first; sending it re-arms the RTO (§7.3, see RestartRetransmitTimer), which then does not fire now.
        var probeFirst = _sender.LossRecovery.TimerDeadline;
        if (probeFirst != 0 && now >= probeFirst && (_sender.RetransmitDeadline == 0 || probeFirst <= _sender.RetransmitDeadline) && State is not (TcpState.TimeWait or TcpState.Closed))
        {
            _sender.LossRecovery.OnTimer(now);
            _layer.MarkForOutput(this);
        }

        if (_sender.RetransmitDeadline != 0 && now >= _sender.RetransmitDeadline)
        {
            _sender.DisarmRetransmitTimer();
            OnRetransmitTimer(now);
            if (State == TcpState.Closed)
            {
                return;
            }
        }

        var recoveryDeadline = _sender.LossRecovery.TimerDeadline;
        if (recoveryDeadline != 0 && now >= recoveryDeadline && State is not (TcpState.TimeWait or TcpState.Closed))
        {
            _sender.LossRecovery.OnTimer(now);
            _layer.MarkForOutput(this);
        }

        if (_sender.PersistDeadline != 0 && now >= _sender.PersistDeadline)
        {
            _sender.OnPersistTimer(now);
        }

        if (_receiver.DelayedAckDeadline != 0 && now >= _receiver.DelayedAckDeadline)
        {
            _receiver.OnDelayedAckTimer();
        }

        if (_keepaliveDeadline != 0 && now >= _keepaliveDeadline)
        {
            _keepaliveDeadline = 0;
            OnKeepaliveTimer(now);
        }

        if (State != TcpState.Closed)
        {
            OnOptionTimers(now);
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

    /// <summary>The peer acknowledged new data: it is alive, keepalive probing starts over.</summary>
    internal void ResetKeepaliveProbes() => _keepaliveProbesSent = 0;

    /// <summary>RFC 6298 §5.4-5.6, with the limits of RFC 9293 §3.8.3 (R2).</summary>
    private void OnRetransmitTimer(long now)
    {
        var limit = State is TcpState.SynSent or TcpState.SynReceived ? _settings.MaxSynRetransmissions : _settings.MaxRetransmissions;
        if (State == TcpState.SynReceived && Listener is { } listener)
        {
            // A SYN-ACK held back by ARP counts here too: the entry ends on the same schedule.
            limit = listener.SynAckRetries(limit);
        }

        if (_sender.RetransmissionsOfHead >= limit)
        {
            var what = State == TcpState.SynSent ? "connect" : "data";
            Terminate(TimeoutError($"Connection {Id} timed out: {what} unacknowledged after {_sender.RetransmissionsOfHead} retransmissions."));
            return;
        }

        if (_emitBlocked && _sender.SendUnacknowledged == _sender.SendMax && State is not (TcpState.SynSent or TcpState.SynReceived))
        {
            // Armed only to retry a segment the path (ARP) refused (see Emit): try again, nothing timed out.
            _layer.MarkForOutput(this);
            return;
        }

        _sender.OnRetransmitTimerExpired();

        if (State is TcpState.SynSent or TcpState.SynReceived)
        {
            RetransmitSyn();
            _sender.ArmRetransmitTimer(now);
            return;
        }

        _sender.RetransmitAfterTimeout(now);
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

        // With a user timeout (RFC 5482) it decides instead of the probe count, as Linux's tcp_keepalive_timer does: a
        // silent peer is given up once it has been silent that long and at least one probe went unanswered.
        if (_settings.UserTimeout > TimeSpan.Zero
            ? _keepaliveProbesSent > 0 && now - _lastReceivedAt >= Micros(_settings.UserTimeout)
            : _keepaliveProbesSent >= _settings.KeepaliveProbes)
        {
            Terminate(TimeoutError($"Connection {Id} timed out: no answer to {_keepaliveProbesSent} keepalive probes."));
            return;
        }

        _keepaliveProbesSent++;
        Statistics.KeepaliveProbes++;
        Emit((_sender.SendMax - 1).Value, Wire.TcpFlags.Ack, 0, isRetransmission: false);
        ArmKeepalive(now);
    }

    /// <summary>
    /// TIME-WAIT (RFC 9293 §3.6.1): the application is told the connection closed, the owed ACK of the peer's FIN leaves
    /// now, and a compact <see cref="TimeWaitEntry"/> takes over the 4-tuple for 2*MSL while this connection, with its
    /// sender, receiver and whatever the application's objects hold, leaves the table (issue 12, connection setup). The
    /// application still reads what it had not read; its sends are refused, the connection being closed.
    /// </summary>
    private void StartTimeWait()
    {
        State = TcpState.TimeWait;
        CancelAllTimers();
        _sender.ReleaseAll();

        var observer = Observer;
        Observer = null;
        _sender.Host = null;
        SendWatcher = null;
        Listener = null;
        observer?.OnClosed(this, null);

        if (_settings.TimeWait > TimeSpan.Zero)
        {
            if (_receiver.AckOwed)
            {
                SendAck();
            }

            _layer.EnterTimeWait(this, ToTimeWaitEntry());
        }

        Terminate(null);
    }

    /// <summary>What TIME-WAIT keeps of this connection (see <see cref="TimeWaitTable"/>).</summary>
    private TimeWaitEntry ToTimeWaitEntry()
    {
        var now = NowMicroseconds;
        var shift = EffectiveReceiveShift;
        var windowField = (ushort)Math.Min((uint)_receiver.Window >> shift, ushort.MaxValue);
        return new TimeWaitEntry
        {
            ChallengeAckAt = _settings.ChallengeAckInterval > TimeSpan.Zero ? _challengeAckLimit.NextTokenAt(now) : 0,
            InvalidAckAt = _settings.InvalidSegmentAckInterval > TimeSpan.Zero ? _invalidSegmentAckLimit.NextTokenAt(now) : 0,
            SendMax = _sender.SendMax.Value,
            OldestAcceptableAck = _sender.OldestAcceptableAck.Value,
            ReceiveNext = _receiver.Next.Value,
            ReceiveWindow = (uint)_receiver.AdvertisedWindow,
            OfferedWindow = (uint)windowField << shift,
            SendWindow = _sender.PeerWindow,
            TsRecent = _tsRecent,
            TsOffset = _tsOffset,
            TimeWaitMicroseconds = SaturatedMicroseconds(_settings.TimeWait),
            ChallengeAckIntervalMicroseconds = SaturatedMicroseconds(_settings.ChallengeAckInterval),
            InvalidAckIntervalMicroseconds = SaturatedMicroseconds(_settings.InvalidSegmentAckInterval),
            WindowField = windowField,
            SendWindowShift = (byte)_sender.PeerWindowShift,
            Flags = (_timestamps ? TimeWaitFlags.Timestamps : 0) | (_sackPermitted ? TimeWaitFlags.Sack : 0),
        };

        static uint SaturatedMicroseconds(TimeSpan t) => (uint)Math.Min(Micros(t), uint.MaxValue);
    }

    private void CancelAllTimers()
    {
        _sender.CancelTimers();
        _receiver.CancelDelayedAck();
        _keepaliveDeadline = 0;
        _lingerDeadline = 0;
    }
}
